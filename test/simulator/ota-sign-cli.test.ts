import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkFirmwareSignature, findFirmwareSignature } from '../../lib/firmware-signature';
import { main } from '../../simulator/ota-sign-cli';

describe('tencent-iot-ota-sign', () => {
  let directory: string;

  beforeEach(async () => {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-sign-'));
  });

  afterEach(async () => {
    await fs.rm(directory, { recursive: true, force: true });
  });

  for (const alg of ['ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha256']) {
    it(`generates ${alg} keys and prints the user_defined that verifies with the public key`, async () => {
      const prefix = path.join(directory, 'vendor');
      assert.equal(await main(['keys', 'generate', '--alg', alg, '--out', prefix], () => undefined), 0);
      const firmware = randomBytes(70_000);
      const file = path.join(directory, 'firmware.bin');
      await fs.writeFile(file, firmware);
      const printed: string[] = [];
      const args = ['sign', '--key', `${prefix}.private.pem`, '--key-id', 'vendor-2026', '--product', 'P1', '--version', '2.0.0', '--alg', alg];
      assert.equal(await main([...args, '--user-defined', '{"time":"2026-12-02"}', file], (text) => printed.push(text)), 0);
      const userDefined = JSON.parse(printed[0]) as { time: string };
      assert.equal(userDefined.time, '2026-12-02');
      const manifest = { productId: 'P1', version: '2.0.0', size: firmware.length, sha256: createHash('sha256').update(firmware).digest('hex') };
      const policy = { keys: [{ id: 'vendor-2026', pem: await fs.readFile(`${prefix}.public.pem`, 'utf8') }], required: true };
      assert.deepEqual(checkFirmwareSignature(manifest, findFirmwareSignature(undefined, printed[0]), policy), { ok: true, signature: { alg, keyId: 'vendor-2026' } });
    });
  }
});

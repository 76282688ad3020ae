import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import { existsSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  checkFirmwareSignature,
  findFirmwareSignature,
  firmwareManifestText,
  generateFirmwareKeyPair,
  signFirmwareManifest,
  SIGNATURE_ALGORITHMS,
  type FirmwareManifest,
  type SignaturePolicy,
} from '../../lib/firmware-signature';
import { checkFirmwareFile } from '../../lib/firmware-verification';
import { identityOf } from '../../lib/partial-firmware-file';
import { readSignatureConfig } from '../../nodes/common/device-config';

const OPENSSL = '/usr/bin/openssl';

function manifestOf(bytes: Buffer, version = '1.2.0'): FirmwareManifest {
  return { productId: 'PRODUCT01', version, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

describe('firmware signature', () => {
  const firmware = randomBytes(4096);

  it('signs the manifest text that binds product, version, size and SHA-256', () => {
    const manifest = manifestOf(firmware);
    assert.equal(firmwareManifestText(manifest), `tencent-iot-ota-firmware-v1\nPRODUCT01\n1.2.0\n4096\n${manifest.sha256}\n`);
  });

  for (const alg of SIGNATURE_ALGORITHMS) {
    describe(alg, () => {
      const keys = generateFirmwareKeyPair(alg);
      const policy: SignaturePolicy = { keys: [{ id: 'vendor-2026', pem: keys.publicKeyPem }], required: true };

      it('verifies a signature made with the key pair', () => {
        const signature = signFirmwareManifest(manifestOf(firmware), keys.privateKeyPem, 'vendor-2026', alg);
        assert.match(signature.sig, /^[A-Za-z0-9+/]+={0,2}$/);
        const check = checkFirmwareSignature(manifestOf(firmware), { found: true, value: signature }, policy);
        assert.deepEqual(check, { ok: true, signature: { alg, keyId: 'vendor-2026' } });
      });

      it('refuses the signature for another version label', () => {
        const signature = signFirmwareManifest(manifestOf(firmware, '1.1.0'), keys.privateKeyPem, 'vendor-2026', alg);
        const check = checkFirmwareSignature(manifestOf(firmware), { found: true, value: signature }, policy);
        assert.deepEqual(check, { ok: false, reason: 'signature does not verify with key vendor-2026' });
      });

      it('verifies a signature made by the openssl command line', async function () {
        if (!existsSync(OPENSSL)) this.skip();
        const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-signature-'));
        try {
          const keyPath = path.join(directory, 'private.pem');
          const manifestPath = path.join(directory, 'manifest.txt');
          await fs.writeFile(keyPath, keys.privateKeyPem);
          await fs.writeFile(manifestPath, firmwareManifestText(manifestOf(firmware)));
          const args =
            alg === 'ed25519'
              ? ['pkeyutl', '-sign', '-rawin', '-inkey', keyPath, '-in', manifestPath]
              : alg === 'ecdsa-p256-sha256'
                ? ['dgst', '-sha256', '-sign', keyPath, manifestPath]
                : ['dgst', '-sha256', '-sign', keyPath, '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32', manifestPath];
          const sig = execFileSync(OPENSSL, args).toString('base64');
          const check = checkFirmwareSignature(manifestOf(firmware), { found: true, value: { alg, sig, keyId: 'vendor-2026' } }, policy);
          assert.deepEqual(check, { ok: true, signature: { alg, keyId: 'vendor-2026' } });
        } finally {
          await fs.rm(directory, { recursive: true, force: true });
        }
      });
    });
  }

  it('refuses a key of another algorithm than the signature names', () => {
    const ed25519 = generateFirmwareKeyPair('ed25519');
    const signature = signFirmwareManifest(manifestOf(firmware), ed25519.privateKeyPem, 'vendor-2026');
    const check = checkFirmwareSignature(
      manifestOf(firmware),
      { found: true, value: { ...signature, alg: 'ecdsa-p256-sha256' } },
      { keys: [{ id: 'vendor-2026', pem: ed25519.publicKeyPem }], required: false },
    );
    assert.deepEqual(check, { ok: false, reason: 'signature is ecdsa-p256-sha256 but key vendor-2026 is ed25519, not an EC P-256 key' });
  });

  it('finds the signature in a JSON-encoded user_defined beside other fields, and says when user_defined is malformed', () => {
    const signature = { alg: 'ed25519', sig: 'AAAA', keyId: 'k' };
    assert.deepEqual(findFirmwareSignature(undefined, JSON.stringify({ time: '2024-05-16', signature })), { found: true, value: signature });
    assert.deepEqual(findFirmwareSignature(undefined, { signature }), { found: true, value: signature });
    assert.deepEqual(findFirmwareSignature(signature, '{"signature":1}'), { found: true, value: signature });
    assert.deepEqual(findFirmwareSignature(undefined, '{"time":"2024-05-16"}'), { found: false });
    assert.deepEqual(findFirmwareSignature(undefined, '[1]'), { found: false, problem: 'malformed user_defined: not a JSON object' });
    const broken = findFirmwareSignature(undefined, '{"signature":');
    assert.equal(broken.found, false);
    assert.match((broken as { problem: string }).problem, /^malformed user_defined: /);
  });

  it('names what is malformed in a signature', () => {
    const policy: SignaturePolicy = { keys: [], required: true };
    const check = (value: unknown) => checkFirmwareSignature(manifestOf(firmware), { found: true, value }, policy);
    assert.deepEqual(check('x'), { ok: false, reason: 'malformed signature: not an object' });
    assert.deepEqual(check({ alg: 'md5', sig: 'AAAA', keyId: 'k' }), {
      ok: false,
      reason: 'malformed signature: alg "md5" is not one of ed25519, ecdsa-p256-sha256, rsa-pss-sha256',
    });
    assert.deepEqual(check({ sig: 'AAA', keyId: 'k' }), { ok: false, reason: 'malformed signature: sig is not padded base64' });
    assert.deepEqual(check({ sig: 'AAAA' }), { ok: false, reason: 'malformed signature: no keyId' });
    assert.deepEqual(check({ sig: 'AAAA', keyId: 'other' }), { ok: false, reason: 'unknown key id other' });
    assert.deepEqual(checkFirmwareSignature(manifestOf(firmware), { found: false }, policy), { ok: false, reason: 'no signature and signed firmware is required' });
    assert.deepEqual(checkFirmwareSignature(manifestOf(firmware), { found: false }, { keys: [], required: false }), { ok: true });
  });

  it('checks a signature with the SHA-256 the download computed, reading the file no second time', async () => {
    const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-signature-'));
    try {
      const filePath = path.join(directory, 'FW_1.2.0.bin');
      await fs.writeFile(filePath, firmware);
      const manifest = manifestOf(firmware);
      const keys = generateFirmwareKeyPair('ed25519');
      const md5 = createHash('md5').update(firmware).digest('hex');
      const downloaded = { path: filePath, identity: identityOf(await fs.stat(filePath)), md5, sha256: manifest.sha256 };
      const signature = {
        productId: 'PRODUCT01',
        policy: { keys: [{ id: 'vendor-2026', pem: keys.publicKeyPem }], required: true },
        found: { found: true as const, value: signFirmwareManifest(manifest, keys.privateKeyPem, 'vendor-2026') },
      };
      const check = await checkFirmwareFile({ version: '1.2.0', filePath, md5sum: md5, signature }, { downloaded });
      assert.ok(check.ok);
      assert.equal(check.fromDownload, true);
      assert.deepEqual(check.signature, { alg: 'ed25519', keyId: 'vendor-2026' });
      // Without the download's SHA-256 the file is hashed, and the same signature verifies.
      const reread = await checkFirmwareFile({ version: '1.2.0', filePath, md5sum: md5, signature }, { downloaded: { ...downloaded, sha256: undefined } });
      assert.ok(reread.ok);
      assert.equal(reread.fromDownload, false);
      const otherVersion = await checkFirmwareFile({ version: '1.3.0', filePath, md5sum: md5, signature }, { downloaded });
      assert.deepEqual(otherVersion, { ok: false, resultCode: -4, reason: 'signature does not verify with key vendor-2026' });
    } finally {
      await fs.rm(directory, { recursive: true, force: true });
    }
  });

  it('reads the config node keys, refusing one that is no PEM public key or an id listed twice', () => {
    const pem = generateFirmwareKeyPair('ed25519').publicKeyPem;
    assert.deepEqual(readSignatureConfig({}), { firmwareKeys: [], requireSignedFirmware: false });
    assert.deepEqual(readSignatureConfig({ firmwareKeys: [{ id: ' k1 ', pem }], requireSignedFirmware: true }), {
      firmwareKeys: [{ id: 'k1', pem: pem.trim() }],
      requireSignedFirmware: true,
    });
    assert.throws(() => readSignatureConfig({ firmwareKeys: [{ id: 'k1', pem: 'nope' }] }), /firmware key k1 is not a PEM public key/);
    assert.throws(
      () =>
        readSignatureConfig({
          firmwareKeys: [
            { id: 'k1', pem },
            { id: 'k1', pem },
          ],
        }),
      /listed twice/,
    );
  });
});

/**
 * Signed firmware in a real Node-RED child process, against the stand-in: the console signs at
 * upload and puts the signature into user_defined; ota-verify checks it with the device's keys.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadExampleFlow } from '../../demo/example-flow';
import { NodeRedProcess } from '../../demo/node-red-process';
import { generateFirmwareKeyPair, signFirmwareManifest, type SignatureAlgorithm } from '../../lib/firmware-signature';
import type { DeviceView } from '../../simulator/console-api';
import type { FirmwareUploadRequest } from '../../simulator/console-client';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT_ID = 'SIGNEDPRODUCT1';
const DEVICE_NAME = 'signed1';

describe('signed firmware end to end (Node-RED child process and the stand-in)', function () {
  this.timeout(240_000);
  let sim: SimulatorFixture;
  let workDir: string;
  let stateDir: string;
  let nodeRed: NodeRedProcess | undefined;
  const vendor = { ed25519: generateFirmwareKeyPair('ed25519'), ecdsa: generateFirmwareKeyPair('ecdsa-p256-sha256'), rsa: generateFirmwareKeyPair('rsa-pss-sha256') };
  const stranger = generateFirmwareKeyPair('ed25519');

  before(async function () {
    sim = await startSimulator();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'signed-e2e-'));
    const created = await sim.createDevice(PRODUCT_ID, DEVICE_NAME);
    stateDir = path.join(workDir, 'state');
    const bound = await loadExampleFlow('basic-ota-pipeline', {
      productId: PRODUCT_ID,
      deviceName: DEVICE_NAME,
      deviceSecret: created.deviceSecret ?? '',
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem: sim.caPem,
      stateDir,
      runningVersion: '0.1.0',
    });
    for (const node of bound.flows) {
      if (node.type === 'delay') Object.assign(node, { timeout: '0.2' });
      if (node.type === 'tencent-iot-device') {
        Object.assign(node, {
          firmwareKeys: [
            { id: 'vendor-2026', pem: vendor.ed25519.publicKeyPem },
            { id: 'vendor-ecdsa', pem: vendor.ecdsa.publicKeyPem },
            { id: 'vendor-rsa', pem: vendor.rsa.publicKeyPem },
          ],
          requireSignedFirmware: true,
        });
      }
    }
    nodeRed = await NodeRedProcess.start({ userDir: path.join(workDir, 'node-red'), flows: bound.flows, credentials: bound.credentials });
    await waitForDevice((device) => device.version === '0.1.0');
  });

  after(async function () {
    await nodeRed?.stop();
    await sim?.close();
    await fs.rm(workDir, { recursive: true, force: true });
  });

  function waitForDevice(condition: (device: DeviceView) => boolean, timeoutMs = 90_000): Promise<DeviceView> {
    return sim.console.waitForDevice(PRODUCT_ID, DEVICE_NAME, condition, { timeoutMs, intervalMs: 100 }).catch((error: Error) => {
      throw new Error(`${error.message}\n--- Node-RED output ---\n${nodeRed?.output.split('\n').slice(-40).join('\n') ?? ''}`);
    });
  }

  /** Uploads, starts the update and waits for its end. */
  async function update(version: string, bytes: Buffer, options: Omit<FirmwareUploadRequest, 'contentLength'>): Promise<DeviceView> {
    await sim.console.uploadFirmware(PRODUCT_ID, version, bytes, { replace: true, ...options });
    await sim.console.startUpdate({ productId: PRODUCT_ID, version, deviceNames: [DEVICE_NAME] });
    return waitForDevice(
      (device) => device.ota.targetVersion === version && (device.ota.state === 'fail' || (device.ota.state === 'done' && device.version === version)),
    );
  }

  async function assertFailedAndRemoved(device: DeviceView, version: string, reason: string | RegExp): Promise<void> {
    assert.equal(device.ota.state, 'fail');
    assert.equal(device.ota.result_code, -4);
    if (typeof reason === 'string') assert.equal(device.ota.result_msg, reason);
    else assert.match(device.ota.result_msg ?? '', reason);
    const left = await fs.readdir(path.join(stateDir, 'downloads')).catch(() => [] as string[]);
    assert.deepEqual(
      left.filter((name) => name.includes(`_${version}.`)),
      [],
      'the firmware that failed is removed',
    );
  }

  const signing = (privateKeyPem: string, keyId: string, alg?: SignatureAlgorithm) => ({ signing: { privateKeyPem, keyId, alg } });

  it('installs a firmware the console signed with a vendor key', async function () {
    const device = await update('1.0.0', randomBytes(512 * 1024), { userDefined: '{"time":"2026-12-02"}', ...signing(vendor.ed25519.privateKeyPem, 'vendor-2026') });
    assert.equal(device.ota.state, 'done');
    assert.equal(device.version, '1.0.0');
  });

  it('installs firmware signed with ECDSA P-256 and with RSA-PSS', async function () {
    const ecdsa = await update('1.0.1', randomBytes(100_000), signing(vendor.ecdsa.privateKeyPem, 'vendor-ecdsa', 'ecdsa-p256-sha256'));
    assert.equal(ecdsa.version, '1.0.1');
    const rsa = await update('1.0.2', randomBytes(100_001), signing(vendor.rsa.privateKeyPem, 'vendor-rsa', 'rsa-pss-sha256'));
    assert.equal(rsa.version, '1.0.2');
  });

  it('refuses the same signed firmware under another version label', async function () {
    const bytes = randomBytes(200_000);
    const manifest = { productId: PRODUCT_ID, version: '1.0.0', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    const signature = signFirmwareManifest(manifest, vendor.ed25519.privateKeyPem, 'vendor-2026');
    const device = await update('1.1.0', bytes, { signature });
    await assertFailedAndRemoved(device, '1.1.0', 'signature does not verify with key vendor-2026');
  });

  it('refuses a firmware with one byte flipped after signing', async function () {
    const bytes = randomBytes(200_000);
    const manifest = { productId: PRODUCT_ID, version: '1.2.0', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    const signature = signFirmwareManifest(manifest, vendor.ed25519.privateKeyPem, 'vendor-2026');
    bytes[1000] ^= 0x01;
    const device = await update('1.2.0', bytes, { signature });
    await assertFailedAndRemoved(device, '1.2.0', 'signature does not verify with key vendor-2026');
  });

  it('refuses a firmware signed by a key the device does not know', async function () {
    const device = await update('1.3.0', randomBytes(10_000), signing(stranger.privateKeyPem, 'someone-else'));
    await assertFailedAndRemoved(device, '1.3.0', 'unknown key id someone-else');
  });

  it('refuses an unsigned firmware when signed firmware is required', async function () {
    const device = await update('1.4.0', randomBytes(10_000), {});
    await assertFailedAndRemoved(device, '1.4.0', 'no signature and signed firmware is required');
  });

  it('refuses a firmware whose user_defined is malformed', async function () {
    const device = await update('1.5.0', randomBytes(10_000), { userDefined: '{"signature":' });
    await assertFailedAndRemoved(device, '1.5.0', /^malformed user_defined: /);
  });
});

import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { X509Certificate } from 'crypto';
import { parseDeviceInfo } from '../../lib/device-info';
import { decodeDeviceSecret } from '../../lib/device-signing';
import { CertificateAuthority } from '../../simulator/certificate-authority';
import { DeviceExistsError, DeviceRegistry, InvalidDeviceError } from '../../simulator/device-registry';

describe('simulator device registry', () => {
  let dataDir: string;
  let certificateAuthority: CertificateAuthority;

  before(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'device-registry-test-'));
    certificateAuthority = await CertificateAuthority.loadOrCreate(dataDir);
  });

  after(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await fs.rm(path.join(dataDir, 'devices.json'), { force: true });
  });

  it("creates a key device with a 16-byte secret and the console's device_info.json", async () => {
    const registry = await DeviceRegistry.open(dataDir);
    const { device, deviceInfo } = await registry.create('PRODUCTID1', 'dev1', 'key', certificateAuthority);
    assert.equal(decodeDeviceSecret(device.deviceSecret).length, 16);
    assert.deepEqual(deviceInfo, { auth_mode: 'KEY', productId: 'PRODUCTID1', deviceName: 'dev1', key_deviceinfo: { deviceSecret: device.deviceSecret } });
    const parsed = parseDeviceInfo(JSON.stringify(deviceInfo));
    assert.deepEqual([parsed.authMode, parsed.deviceSecret], ['key', device.deviceSecret]);
  });

  it('creates a cert device whose device info carries a certificate issued by the CA for it', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    const { device, deviceInfo } = await registry.create('PRODUCTID1', 'cert1', 'cert', certificateAuthority);
    assert.equal(parseDeviceInfo(JSON.stringify(deviceInfo)).authMode, 'cert');
    const certInfo = deviceInfo.cert_deviceinfo as Record<string, string>;
    assert.equal(certInfo.devCaPem, certificateAuthority.caCertPem);
    const certificate = new X509Certificate(certInfo.devCertPem);
    assert.equal(device.certificateFingerprint256, certificate.fingerprint256);
    assert.match(certificate.subject, /^CN=PRODUCTID1cert1$/m);
    assert.match(certInfo.devPrivateKeyPem, /-----BEGIN PRIVATE KEY-----/);
    assert.equal(decodeDeviceSecret(device.deviceSecret).length, 16);
  });

  it('keeps devices in devices.json, readable by the owner only, across a reopen', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    const { device } = await registry.create('PRODUCTID1', 'dev1', 'key', certificateAuthority);
    await registry.create('PRODUCTID2', 'dev1', 'cert', certificateAuthority);
    const { mode } = await fs.stat(path.join(dataDir, 'devices.json'));
    assert.equal(mode & 0o777, 0o600);
    const reopened = await DeviceRegistry.open(dataDir);
    assert.deepEqual(reopened.find('PRODUCTID1', 'dev1'), device);
    assert.deepEqual(reopened.findByClientId('PRODUCTID1dev1'), device);
    assert.deepEqual(
      reopened.list().map((entry) => `${entry.productId}/${entry.deviceName}/${entry.authMode}`),
      ['PRODUCTID1/dev1/key', 'PRODUCTID2/dev1/cert'],
    );
    assert.deepEqual(
      reopened.list('PRODUCTID2').map((entry) => entry.deviceName),
      ['dev1'],
    );
    assert.equal(reopened.find('PRODUCTID1', 'nobody'), undefined);
  });

  it('creates ordinary devices by default and gateways when asked, and keeps the type across a reopen', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    assert.equal((await registry.create('PRODUCTID1', 'dev1', 'key', certificateAuthority)).device.deviceType, 'device');
    assert.equal((await registry.create('PRODUCTID1', 'gw1', 'key', certificateAuthority, 'gateway')).device.deviceType, 'gateway');
    const reopened = await DeviceRegistry.open(dataDir);
    assert.deepEqual(
      reopened.list().map((entry) => [entry.deviceName, entry.deviceType]),
      [
        ['dev1', 'device'],
        ['gw1', 'gateway'],
      ],
    );
  });

  it('reads a devices.json written before device types existed as ordinary devices', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    await registry.create('PRODUCTID1', 'dev1', 'key', certificateAuthority);
    const file = path.join(dataDir, 'devices.json');
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as { devices: Record<string, unknown>[] };
    for (const device of stored.devices) delete device.deviceType;
    await fs.writeFile(file, JSON.stringify(stored));
    assert.equal((await DeviceRegistry.open(dataDir)).find('PRODUCTID1', 'dev1')?.deviceType, 'device');
  });

  it('refuses a duplicate device, and a client id another device already has, with DeviceExistsError', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    await registry.create('PRODUCTID1', 'dev1', 'key', certificateAuthority);
    await assert.rejects(registry.create('PRODUCTID1', 'dev1', 'cert', certificateAuthority), DeviceExistsError);
    // "PRODUCTID" + "1dev1" is the client id of PRODUCTID1/dev1 as well.
    await assert.rejects(registry.create('PRODUCTID', '1dev1', 'key', certificateAuthority), DeviceExistsError);
    assert.equal(registry.list().length, 1);
  });

  it('refuses names outside the console patterns with InvalidDeviceError', async () => {
    const registry = await DeviceRegistry.open(dataDir);
    await assert.rejects(registry.create('PRODUCT-1', 'dev1', 'key', certificateAuthority), InvalidDeviceError);
    await assert.rejects(registry.create('PRODUCTID1', 'dev/1', 'key', certificateAuthority), InvalidDeviceError);
    await assert.rejects(registry.create('PRODUCTID1', '', 'key', certificateAuthority), InvalidDeviceError);
  });

  it('refuses to open a devices.json that is not valid JSON rather than start empty over it', async () => {
    await fs.writeFile(path.join(dataDir, 'devices.json'), '{"devices": [');
    await assert.rejects(DeviceRegistry.open(dataDir), /not valid JSON/);
  });
});

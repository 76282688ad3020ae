/**
 * The device dialog's "Test connection" endpoint in a real Node-RED runtime with adminAuth on,
 * against the stand-in: one connection attempt from the runtime with the posted settings, answered
 * as connected, bad credentials, TLS not trusted or host not found, for editor users only.
 */
import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NodeRedProcess } from '../../demo/node-red-process';
import type { DeviceIdentity } from '../../lib/ota-topics';
import type { ConnectionTestAnswer } from '../../nodes/common/connection-test';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT_ID = 'PROBETEST';
const USERNAME = 'admin';
const PASSWORD = 'editor-password-for-tests';
// bcrypt of PASSWORD, as adminAuth stores passwords (node-red admin hash-pw prints the same kind).
const PASSWORD_HASH = '$2b$08$7NExD4zh6PrOrjn77RmIre3S5UFlVH22pT5NB4Z81TCeiVbHyawTq';
const OTHER_SECRET = Buffer.from('not the device secret').toString('base64');

describe('the device dialog\'s "Test connection" endpoint', function () {
  this.timeout(120_000);
  let sim: SimulatorFixture;
  let runtime: NodeRedProcess;
  let userDir: string;
  let token: string;
  let probeSecret: string;
  const deployed: DeviceIdentity = { productId: PRODUCT_ID, deviceName: 'deployed' };

  before(async function () {
    sim = await startSimulator();
    probeSecret = (await sim.createDevice(PRODUCT_ID, 'probe')).deviceSecret ?? '';
    const deployedSecret = (await sim.createDevice(PRODUCT_ID, 'deployed')).deviceSecret ?? '';
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'nr-probe-'));
    runtime = await NodeRedProcess.start({
      userDir,
      adminAuth: { type: 'credentials', users: [{ username: USERNAME, password: PASSWORD_HASH, permissions: '*' }] },
      flows: [
        { id: 'tab', type: 'tab', label: 'Probe test' },
        { id: 'version', type: 'ota-version', z: 'tab', device: 'device', autoReport: true, replyTimeout: 30, x: 200, y: 100, wires: [[]] },
        {
          id: 'device',
          type: 'tencent-iot-device',
          productId: PRODUCT_ID,
          deviceName: 'deployed',
          authMode: 'key',
          region: 'china',
          transport: 'mqtt',
          host: '127.0.0.1',
          port: String(sim.addresses.ports.mqtt),
          keepalive: 60,
          stateDir: '',
          runningVersion: '0.1.0',
        },
      ],
      credentials: { device: { deviceSecret: deployedSecret } },
    });
    const response = await fetch(`${runtime.url}/auth/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: USERNAME, password: PASSWORD }).toString(),
    });
    assert.equal(response.status, 200, 'the editor user logs in');
    token = ((await response.json()) as { access_token: string }).access_token;
    await sim.console.waitForDevice(PRODUCT_ID, 'deployed', (device) => device.online, { timeoutMs: 30_000 });
  });

  after(async function () {
    await runtime?.stop();
    await sim?.close();
    if (userDir) await fs.rm(userDir, { recursive: true, force: true });
  });

  async function post(body: object, headers: Record<string, string> = { Authorization: `Bearer ${token}` }): Promise<Response> {
    return fetch(`${runtime.url}/tencent-iot-ota/test-connection`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  }

  async function test(settings: Record<string, unknown>, credentials: Record<string, string>, id?: string): Promise<ConnectionTestAnswer> {
    const response = await post({ id, settings: { productId: PRODUCT_ID, authMode: 'key', region: 'china', ...settings }, credentials });
    assert.equal(response.status, 200, runtime.output);
    return (await response.json()) as ConnectionTestAnswer;
  }

  const overTls = () => ({ deviceName: 'probe', transport: 'mqtts', host: '127.0.0.1', port: sim.addresses.ports.mqtts });

  it('refuses a request without a logged-in editor user (401)', async function () {
    const response = await post({ settings: { ...overTls() }, credentials: { deviceSecret: probeSecret, caCert: sim.caPem } }, {});
    assert.equal(response.status, 401);
    assert.equal(sim.simulator.broker.connectCount({ productId: PRODUCT_ID, deviceName: 'probe' }), 0, 'nothing connected for it');
  });

  it('connects once with the secret and CA of the dialog, and disconnects at once', async function () {
    const probe = { productId: PRODUCT_ID, deviceName: 'probe' };
    const disconnected = new Promise<void>((resolve) => sim.simulator.broker.on('device-disconnect', (device) => device.deviceName === 'probe' && resolve()));
    const answer = await test(overTls(), { deviceSecret: probeSecret, caCert: sim.caPem });
    assert.equal(answer.outcome, 'connected', JSON.stringify(answer));
    assert.equal(answer.via, 'probe');
    assert.equal(answer.url, `mqtts://127.0.0.1:${sim.addresses.ports.mqtts}`);
    await disconnected;
    assert.equal(sim.simulator.broker.connectCount(probe), 1);
    assert.equal(sim.simulator.broker.isOnline(probe), false, 'the probe does not stay connected');
  });

  it('answers bad credentials for a wrong secret', async function () {
    const answer = await test(overTls(), { deviceSecret: OTHER_SECRET, caCert: sim.caPem });
    assert.equal(answer.outcome, 'bad-credentials', JSON.stringify(answer));
    assert.equal(answer.returnCode, 4);
    assert.equal(answer.reason, 'bad credentials');
  });

  it('answers TLS not trusted when the server CA is not the one that signed the server', async function () {
    // No CA in the dialog: the built-in Tencent IoT Hub CA, which did not sign the stand-in.
    const answer = await test(overTls(), { deviceSecret: probeSecret });
    assert.equal(answer.outcome, 'tls-untrusted', JSON.stringify(answer));
    assert.match(answer.reason ?? '', /^TLS: /);
  });

  it('answers host not found for a name that does not resolve', async function () {
    const answer = await test({ ...overTls(), host: 'nonexistent.invalid' }, { deviceSecret: probeSecret, caCert: sim.caPem });
    assert.equal(answer.outcome, 'host-not-found', JSON.stringify(answer));
    assert.equal(answer.url, `mqtts://nonexistent.invalid:${sim.addresses.ports.mqtts}`);
  });

  it('answers invalid settings, without trying, for a secret that is not base64', async function () {
    const answer = await test(overTls(), { deviceSecret: 'not base64!' });
    assert.equal(answer.outcome, 'invalid-settings', JSON.stringify(answer));
    assert.match(answer.reason ?? '', /base64/);
  });

  it("answers from the deployed device's running connection when the dialog holds its settings, connecting nothing", async function () {
    const before = sim.simulator.broker.connectCount(deployed);
    const answer = await test({ deviceName: 'deployed', transport: 'mqtt', host: '127.0.0.1', port: sim.addresses.ports.mqtt }, { deviceSecret: '__PWRD__' }, 'device');
    assert.equal(answer.outcome, 'connected', JSON.stringify(answer));
    assert.equal(answer.via, 'running');
    assert.equal(sim.simulator.broker.connectCount(deployed), before, 'no second connection was made');
  });

  it("uses the deployed device's stored secret for __PWRD__, and says when the probe took the running connection's place", async function () {
    // The probe's connection, then the deployed device's own again.
    const connects = new Promise<void>((resolve) => {
      let count = 0;
      sim.simulator.broker.on('device-connect', (connect) => connect.deviceName === 'deployed' && ++count === 2 && resolve());
    });
    // Other settings than the deployed ones (MQTT over TLS), the stored secret.
    const answer = await test(
      { deviceName: 'deployed', transport: 'mqtts', host: '127.0.0.1', port: sim.addresses.ports.mqtts },
      { deviceSecret: '__PWRD__', caCert: sim.caPem },
      'device',
    );
    assert.equal(answer.outcome, 'connected', JSON.stringify(answer));
    assert.equal(answer.via, 'probe');
    assert.equal(answer.tookOver, true);
    // The deployed device, pushed off by the probe, comes back by itself.
    await connects;
    await sim.console.waitForDevice(PRODUCT_ID, 'deployed', (device) => device.online, { timeoutMs: 60_000 });
  });

  it('says the stored secret is missing when no deployed node has one', async function () {
    const answer = await test(overTls(), { deviceSecret: '__PWRD__', caCert: sim.caPem }, 'not-deployed');
    assert.equal(answer.outcome, 'invalid-settings', JSON.stringify(answer));
    assert.match(answer.reason ?? '', /no stored deviceSecret/);
  });
});

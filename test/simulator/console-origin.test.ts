/**
 * The console API takes changes from its own page and from programs, never from a page of another
 * origin: the simple requests a foreign page can send without asking (form posts, no-cors fetches).
 */
import { strict as assert } from 'assert';
import { httpRequest } from '../support/http-request';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT = 'ORIGINPROD';

describe('console API and the origin of a request', () => {
  let sim: SimulatorFixture;

  beforeEach(async () => {
    sim = await startSimulator();
  });

  afterEach(async () => {
    await sim.close();
  });

  function createDevice(deviceName: string, headers: Record<string, string>) {
    return httpRequest(`${sim.addresses.console}/devices`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain', ...headers },
      body: JSON.stringify({ productId: PRODUCT, deviceName }),
    });
  }

  async function deviceNames(): Promise<string[]> {
    return (await sim.console.listDevices(PRODUCT)).map((device) => device.deviceName);
  }

  it('refuses with 403 a change asked by a page of another origin, and changes nothing', async () => {
    for (const origin of ['http://attacker.example', 'http://127.0.0.1:1', 'null', `http://127.0.0.1.attacker.example:${sim.addresses.ports.http}`]) {
      const answer = await createDevice('intruder', { Origin: origin });
      assert.equal(answer.status, 403, origin);
      assert.match(JSON.parse(answer.body.toString('utf8')).error, /may not change the stand-in's state/);
    }
    const firmware = await httpRequest(`${sim.addresses.console}/firmware?productId=${PRODUCT}&version=1.0.0`, {
      method: 'POST',
      headers: { Origin: 'http://attacker.example', 'Content-Type': 'application/octet-stream' },
      body: Buffer.alloc(1024),
    });
    assert.equal(firmware.status, 403);
    assert.deepEqual(await deviceNames(), []);
    assert.deepEqual(await sim.console.listFirmware(PRODUCT), []);
  });

  it('refuses a change the browser marks as cross-site or same-site (another port of the same host)', async () => {
    for (const site of ['cross-site', 'same-site']) {
      const answer = await createDevice('intruder', { 'Sec-Fetch-Site': site });
      assert.equal(answer.status, 403, site);
    }
    assert.deepEqual(await deviceNames(), []);
  });

  it('takes a change from its own page, and from programs that name no origin', async () => {
    const own = await createDevice('frompage', { Origin: sim.addresses.http, 'Sec-Fetch-Site': 'same-origin' });
    assert.equal(own.status, 201);
    const program = await createDevice('fromcurl', {});
    assert.equal(program.status, 201);
    assert.deepEqual(await deviceNames(), ['frompage', 'fromcurl']);
  });

  it('answers reads whatever the origin, without CORS headers: the browser keeps the answer from another site', async () => {
    const answer = await httpRequest(`${sim.addresses.console}/devices`, { headers: { Origin: 'http://attacker.example' } });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['access-control-allow-origin'], undefined);
  });
});

import { strict as assert } from 'assert';
import { execFile, spawn, type ChildProcess } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import { checkFirmwareSignature, findFirmwareSignature, generateFirmwareKeyPair } from '../../lib/firmware-signature';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseDeviceInfo } from '../../lib/device-info';
import { signConnection } from '../../lib/device-signing';
import type { SimulatorAddresses } from '../../simulator/iot-hub-simulator';
import { httpRequest } from '../support/http-request';
import { connectOrFail, endClient } from '../support/mqtt-connection-attempt';

const CLI = path.resolve(__dirname, '../../simulator/cli.js');
const EPHEMERAL_PORTS = ['--mqtt-port', '0', '--mqtts-port', '0', '--wss-port', '0', '--http-port', '0', '--https-port', '0'];

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one command; the console address comes from `args` or `env` only, never from the test's own environment. */
function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const environment: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('TENCENT_IOT_HUB_SIM_API' in env)) delete environment.TENCENT_IOT_HUB_SIM_API;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000, env: environment }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface RunningCli {
  child: ChildProcess;
  /** Settles once the process has ended, however it ended and whenever it is awaited. */
  exit: Promise<CliExit>;
}

/** Starts the stand-in; its end is tracked from the moment of the spawn, so it cannot be missed. */
function startCli(args: string[]): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exit = new Promise<CliExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // A process that could not be spawned emits an error and no exit.
    child.once('error', () => {
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
  });
  return { child, exit };
}

/** Stops the stand-in with a signal and resolves with how it ended. */
async function stopWith(cli: RunningCli, signal: NodeJS.Signals): Promise<CliExit> {
  cli.child.kill(signal);
  return cli.exit;
}

/** Resolves with everything printed on stdout once it contains `marker`; rejects if the stand-in ends first. */
function stdoutUntil(cli: RunningCli, marker: string | RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = '';
    let errors = '';
    const found = () => (typeof marker === 'string' ? output.includes(marker) : marker.test(output));
    cli.child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (found()) resolve(output);
    });
    cli.child.stderr?.on('data', (chunk: Buffer) => (errors += chunk.toString('utf8')));
    void cli.exit.then(({ code, signal }) =>
      reject(new Error(`the stand-in ended (${signal ?? `exit code ${code}`}) before printing ${String(marker)}: ${output}${errors}`)),
    );
  });
}

describe('tencent-iot-hub-sim CLI', () => {
  let dataDir: string;
  let cli: RunningCli | undefined;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'iot-hub-cli-'));
  });

  afterEach(async () => {
    if (cli) {
      // Harmless when the process has already ended (by itself or by a signal): exit has then settled.
      cli.child.kill('SIGKILL');
      await cli.exit;
    }
    cli = undefined;
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('prints exactly one line of JSON with every address and stops cleanly on SIGTERM', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    let everything = '';
    cli.child.stdout?.on('data', (chunk: Buffer) => (everything += chunk.toString('utf8')));
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    assert.match(addresses.mqtt, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
    assert.match(addresses.mqtts, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
    assert.match(addresses.wss, /^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    assert.match(addresses.https, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(addresses.console, `${addresses.http}/api`);
    assert.equal(addresses.dataDir, dataDir);
    for (const port of Object.values(addresses.ports)) assert.ok(port > 0, 'the actual port is printed, not 0');
    assert.match(await fs.readFile(addresses.caCertPath, 'utf8'), /BEGIN CERTIFICATE/);
    assert.equal((await httpRequest(`${addresses.http}/api/devices`)).status, 200);
    assert.deepEqual(await stopWith(cli, 'SIGTERM'), { code: 0, signal: null }, 'it stops by itself with exit code 0, not killed by the signal');
    assert.equal(everything, JSON.stringify(addresses) + '\n', 'nothing but the one line is printed on stdout');
    await assert.rejects(httpRequest(`${addresses.http}/api/devices`), /ECONNREFUSED/);
  });

  it('prints a banner with the addresses, the CA path and how to create a device, and stops on SIGINT', async () => {
    cli = startCli(['--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const banner = await stdoutUntil(cli, 'Ctrl+C');
    const caPath = /CA certificate\s+(\S+)/.exec(banner)?.[1] ?? '';
    assert.ok(caPath.startsWith(dataDir), `the CA path ${caPath} is in the data dir`);
    assert.match(await fs.readFile(caPath, 'utf8'), /BEGIN CERTIFICATE/);
    assert.match(banner, /device create MYPRODUCT1 device1/);
    assert.match(banner, /mqtts:\/\/127\.0\.0\.1:\d+/);
    assert.deepEqual(await stopWith(cli, 'SIGINT'), { code: 0, signal: null }, 'it stops by itself with exit code 0, not killed by the signal');
  });

  it('uploads a firmware signed with --sign-key, putting the signature into user_defined', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const api = ['--api', addresses.http];
    const keys = generateFirmwareKeyPair('ecdsa-p256-sha256');
    const keyFile = path.join(dataDir, 'vendor.private.pem');
    await fs.writeFile(keyFile, keys.privateKeyPem);
    const bytes = randomBytes(4096);
    const file = path.join(dataDir, 'signed.bin');
    await fs.writeFile(file, bytes);
    const signing = ['--sign-key', keyFile, '--key-id', 'vendor-2026', '--alg', 'ecdsa-p256-sha256', '--user-defined', '{"time":"2026-12-02"}'];
    const uploaded = await runCli(['firmware', 'upload', 'SIGNPRODUCT', '2.0.0', file, ...signing, ...api]);
    assert.equal(uploaded.code, 0, uploaded.stderr);
    const userDefined = (JSON.parse(uploaded.stdout) as { user_defined: string }).user_defined;
    assert.equal((JSON.parse(userDefined) as { time: string }).time, '2026-12-02');
    const manifest = { productId: 'SIGNPRODUCT', version: '2.0.0', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    const policy = { keys: [{ id: 'vendor-2026', pem: keys.publicKeyPem }], required: true };
    assert.deepEqual(checkFirmwareSignature(manifest, findFirmwareSignature(undefined, userDefined), policy), {
      ok: true,
      signature: { alg: 'ecdsa-p256-sha256', keyId: 'vendor-2026' },
    });
    const withoutId = await runCli(['firmware', 'upload', 'SIGNPRODUCT', '2.0.1', file, '--sign-key', keyFile, ...api]);
    assert.equal(withoutId.code, 2);
    assert.match(withoutId.stderr, /--key-id is missing/);
  });

  it('creates a device, uploads firmware, sets faults, starts an update and shows the task through subcommands', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const api = ['--api', addresses.http];

    const created = await runCli(['device', 'create', 'CLIPRODUCT', 'dev1', ...api]);
    assert.equal(created.code, 0, created.stderr);
    const info = parseDeviceInfo(created.stdout);
    assert.deepEqual([info.productId, info.deviceName, info.authMode], ['CLIPRODUCT', 'dev1', 'key']);

    const cert = await runCli(['device', 'create', 'CLIPRODUCT', 'dev2', '--cert', ...api]);
    assert.equal(JSON.parse(cert.stdout).auth_mode, 'CERT');

    const bytes = randomBytes(4096);
    const file = path.join(dataDir, 'fw.bin');
    await fs.writeFile(file, bytes);
    const uploaded = await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.1.0', file, ...api]);
    assert.equal(uploaded.code, 0, uploaded.stderr);
    assert.deepEqual(JSON.parse(uploaded.stdout), {
      productId: 'CLIPRODUCT',
      version: '1.1.0',
      md5sum: createHash('md5').update(bytes).digest('hex'),
      sha256: createHash('sha256').update(bytes).digest('hex'),
      file_size: 4096,
      outcome: 'created',
    });

    const faults = await runCli(['firmware', 'faults', 'CLIPRODUCT', '1.1.0', '--close-after', '1000', '--ignore-range', ...api]);
    assert.deepEqual(JSON.parse(faults.stdout).faults, { closeAfterBytes: 1000, closeAfterResponses: 1, ignoreRange: true });
    const cleared = await runCli(['firmware', 'faults', 'CLIPRODUCT', '1.1.0', '--clear', ...api]);
    assert.deepEqual(JSON.parse(cleared.stdout).faults, {});

    const started = await runCli(['update', 'start', 'CLIPRODUCT', '1.1.0', '--devices', 'dev1,dev2', '--timeout', '120', ...api]);
    assert.equal(started.code, 0, started.stderr);
    const task = JSON.parse(started.stdout);
    assert.equal(task.timeoutSeconds, 120);
    assert.deepEqual(
      task.devices.map((device: { deviceName: string; state: string }) => [device.deviceName, device.state]),
      [
        ['dev1', 'pending'],
        ['dev2', 'pending'],
      ],
    );

    const shown = await runCli(['task', 'show', task.taskId, ...api]);
    assert.equal(JSON.parse(shown.stdout).taskId, task.taskId);

    const device = await runCli(['device', 'show', 'CLIPRODUCT', 'dev1', ...api]);
    const view = JSON.parse(device.stdout);
    assert.deepEqual([view.online, view.ota.taskId, view.ota.state], [false, task.taskId, 'pending']);
  });

  it('creates a gateway, binds, lists and unbinds its sub-devices through subcommands', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const api = ['--api', addresses.http];

    const gateway = await runCli(['device', 'create', 'CLIGATEWAY', 'gw1', '--gateway', ...api]);
    assert.equal(gateway.code, 0, gateway.stderr);
    assert.equal(parseDeviceInfo(gateway.stdout).deviceName, 'gw1');
    for (const name of ['sub1', 'sub2']) assert.equal((await runCli(['device', 'create', 'CLIPRODUCT', name, ...api])).code, 0);
    assert.equal(JSON.parse((await runCli(['device', 'show', 'CLIGATEWAY', 'gw1', ...api])).stdout).deviceType, 'gateway');

    const bound = await runCli(['gateway', 'bind', 'CLIGATEWAY', 'gw1', 'CLIPRODUCT', 'sub1', ...api]);
    assert.equal(bound.code, 0, bound.stderr);
    assert.deepEqual([JSON.parse(bound.stdout).deviceName, JSON.parse(bound.stdout).online], ['sub1', false]);
    await runCli(['gateway', 'bind', 'CLIGATEWAY', 'gw1', 'CLIPRODUCT', 'sub2', ...api]);
    const listed = await runCli(['gateway', 'list', 'CLIGATEWAY', 'gw1', ...api]);
    assert.deepEqual(
      JSON.parse(listed.stdout).map((entry: { deviceName: string }) => entry.deviceName),
      ['sub1', 'sub2'],
    );
    assert.deepEqual(JSON.parse((await runCli(['device', 'show', 'CLIPRODUCT', 'sub1', ...api])).stdout).gateway, { productId: 'CLIGATEWAY', deviceName: 'gw1' });

    const unbound = await runCli(['gateway', 'unbind', 'CLIGATEWAY', 'gw1', 'CLIPRODUCT', 'sub1', ...api]);
    assert.deepEqual(JSON.parse(unbound.stdout), { productId: 'CLIPRODUCT', deviceName: 'sub1', unbound: true });
    const again = await runCli(['gateway', 'unbind', 'CLIGATEWAY', 'gw1', 'CLIPRODUCT', 'sub1', ...api]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not bound to gateway CLIGATEWAY\/gw1 \(HTTP 404\)/);
    const all = await runCli(['gateway', 'unbind-all', 'CLIGATEWAY', 'gw1', ...api]);
    assert.deepEqual(JSON.parse(all.stdout), { unbound: [{ productId: 'CLIPRODUCT', deviceName: 'sub2' }] });
    assert.deepEqual(JSON.parse((await runCli(['gateway', 'list', 'CLIGATEWAY', 'gw1', ...api])).stdout), []);

    const usage = await runCli(['gateway', 'bind', 'CLIGATEWAY', 'gw1', 'CLIPRODUCT', ...api]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: tencent-iot-hub-sim gateway bind/);
  });

  it('reports console errors on stderr with exit code 1 and usage errors with exit code 2', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const missing = await runCli(['device', 'show', 'CLIPRODUCT', 'ghost', '--api', addresses.http]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist \(HTTP 404\)/);
    const usage = await runCli(['device', 'create', 'CLIPRODUCT', '--api', addresses.http]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: tencent-iot-hub-sim device create/);
    const noKnobs = await runCli(['firmware', 'faults', 'CLIPRODUCT', '1.0.0', '--api', addresses.http]);
    assert.equal(noKnobs.code, 2);
  });

  /** Asserts the shape of a mistake: exit code 2, one line naming it, the usage once, nothing on stdout. */
  function assertArgumentError(result: CliResult, naming: RegExp, usage: RegExp): void {
    assert.equal(result.code, 2, `exit code 2 for ${naming}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, `two lines: the error and the usage, got ${JSON.stringify(result.stderr)}`);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], naming);
    assert.match(lines[1], /^usage: tencent-iot-hub-sim/);
    assert.match(lines[1], usage);
    assert.equal(result.stdout, '');
  }

  it('says which argument is wrong in one line, prints the usage once and exits with 2', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const api = ['--api', addresses.http];
    const upload = /firmware upload <productId> <version> <file>/;

    assertArgumentError(
      await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.0.0', path.join(dataDir, 'missing.bin'), ...api]),
      /firmware file \S+missing\.bin does not exist/,
      upload,
    );
    assertArgumentError(await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.0.0', dataDir, ...api]), /firmware file \S+ is not a file/, upload);
    const empty = path.join(dataDir, 'empty.bin');
    await fs.writeFile(empty, '');
    assertArgumentError(await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.0.0', empty, ...api]), /firmware file \S+empty\.bin is empty/, upload);

    assertArgumentError(await runCli(['device', 'list', '--api', 'localhost:8080']), /--api "localhost:8080" is not the http:\/\/ address/, /device list/);
    assertArgumentError(await runCli(['device', 'list', '--api', 'https://127.0.0.1:8444/firmware']), /--api "https:\/\/127\.0\.0\.1:8444\/firmware"/, /device list/);
    assertArgumentError(
      await runCli(['device', 'list'], { TENCENT_IOT_HUB_SIM_API: 'not a url' }),
      /TENCENT_IOT_HUB_SIM_API "not a url" is not the http:\/\/ address/,
      /device list/,
    );

    assertArgumentError(await runCli(['update', 'start', 'CLIPRODUCT', '1.0.0', '--timeout', 'soon', ...api]), /--timeout "soon" is not a whole number/, /update start/);
    await fs.writeFile(path.join(dataDir, 'fw.bin'), randomBytes(100));
    assert.equal((await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.0.0', path.join(dataDir, 'fw.bin'), ...api])).code, 0);
    assertArgumentError(
      await runCli(['update', 'start', 'CLIPRODUCT', '1.0.0', '--timeout', '5000', ...api]),
      /--timeout must be an integer from 1 to 3600/,
      /update start/,
    );
    assertArgumentError(
      await runCli(['firmware', 'faults', 'CLIPRODUCT', '1.0.0', '--close-responses', '2', ...api]),
      /--close-responses needs --close-after/,
      /firmware faults/,
    );
    assertArgumentError(await runCli(['--mqtt-port', 'abc', '--data-dir', dataDir]), /--mqtt-port "abc" is not a port number/, /--mqtt-port <n>/);
    assertArgumentError(await runCli(['--https-port', '70000', '--data-dir', dataDir]), /--https-port "70000" is not a port number/, /--https-port <n>/);
    assertArgumentError(await runCli(['--mqtt-port', '5000', '--http-port', '5000', '--data-dir', dataDir]), /--http-port 5000 is also --mqtt-port/, /--http-port <n>/);
    assertArgumentError(await runCli(['device', 'list', '--cert', ...api]), /--cert does not apply to device list/, /device list/);
    assertArgumentError(await runCli(['device', 'show', 'CLIPRODUCT', ...api]), /device show: <deviceName> is missing/, /device show <productId> <deviceName>/);
    assertArgumentError(await runCli(['device', 'launch', ...api]), /unknown command "device launch": create, show, list, delete/, /device </);
    assertArgumentError(await runCli(['--no-such-option']), /--no-such-option/, /--help/);
  });

  it('names the start option whose port is already in use', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const second = path.join(dataDir, 'second');
    const mqttTaken = await runCli(['--data-dir', second, ...EPHEMERAL_PORTS.slice(2), '--mqtt-port', String(addresses.ports.mqtt)]);
    assertArgumentError(mqttTaken, new RegExp(`--mqtt-port ${addresses.ports.mqtt} is already in use`), /--mqtt-port <n>/);
    const httpTaken = await runCli(['--data-dir', second, ...EPHEMERAL_PORTS.slice(0, 6), '--https-port', '0', '--http-port', String(addresses.ports.http)]);
    assertArgumentError(httpTaken, new RegExp(`--http-port ${addresses.ports.http} is already in use`), /--http-port <n>/);
  });

  it('takes the console address from TENCENT_IOT_HUB_SIM_API, and --api over it', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const fromVariable = await runCli(['device', 'create', 'CLIPRODUCT', 'dev1'], { TENCENT_IOT_HUB_SIM_API: addresses.http });
    assert.equal(fromVariable.code, 0, fromVariable.stderr);
    assert.equal(parseDeviceInfo(fromVariable.stdout).deviceName, 'dev1');
    const unreachable = 'http://127.0.0.1:1';
    const flagWins = await runCli(['device', 'list', '--api', `${addresses.http}/api`], { TENCENT_IOT_HUB_SIM_API: unreachable });
    assert.equal(flagWins.code, 0, flagWins.stderr);
    assert.deepEqual(
      JSON.parse(flagWins.stdout).map((device: { deviceName: string }) => device.deviceName),
      ['dev1'],
    );
    const nobody = await runCli(['device', 'list'], { TENCENT_IOT_HUB_SIM_API: unreachable });
    assert.equal(nobody.code, 1);
    assert.equal(
      nobody.stderr,
      `error: no stand-in answers at ${unreachable} (TENCENT_IOT_HUB_SIM_API); start one with "npx -p node-red-contrib-tencent-iot-ota tencent-iot-hub-sim" or point --api at it\n`,
    );
  });

  it('lists and deletes devices, lists firmware, and replaces firmware only when asked', async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const env = { TENCENT_IOT_HUB_SIM_API: addresses.http };
    for (const name of ['dev1', 'dev2']) assert.equal((await runCli(['device', 'create', 'CLIPRODUCT', name], env)).code, 0);
    const names = async () => JSON.parse((await runCli(['device', 'list', 'CLIPRODUCT'], env)).stdout).map((device: { deviceName: string }) => device.deviceName);
    assert.deepEqual(await names(), ['dev1', 'dev2']);
    const deleted = await runCli(['device', 'delete', 'CLIPRODUCT', 'dev1'], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(JSON.parse(deleted.stdout), { productId: 'CLIPRODUCT', deviceName: 'dev1', deleted: true, disconnected: false });
    assert.deepEqual(await names(), ['dev2']);
    const again = await runCli(['device', 'delete', 'CLIPRODUCT', 'dev1'], env);
    assert.deepEqual([again.code, again.stderr], [1, 'error: device CLIPRODUCT/dev1 does not exist (HTTP 404)\n']);

    const first = path.join(dataDir, 'first.bin');
    const other = path.join(dataDir, 'other.bin');
    await fs.writeFile(first, randomBytes(1000));
    await fs.writeFile(other, randomBytes(1000));
    const upload = (file: string, ...extra: string[]) => runCli(['firmware', 'upload', 'CLIPRODUCT', '1.0.0', file, ...extra], env);
    assert.equal(JSON.parse((await upload(first)).stdout).outcome, 'created');
    assert.equal(JSON.parse((await upload(first)).stdout).outcome, 'unchanged');
    const refused = await upload(other);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^error: firmware 1\.0\.0 of product CLIPRODUCT already exists with other content \(md5 [0-9a-f]{32}, 1000 bytes\); give --replace to replace it \(HTTP 409\)\n$/,
    );
    const replaced = await upload(other, '--replace');
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal(JSON.parse(replaced.stdout).outcome, 'replaced');
    assert.equal(
      JSON.parse(replaced.stdout).md5sum,
      createHash('md5')
        .update(await fs.readFile(other))
        .digest('hex'),
    );

    assert.equal((await runCli(['firmware', 'upload', 'CLIPRODUCT', '1.1.0', first], env)).code, 0);
    const listed = await runCli(['firmware', 'list', 'CLIPRODUCT'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      JSON.parse(listed.stdout).map((record: Record<string, unknown>) => [record.version, record.file_size, record.requestsServed, Object.keys(record).length]),
      [
        ['1.0.0', 1000, 0, 6],
        ['1.1.0', 1000, 0, 6],
      ],
    );
  });

  it("prints with --for-stand-in a device_info.json with the stand-in's host, port and CA, enough to connect", async () => {
    cli = startCli(['--json', '--data-dir', dataDir, ...EPHEMERAL_PORTS]);
    const addresses = JSON.parse(await stdoutUntil(cli, '\n')) as SimulatorAddresses;
    const created = await runCli(['device', 'create', 'CLIPRODUCT', 'dev1', '--for-stand-in', '--api', addresses.http]);
    assert.equal(created.code, 0, created.stderr);
    const info = parseDeviceInfo(created.stdout);
    const caPem = await fs.readFile(addresses.caCertPath, 'utf8');
    assert.deepEqual(info.endpoint, { host: '127.0.0.1', port: addresses.ports.mqtts, transport: 'mqtts', caPem });
    assert.deepEqual(Object.keys(JSON.parse(created.stdout)), ['auth_mode', 'productId', 'deviceName', 'key_deviceinfo', 'stand_in']);
    // What the pasted device_info.json gives a device is all it needs.
    const client = await connectOrFail(`mqtts://${info.endpoint?.host}:${info.endpoint?.port}`, {
      ...signConnection(info, info.deviceSecret ?? ''),
      ca: info.endpoint?.caPem,
    });
    await endClient(client);

    const cert = await runCli(['device', 'create', 'CLIPRODUCT', 'dev2', '--cert', '--for-stand-in', '--api', addresses.http]);
    const certInfo = JSON.parse(cert.stdout);
    assert.deepEqual([certInfo.auth_mode, certInfo.stand_in.port, certInfo.stand_in.caPem], ['CERT', addresses.ports.mqtts, caPem]);
  });

  it('explains itself with --help', async () => {
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    for (const text of [
      '--mqtt-port',
      '--data-dir',
      '--json',
      'device create',
      '--gateway',
      '--for-stand-in',
      'device list',
      'device delete',
      'gateway bind',
      'gateway unbind',
      'gateway list',
      'firmware upload <productId> <version> <file> [--replace]',
      'firmware list',
      'firmware faults',
      'update start',
      'task show',
      'TENCENT_IOT_HUB_SIM_API',
      'npx -p node-red-contrib-tencent-iot-ota tencent-iot-hub-sim',
    ]) {
      assert.ok(help.stdout.includes(text), `--help mentions ${text}`);
    }
  });
});

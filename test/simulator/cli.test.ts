import { strict as assert } from 'assert';
import { execFile, spawn, type ChildProcess } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseDeviceInfo } from '../../lib/device-info';
import type { SimulatorAddresses } from '../../simulator/iot-hub-simulator';
import { httpRequest } from '../support/http-request';

const CLI = path.resolve(__dirname, '../../simulator/cli.js');
const EPHEMERAL_PORTS = ['--mqtt-port', '0', '--mqtts-port', '0', '--wss-port', '0', '--http-port', '0', '--https-port', '0'];

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
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
      file_size: 4096,
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

  it('explains itself with --help', async () => {
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    for (const text of [
      '--mqtt-port',
      '--data-dir',
      '--json',
      'device create',
      '--gateway',
      'gateway bind',
      'gateway unbind',
      'gateway list',
      'firmware faults',
      'update start',
      'task show',
    ]) {
      assert.ok(help.stdout.includes(text), `--help mentions ${text}`);
    }
  });
});

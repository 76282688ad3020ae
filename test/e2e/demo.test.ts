import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as path from 'path';
import { freePort } from '../../demo/node-red-process';

describe('npm run demo -- --once', function () {
  this.timeout(240_000);

  it('runs a whole update on the stand-in, restarting Node-RED mid-download, and exits 0', async function () {
    const port = await freePort();
    const script = path.resolve(__dirname, '..', '..', 'demo', 'run-demo.js');
    const child = spawn(process.execPath, [script, '--once', '--port', String(port), '--size-mib', '4', '--rate-kib', '1024'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, output);
    for (const step of [
      /← report_version 0\.1\.0/,
      /editor http:\/\/127\.0\.0\.1:\d+ +console http:\/\/127\.0\.0\.1:\d+\//,
      /→ update_firmware 1\.0\.0/,
      /← downloading 0%/,
      /killing Node-RED \(SIGKILL\)/,
      /resuming 1\.0\.0 from byte [1-9]\d* on disk/,
      /1\.0\.0 verified: MD5 [0-9a-f]{32} matches/,
      /← burning \(QoS 1\)/,
      /← done \(QoS 1\)/,
      /done for 1\.0\.0 acknowledged/,
      /← report_version 1\.0\.0/,
      /Result: +done, device version 1\.0\.0/,
    ]) {
      assert.match(output, step);
    }
    const served = /Bytes served: +(\d+) for a (\d+)-byte file/.exec(output);
    assert.ok(served);
    assert.ok(Number(served[1]) < Number(served[2]) + 2 * 1024 * 1024, served[0]);
  });

  it('with --signed installs firmware the stand-in signed, verified with the vendor key, and exits 0', async function () {
    const port = await freePort();
    const script = path.resolve(__dirname, '..', '..', 'demo', 'run-demo.js');
    const child = spawn(process.execPath, [script, '--signed', '--once', '--port', String(port), '--size-mib', '2', '--rate-kib', '2048'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, output);
    for (const step of [
      /firmware signed with key vendor-2026 \(ed25519\); update commands carry user_defined \{"signature":/,
      /Signed firmware OTA pipeline/,
      /1\.0\.0 verified: MD5 [0-9a-f]{32} matches, signature by key vendor-2026 \(ed25519\) verifies/,
      /Result: +done, device version 1\.0\.0/,
    ]) {
      assert.match(output, step);
    }
  });

  it('with --gateway updates two sub-devices at once through one connection, restarting the gateway mid-download, and exits 0', async function () {
    const port = await freePort();
    const script = path.resolve(__dirname, '..', '..', 'demo', 'run-demo.js');
    const child = spawn(process.execPath, [script, '--gateway', '--once', '--port', String(port), '--size-mib', '4', '--rate-kib', '512'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, output);
    for (const step of [
      /sensor1 ← report_version 0\.1\.0/,
      /sensor2 ← report_version 0\.1\.0/,
      /→ sensor1: update_firmware 1\.0\.0/,
      /→ sensor2: update_firmware 1\.0\.0/,
      /killing Node-RED \(SIGKILL\) at \d+% of sensor1/,
      /resuming 1\.0\.0 from byte [1-9]\d* on disk/,
      /sensor1 now runs 1\.0\.0/,
      /sensor2 now runs 1\.0\.0/,
      /sensor1 +done, version 1\.0\.0; its MCU has the verified file/,
      /sensor2 +done, version 1\.0\.0; its MCU has the verified file/,
    ]) {
      assert.match(output, step);
    }
  });
});

/** The example flows, as a user imports them, in a real Node-RED child process. */
import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Browser } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from '../support/headless-chromium';
import { loadExampleFlow, readExampleFlow } from '../../demo/example-flow';
import { NodeRedProcess, PACKAGE_DIR } from '../../demo/node-red-process';
import { boxesOverlap, contains, layoutOf, nodeDescription, onGrid, wiresOf, type FlowNode, type NodeLayout } from '../support/flow-layout';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const EXAMPLES = ['basic-ota-pipeline', 'raspberry-pi-install', 'gateway-subdevice-ota', 'signed-firmware', 'dashboard-progress'];

describe('example flows', function () {
  this.timeout(120_000);
  let workDir: string;

  before(async function () {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'examples-'));
  });

  after(async function () {
    await fs.rm(workDir, { recursive: true, force: true });
  });

  it('are listed where Import > Examples finds them', async function () {
    const files = (await fs.readdir(path.join(PACKAGE_DIR, 'examples'))).sort();
    assert.deepEqual(files, EXAMPLES.map((name) => `${name}.json`).sort());
  });

  it('share no node id, so that importing one after another raises no conflict', async function () {
    const owners = new Map<string, string>();
    for (const name of EXAMPLES) {
      for (const node of await readExampleFlow(name)) {
        const id = node.id as string;
        assert.ok(!owners.has(id), `${id} is in both ${owners.get(id)} and ${name}`);
        owners.set(id, name);
      }
    }
  });

  /** The nodes each tab of an example shows in the editor. */
  async function drawnNodes(name: string): Promise<NodeLayout[]> {
    const flows = (await readExampleFlow(name)) as FlowNode[];
    return flows.filter((node) => node.z !== undefined && node.x !== undefined).map(layoutOf);
  }

  for (const name of EXAMPLES) {
    describe(`${name} as the editor draws it`, function () {
      it('has every node on the 20 px grid', async function () {
        for (const layout of await drawnNodes(name)) assert.ok(onGrid(layout), `${nodeDescription(layout)} is on the grid`);
      });

      it('leaves each node and the status line under it clear of every other node', async function () {
        const layouts = await drawnNodes(name);
        for (const [index, a] of layouts.entries()) {
          for (const b of layouts.slice(index + 1)) {
            if (a.node.z !== b.node.z) continue;
            const areasA = [a.box, ...(a.status ? [a.status] : [])];
            const areasB = [b.box, ...(b.status ? [b.status] : [])];
            const overlap = areasA.some((areaA) => areasB.some((areaB) => boxesOverlap(areaA, areaB)));
            assert.ok(!overlap, `${nodeDescription(a)} and ${nodeDescription(b)} (or their statuses) overlap`);
          }
        }
      });

      it('runs every wire left to right and over no node, status line or comment', async function () {
        const layouts = await drawnNodes(name);
        for (const wire of wiresOf(layouts)) {
          const what = `the wire from ${nodeDescription(wire.source)} to ${nodeDescription(wire.target)}`;
          assert.ok(wire.forward, `${what} runs left to right`);
          for (const other of layouts) {
            if (other === wire.source || other === wire.target || other.node.z !== wire.source.node.z) continue;
            const areas = [other.box, ...(other.status ? [other.status] : [])];
            assert.ok(!wire.points.some((point) => areas.some((area) => contains(area, point))), `${what} crosses ${nodeDescription(other)}`);
          }
        }
      });
    });
  }

  for (const name of EXAMPLES) {
    it(`${name} loads in Node-RED with no unknown node types`, async function () {
      const flows = await readExampleFlow(name);
      const runtime = await NodeRedProcess.start({ userDir: path.join(workDir, name), flows });
      try {
        assert.doesNotMatch(runtime.output, /missing types|Unknown type|unknown node/i);
        const response = await fetch(`${runtime.url}/flows`, { headers: { 'Node-RED-API-Version': 'v2' } });
        const deployed = (await response.json()) as { flows: Array<{ id: string; type: string }> };
        assert.deepEqual(deployed.flows.map((node) => node.id).sort(), flows.map((node) => node.id as string).sort());
        assert.ok(!deployed.flows.some((node) => node.type === 'unknown'));
        const sets = (await (await fetch(`${runtime.url}/nodes`, { headers: { Accept: 'application/json' } })).json()) as Array<{ types: string[] }>;
        const known = new Set(sets.flatMap((set) => set.types));
        for (const node of flows) {
          if (node.type === 'tab') continue;
          assert.ok(known.has(node.type as string), `${node.type} is a registered node type`);
        }
      } finally {
        await runtime.stop();
      }
    });
  }

  describe('raspberry-pi-install with a real install script', function () {
    let sim: SimulatorFixture;
    let count = 0;

    before(async function () {
      sim = await startSimulator();
    });

    after(async function () {
      await sim?.close();
    });

    async function runWithScript(script: string): Promise<{ state: string; code?: number; message?: string; version?: string; installed: string }> {
      const deviceName = `pi${++count}`;
      const productId = 'PIEXAMPLE';
      const created = await sim.createDevice(productId, deviceName);
      const dir = path.join(workDir, deviceName);
      await fs.mkdir(dir, { recursive: true });
      const scriptPath = path.join(dir, 'install-firmware.sh');
      const installed = path.join(dir, 'installed.bin');
      await fs.writeFile(scriptPath, `#!/bin/sh\n${script.replace('$INSTALLED', installed)}\n`, { mode: 0o755 });
      const { flows, credentials } = await loadExampleFlow('raspberry-pi-install', {
        productId,
        deviceName,
        deviceSecret: created.deviceSecret ?? '',
        transport: 'mqtts',
        host: '127.0.0.1',
        port: sim.addresses.ports.mqtts,
        caCertPem: sim.caPem,
        stateDir: path.join(dir, 'state'),
        runningVersion: '0.1.0',
      });
      for (const node of flows) if (node.type === 'exec') node.command = scriptPath;
      const version = `1.0.${count}`;
      await sim.uploadFirmware(productId, version, randomBytes(256 * 1024));
      const runtime = await NodeRedProcess.start({ userDir: path.join(dir, 'node-red'), flows, credentials });
      try {
        await sim.console.waitForDevice(productId, deviceName, (device) => device.version === '0.1.0', { timeoutMs: 30_000 });
        await sim.console.startUpdate({ productId, version, deviceNames: [deviceName] });
        const device = await sim.console.waitForDevice(
          productId,
          deviceName,
          (view) => view.ota.state === 'fail' || (view.ota.state === 'done' && view.version === version),
          { timeoutMs: 60_000 },
        );
        return {
          state: device.ota.state ?? '',
          code: device.ota.result_code ?? undefined,
          message: device.ota.result_msg ?? undefined,
          version: device.version ?? undefined,
          installed,
        };
      } finally {
        await runtime.stop();
      }
    }

    it('reports done and the new version when the script exits 0', async function () {
      const result = await runWithScript('cp "$1" "$INSTALLED"');
      assert.equal(result.state, 'done');
      assert.equal(result.version, `1.0.${count}`);
      assert.equal((await fs.stat(result.installed)).size, 256 * 1024, 'the script got the verified file');
    });

    it('reports fail -5 with the exit code when the script fails', async function () {
      const result = await runWithScript('exit 3');
      assert.equal(result.state, 'fail');
      assert.equal(result.code, -5);
      assert.match(result.message ?? '', /exited with code 3/);
      assert.equal(result.version, '0.1.0');
    });
  });

  /** What the test reads in the dashboard page (the test's TypeScript has no DOM types). */
  interface DashboardPage {
    document: { body: unknown; querySelector(selector: string): { textContent: string | null } | null };
    MutationObserver: new (callback: () => void) => { observe(target: unknown, options: object): void };
    seen: WidgetState[];
  }
  interface WidgetState {
    gauge: string;
    text: string;
  }

  describe('dashboard-progress on its Dashboard 2.0 page, in Chromium', function () {
    let sim: SimulatorFixture;
    let browser: Browser;

    before(async function () {
      skipWithoutChromium(this, 'the dashboard example');
      sim = await startSimulator();
      browser = await launchChromium();
    });

    after(async function () {
      await browser?.close();
      await sim?.close();
    });

    it('shows the download percent on the gauge and the state and version as text, ending with done', async function () {
      const productId = 'DASHEXAMPLE';
      const deviceName = 'panel1';
      const created = await sim.createDevice(productId, deviceName);
      const dir = path.join(workDir, 'dashboard');
      const { flows, credentials } = await loadExampleFlow('dashboard-progress', {
        productId,
        deviceName,
        deviceSecret: created.deviceSecret ?? '',
        transport: 'mqtts',
        host: '127.0.0.1',
        port: sim.addresses.ports.mqtts,
        caCertPem: sim.caPem,
        stateDir: path.join(dir, 'state'),
        runningVersion: '0.1.0',
      });
      for (const node of flows) if (node.type === 'delay') node.timeout = '0.2';
      const gaugeId = flows.find((node) => node.type === 'ui-gauge')?.id as string;
      const textId = flows.find((node) => node.type === 'ui-text')?.id as string;
      await sim.uploadFirmware(productId, '1.0.0', randomBytes(4 * 1024 * 1024));
      // Slow enough that the page sees the download under way, not only its end.
      await sim.console.setFirmwareFaults(productId, '1.0.0', { throttleBytesPerSecond: 1024 * 1024 });
      const runtime = await NodeRedProcess.start({ userDir: path.join(dir, 'node-red'), flows, credentials });
      const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
      try {
        await page.goto(`${runtime.url}/dashboard`);
        await page.waitForSelector(`#nrdb-ui-widget-${textId} .nrdb-ui-text-value`, { state: 'attached' });
        // Every value the widgets show, as the page renders it.
        await page.evaluate(
          ({ gaugeId, textId }) => {
            const page = globalThis as unknown as DashboardPage;
            const { document } = page;
            const seen: WidgetState[] = (page.seen = []);
            const read = () => ({
              gauge: document.querySelector(`#nrdb-ui-widget-${gaugeId} .nrdb-ui-gauge-value`)?.textContent?.trim() ?? '',
              text: document.querySelector(`#nrdb-ui-widget-${textId} .nrdb-ui-text-value`)?.textContent?.trim() ?? '',
            });
            new page.MutationObserver(() => {
              const now = read();
              const last = seen[seen.length - 1];
              if (!last || last.gauge !== now.gauge || last.text !== now.text) seen.push(now);
            }).observe(document.body, { subtree: true, childList: true, characterData: true });
          },
          { gaugeId, textId },
        );
        await sim.console.waitForDevice(productId, deviceName, (device) => device.version === '0.1.0', { timeoutMs: 30_000 });
        await sim.console.startUpdate({ productId, version: '1.0.0', deviceNames: [deviceName] });
        await sim.console.waitForDevice(productId, deviceName, (device) => device.ota.state === 'done' && device.version === '1.0.0', { timeoutMs: 90_000 });
        await page.waitForFunction(
          (textId) => (globalThis as unknown as DashboardPage).document.querySelector(`#nrdb-ui-widget-${textId} .nrdb-ui-text-value`)?.textContent?.includes('done'),
          textId,
        );
        const seen = (await page.evaluate(() => (globalThis as unknown as DashboardPage).seen)).filter((state) => state.text !== '');
        const downloading = seen.filter((state) => /^downloading 1\.0\.0: \d+%$/.test(state.text));
        assert.ok(
          downloading.some((state) => {
            const percent = Number(/(\d+)%$/.exec(state.text)?.[1]);
            return percent > 0 && percent < 100 && state.gauge.startsWith(String(percent));
          }),
          `the gauge and the text followed the download: ${JSON.stringify(seen)}`,
        );
        assert.ok(
          seen.some((state) => state.text === 'burning 1.0.0'),
          `the text said burning: ${JSON.stringify(seen)}`,
        );
        const last = seen[seen.length - 1];
        assert.equal(last.text, 'done: running 1.0.0');
        assert.match(last.gauge, /^100/);
      } finally {
        await page.close();
        await runtime.stop();
      }
    });
  });
});

/**
 * The statuses of a whole pipeline follow the device's update: each node shows its step of the
 * current update only, none keeps a step under way once the update has ended, and ota-version
 * shows the version running.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import type { NodeMessage, NodeStatus } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nodeModules, statusMatching, unloadFlow, waitForEvent, type TestNode } from '../support/node-red-test-runtime';
import { DEVICE, isProgress, shownStatus, startOtaFlowContext, withStatus, type OtaFlowContext } from '../support/ota-flow';

const PIPELINE = ['in', 'download', 'verify', 'burning-report', 'end-report'] as const;

describe('node statuses through an update', function () {
  this.timeout(120_000);
  let context: OtaFlowContext;
  /** Every status each node showed since the flow started (a node's status.lastCall is that of any node). */
  let shown: Record<string, NodeStatus[]>;

  beforeEach(async function () {
    context = await startOtaFlowContext();
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaDownload, nodeModules.otaVerify, nodeModules.otaReport, nodeModules.otaVersion],
      [
        context.deviceNode(),
        { id: 'version', type: 'ota-version', device: 'dev', autoReport: true, wires: [[]] },
        // As in the basic example: one report node for burning, one for the end (done or fail).
        { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['download']] },
        { id: 'download', type: 'ota-download', device: 'dev', wires: [['verify'], []] },
        { id: 'verify', type: 'ota-verify', device: 'dev', wires: [['burning-report'], []] },
        { id: 'burning-report', type: 'ota-report', device: 'dev', state: 'burning', wires: [['burned']] },
        { id: 'burned', type: 'helper' },
        { id: 'end-report', type: 'ota-report', device: 'dev', state: '', reportVersion: false, wires: [['ended']] },
        { id: 'ended', type: 'helper' },
      ],
      context.credentials,
    );
    shown = Object.fromEntries([...PIPELINE, 'version'].map((id) => [id, record(getNode(id))]));
    await subscribed;
  });

  afterEach(async function () {
    await unloadFlow();
    await context.close();
  });

  /** Pushes an update command to a firmware on the stand-in; resolves once the burning report is acknowledged. */
  async function updateUntilBurning(version: string): Promise<NodeMessage> {
    const firmware = randomBytes(64 * 1024);
    await context.sim.uploadFirmware(DEVICE.productId, version, firmware);
    const burned = waitForEvent<NodeMessage>(getNode('burned'), 'input');
    await context.push({
      type: 'update_firmware',
      version,
      url: context.sim.simulator.firmwareServer.signedUrl(DEVICE.productId, version, { scheme: 'http', ttlSeconds: 600 }),
      md5sum: createHash('md5').update(firmware).digest('hex'),
      file_size: firmware.length,
    });
    return burned;
  }

  /** Sends the end of the update into the end report node; resolves once the cloud acknowledged it. */
  function end(message: NodeMessage): Promise<NodeMessage> {
    const acknowledged = waitForEvent<NodeMessage>(getNode('ended'), 'input');
    getNode('end-report').receive(message);
    return acknowledged;
  }

  function lastStatuses(): Record<string, unknown> {
    return Object.fromEntries([...PIPELINE, 'version'].map((id) => [id, shownStatus(shown[id][shown[id].length - 1])]));
  }

  /** Every status a node shows from now on. */
  function record(node: TestNode): NodeStatus[] {
    const statuses: NodeStatus[] = [];
    node.on('call:status', (call: { args: [NodeStatus] }) => statuses.push(call.args[0]));
    return statuses;
  }

  it('after done no node shows a step of the update under way, and ota-version shows the version now running', async function () {
    await statusMatching(getNode('version'), withStatus('ota-version.status.reported', { version: '0.1.0' }));
    const message = await updateUntilBurning('1.0.0');
    assert.deepEqual(lastStatuses()['burning-report'], { key: 'ota-report.status.burning', parameters: { version: '1.0.0' } });
    await end({ ...message, payload: { state: 'done' } });

    const done = { key: 'tencent-iot-device.status.done', parameters: { version: '1.0.0' } };
    assert.deepEqual(lastStatuses(), {
      in: done,
      download: { key: 'ota-download.status.downloaded', parameters: { version: '1.0.0' } },
      verify: { key: 'ota-verify.status.verified', parameters: { version: '1.0.0' } },
      'burning-report': done,
      'end-report': done,
      version: { key: 'ota-version.status.running', parameters: { version: '1.0.0' } },
    });

    // After a reconnect, ota-version reports (and shows) the version running now.
    const reported = statusMatching(getNode('version'), withStatus('ota-version.status.reported', { version: '1.0.0' }));
    await context.sim.restart();
    context.wire.attach(context.sim.simulator.broker);
    await reported;
  });

  it('a new update clears what the nodes showed of the last one, and when it fails the nodes show the failure', async function () {
    await end({ ...(await updateUntilBurning('1.0.0')), payload: { state: 'done' } });
    const since = Object.fromEntries(Object.entries(shown).map(([id, statuses]) => [id, statuses.length]));
    const shownSince = (id: string) => shown[id].slice(since[id]);

    const message = await updateUntilBurning('1.1.0');
    for (const id of PIPELINE) {
      assert.deepEqual(shownStatus(shownSince(id)[0]), { key: 'tencent-iot-device.status.connected', parameters: {} }, `${id} no longer shows the update to 1.0.0`);
    }
    assert.deepEqual(shownStatus(shownSince('in')[1]), { key: 'ota-update-in.status.update', parameters: { version: '1.1.0' } });
    assert.deepEqual(shownSince('version'), [], "a new update leaves ota-version's running version");

    await end({ ...message, payload: { state: 'fail', result_code: -1, result_msg: 'flash write error at 0x8000, sector 12 of 64, after 3 attempts' } });
    await context.wire.waitFor(isProgress('fail', '1.1.0'));
    const failed = { key: 'tencent-iot-device.status.failed', parameters: { code: '-1' } };
    assert.deepEqual(lastStatuses(), {
      in: failed,
      download: { key: 'ota-download.status.downloaded', parameters: { version: '1.1.0' } },
      verify: { key: 'ota-verify.status.verified', parameters: { version: '1.1.0' } },
      'burning-report': failed,
      'end-report': failed,
      version: { key: 'ota-version.status.running', parameters: { version: '1.0.0' } },
    });
  });
});

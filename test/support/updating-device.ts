/**
 * A device that updates itself as a real one does, for tests that watch an update from the cloud's
 * side: lib's OtaDevice on its own MQTT connection to the stand-in, reporting its version after each
 * connect and taking every update_firmware through its update session (the download reporting its
 * progress, the MD5 check, burning, done and the new version).
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { OtaDevice } from '../../lib/ota-device';
import type { UpdateCommand } from '../../lib/ota-messages';
import { UpdateCommandListener } from '../../lib/update-command-listener';
import type { SimulatorFixture } from './simulator-fixture';

export interface UpdatingDeviceOptions {
  productId: string;
  deviceName: string;
  deviceSecret: string;
  runningVersion: string;
  /** Least time between two progress reports of a download (default 200 ms, so that a short download shows several). */
  progressIntervalMs?: number;
}

const USER_ID = 'updating-device';

export class UpdatingDevice {
  /** Errors of the update steps, kept for the test to show. */
  readonly errors: Error[] = [];
  private readonly updates = new Set<Promise<void>>();

  private constructor(
    readonly device: OtaDevice,
    private readonly stateDir: string,
    private readonly progressIntervalMs: number,
  ) {
    const listener = new UpdateCommandListener(device);
    device.channel.on('update-command', (payload) => {
      void listener.handle(payload).then((outcome) => {
        if (outcome.kind === 'accepted') this.track(this.update(outcome.command));
      }, this.keep);
    });
    device.onConnectReport((report) => {
      if (report.error) this.errors.push(report.error);
    });
  }

  /** Connects over MQTT (plain, on loopback) and reports the running version. */
  static async start(sim: SimulatorFixture, options: UpdatingDeviceOptions): Promise<UpdatingDevice> {
    const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'updating-device-'));
    const device = new OtaDevice({
      productId: options.productId,
      deviceName: options.deviceName,
      authMode: 'key',
      deviceSecret: options.deviceSecret,
      region: 'china',
      transport: 'mqtt',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtt,
      // The firmware URLs are https under the stand-in's CA.
      caCertPem: sim.caPem,
      stateDir,
      runningVersion: options.runningVersion,
    });
    const updating = new UpdatingDevice(device, stateDir, options.progressIntervalMs ?? 200);
    device.register(USER_ID);
    return updating;
  }

  private readonly keep = (error: Error) => {
    this.errors.push(error);
  };

  private track(update: Promise<void>): void {
    this.updates.add(update);
    void update.finally(() => this.updates.delete(update));
  }

  private async update(command: UpdateCommand): Promise<void> {
    const version = command.version;
    try {
      const downloaded = await this.device.session.download(version, { progressIntervalMs: this.progressIntervalMs, retryBackoffMs: 200 });
      if (!downloaded) return;
      const check = await this.device.session.verify(version, { filePath: downloaded.path });
      if (!check.ok) return;
      await this.device.session.reportBurning(version);
      await this.device.session.reportDone(version, { filePath: downloaded.path });
    } catch (error) {
      this.keep(error as Error);
    }
  }

  /** Disconnects (a download under way keeps its file) and removes the state folder. */
  async close(): Promise<void> {
    await this.device.deregister(USER_ID);
    await this.device.close();
    await Promise.all([...this.updates]);
    await fs.rm(this.stateDir, { recursive: true, force: true });
  }
}

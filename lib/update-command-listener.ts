/**
 * Decides what happens to each update_firmware the cloud pushes: parsed strictly (the one place a
 * command is checked; the rest of the pipeline trusts it), checked against the running version,
 * and handed to the update session, which starts it once. Commands that are not taken up are
 * answered to the cloud (`fail` with the reason, or `done` for the version already running) so
 * that its task does not wait for a timeout.
 */
import { compareFirmwareVersions, isValidFirmwareVersion } from './firmware-version';
import { OtaResultCode, parseJsonObject, parseUpdateFirmwareCommand, type ProgressReport, type UpdateCommand } from './ota-messages';
import type { UpdateSession } from './update-session';

/** What the listener needs of a device (OtaDevice has all of it). */
export interface CommandListeningDevice {
  currentVersion(): Promise<string>;
  readonly session: Pick<UpdateSession, 'receive' | 'decline'>;
}

export interface UpdateCommandPolicy {
  /** Largest file_size accepted, in bytes (default 1 GiB). */
  maxFileSize?: number;
  /** A command for the version already running is not started; the cloud is told `done` (default true). */
  ignoreSameVersion?: boolean;
  /** A command for a lower version than the running one is refused with `fail` (default false). */
  refuseDowngrade?: boolean;
}

/** The fields of an update command as a flow sees them in msg.payload. */
export interface UpdateCommandFields {
  version: string;
  url: string;
  md5sum: string;
  file_size: number;
  user_defined?: unknown;
  /** user_defined as the command carried it, when that was a (JSON-encoded) string. */
  user_defined_text?: string;
}

/** A report the listener sends to the cloud about a command it does not start. */
export interface CommandAnswer {
  version: string;
  report: Extract<ProgressReport, { state: 'done' | 'fail' }>;
}

export type UpdateCommandDecision =
  /**
   * To be handled by the flow; `replaced` when it ended the update of another version, `resumed`
   * when it is the update whose download had stopped.
   */
  | { kind: 'accepted'; command: UpdateCommand; replaced: boolean; resumed: boolean }
  /** The same command re-pushed while it is being handled: not started twice. */
  | { kind: 'duplicate'; command: UpdateCommand }
  | { kind: 'same-version'; command: UpdateCommand; answer: CommandAnswer }
  | { kind: 'downgrade'; command: UpdateCommand; runningVersion: string; reason: string; answer: CommandAnswer }
  /** A malformed command; answered only when it names a valid version. */
  | { kind: 'invalid'; field: string; reason: string; version?: string; answer?: CommandAnswer }
  /** The checks need the running version and it is not known (nothing is sent to the cloud). */
  | { kind: 'no-running-version'; command: UpdateCommand; reason: string };

/** A decision, and how its answer to the cloud went (when there was one). */
export type UpdateCommandOutcome = UpdateCommandDecision & { answerError?: Error };

export function updateCommandFields(command: UpdateCommand): UpdateCommandFields {
  const fields: UpdateCommandFields = { version: command.version, url: command.url, md5sum: command.md5sum, file_size: command.file_size };
  if (command.user_defined !== undefined) fields.user_defined = command.user_defined;
  if (command.user_defined_text !== undefined) fields.user_defined_text = command.user_defined_text;
  return fields;
}

/** The version a malformed command names, if its version field itself is valid. */
function namedVersion(payload: Buffer | string | object): string | undefined {
  const parsed = parseJsonObject(payload);
  return parsed.ok && isValidFirmwareVersion(parsed.value.version) ? parsed.value.version : undefined;
}

function failAnswer(version: string, reason: string): CommandAnswer {
  return { version, report: { state: 'fail', resultCode: OtaResultCode.upgradeFailed, resultMessage: reason } };
}

export class UpdateCommandListener {
  private readonly device: CommandListeningDevice;
  private readonly policy: Required<Pick<UpdateCommandPolicy, 'ignoreSameVersion' | 'refuseDowngrade'>> & { maxFileSize?: number };
  /** Commands are decided one after another, so that the session sees them in the order they came. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(device: CommandListeningDevice, policy: UpdateCommandPolicy = {}) {
    this.device = device;
    this.policy = {
      maxFileSize: policy.maxFileSize,
      ignoreSameVersion: policy.ignoreSameVersion ?? true,
      refuseDowngrade: policy.refuseDowngrade ?? false,
    };
  }

  /** Decides, sends the answer to the cloud if there is one, and waits for its PUBACK. */
  async handle(payload: Buffer | string | object): Promise<UpdateCommandOutcome> {
    const decision = await this.decide(payload);
    const answer = 'answer' in decision ? decision.answer : undefined;
    if (!answer) return decision;
    try {
      const { report } = answer;
      await this.device.session.decline(
        answer.version,
        report.state === 'done' ? report : { state: 'fail', resultCode: report.resultCode, reason: report.resultMessage },
      );
      return decision;
    } catch (error) {
      return { ...decision, answerError: error as Error };
    }
  }

  /** What to do with a command; hands an accepted one to the update session. */
  decide(payload: Buffer | string | object): Promise<UpdateCommandDecision> {
    const next = this.queue.then(() => this.decideNow(payload));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async decideNow(payload: Buffer | string | object): Promise<UpdateCommandDecision> {
    const parsed = parseUpdateFirmwareCommand(payload, { maxFileSize: this.policy.maxFileSize });
    if (!parsed.ok) {
      const version = namedVersion(payload);
      const reason = `invalid command: ${parsed.error}`;
      return version ? { kind: 'invalid', field: parsed.field, reason, version, answer: failAnswer(version, reason) } : { kind: 'invalid', field: parsed.field, reason };
    }
    const command = parsed.value;
    if (this.policy.ignoreSameVersion || this.policy.refuseDowngrade) {
      let runningVersion: string;
      try {
        runningVersion = await this.device.currentVersion();
      } catch (error) {
        return { kind: 'no-running-version', command, reason: (error as Error).message };
      }
      // The cloud compares versions as text, so "the same version" is the same string.
      if (this.policy.ignoreSameVersion && command.version === runningVersion) {
        return { kind: 'same-version', command, answer: { version: command.version, report: { state: 'done' } } };
      }
      if (this.policy.refuseDowngrade && compareFirmwareVersions(command.version, runningVersion) < 0) {
        const reason = `downgrade from ${runningVersion} to ${command.version} refused`;
        return { kind: 'downgrade', command, runningVersion, reason, answer: failAnswer(command.version, reason) };
      }
    }
    const outcome = await this.device.session.receive(command);
    if (outcome === 'duplicate') return { kind: 'duplicate', command };
    return { kind: 'accepted', command, replaced: outcome === 'replaced', resumed: outcome === 'resumed' };
  }
}

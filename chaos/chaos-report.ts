/** The per-run line and the closing table of `npm run chaos`, and whether the run passes. */
import { describeFault } from './fault-plan';
import { doneWithMatchingMd5, type RunResult, type UpdateRecord } from './chaos-run';

const MiB = 1024 * 1024;

function mebibytes(bytes: number): string {
  return `${(bytes / MiB).toFixed(2)} MiB`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

function describeOutcome(update: UpdateRecord): string {
  const finals = `${update.finals.length} final${update.finals.length === 1 ? '' : 's'}`;
  switch (update.outcome) {
    case 'fail':
      return `fail ${update.resultCode ?? '?'} "${update.resultMessage ?? ''}" (${finals})`;
    case 'done':
      return `done (${finals})`;
    case 'done-no-version':
      return `done but no version report within ${seconds(update.waitedMs)} (${finals})`;
    case 'stuck':
      return `STUCK: no final report within ${seconds(update.waitedMs)} (${finals})`;
    case 'not-taken-up':
      return `STUCK: not taken up within ${seconds(update.waitedMs)} (${finals})`;
  }
}

/** Updates that did not end: no final report in time, or a re-start nobody took up. */
export function isStuck(update: UpdateRecord): boolean {
  return update.outcome === 'stuck' || update.outcome === 'not-taken-up';
}

/** The run needs a look: stuck, not exactly one final report, or done without the new version. */
export function runHasProblem(result: RunResult): boolean {
  return result.harnessError !== undefined || result.updates.some((update) => isStuck(update) || update.finals.length !== 1 || update.outcome === 'done-no-version');
}

export function describeRun(result: RunResult): string {
  const faults = result.faults
    .map(({ fault, struckAt }) => `${describeFault(fault)}${struckAt ? (struckAt === 'from the start' ? '' : ` [${struckAt}]`) : ' [never struck]'}`)
    .join(', ');
  const updates = result.updates.map((update) => `#${update.number} ${describeOutcome(update)}`).join('; ');
  const md5 = result.updates.some((update) => update.outcome === 'done') ? (doneWithMatchingMd5(result) ? ', md5 ok' : ', MD5 NOT CONFIRMED') : '';
  const extra = result.bytesServed - result.plan.firmwareSize;
  const served = `served ${mebibytes(result.bytesServed)} for ${mebibytes(result.plan.firmwareSize)}${extra > 0 ? ` (+${((extra / result.plan.firmwareSize) * 100).toFixed(0)}%)` : ''}`;
  // One line per run, to grep and to compare; anything worth a closer look follows, indented.
  const lines = [
    `run ${result.index + 1} seed=${result.plan.seed} ${mebibytes(result.plan.firmwareSize)} | faults: ${faults} | ${updates}${md5} | ${served} | ${seconds(result.durationMs)} | reports: ${result.timeline}`,
  ];
  for (const note of result.notes) lines.push(`    note: ${note}`);
  if (result.qosProblems.length > 0) lines.push(`    QoS: ${result.qosProblems.join(', ')}`);
  if (result.harnessError) lines.push(`    HARNESS ERROR: ${result.harnessError}`);
  if (runHasProblem(result)) lines.push(`    reproduce: npm run chaos -- --seed ${result.plan.seed} --runs 1   (Node-RED log: ${result.runDir}/node-red.log)`);
  return lines.join('\n');
}

export interface Summary {
  text: string;
  passed: boolean;
}

export function summarize(results: RunResult[], elapsedMs: number): Summary {
  const updates = results.flatMap((result) => result.updates);
  const restarts = updates.filter((update) => update.number > 1);
  const doneMd5 = results.filter(doneWithMatchingMd5).length;
  const doneUnconfirmed = results.filter((result) => result.updates[result.updates.length - 1]?.outcome === 'done' && !doneWithMatchingMd5(result)).length;
  const failed = updates.filter((update) => update.outcome === 'fail');
  const codes = new Map<string, number>();
  for (const update of failed) codes.set(String(update.resultCode ?? '?'), (codes.get(String(update.resultCode ?? '?')) ?? 0) + 1);
  const realCodes = new Set(['-1', '-2', '-3', '-4', '-5']);
  const unexpectedCodes = failed.filter((update) => !realCodes.has(String(update.resultCode))).length;
  const notOneFinal = updates.filter((update) => update.finals.length !== 1);
  const runsNotOneFinal = results.filter((result) => result.updates.some((update) => update.finals.length !== 1));
  const stuck = updates.filter(isStuck);
  const stuckNoFinal = updates.filter((update) => update.outcome === 'stuck');
  const stuckNotTakenUp = updates.filter((update) => update.outcome === 'not-taken-up');
  const doneNoVersion = updates.filter((update) => update.outcome === 'done-no-version');
  const released = restarts.filter((update) => update.outcome === 'done');
  const harnessErrors = results.filter((result) => result.harnessError !== undefined);
  const qosProblems = results.reduce((sum, result) => sum + result.qosProblems.length, 0);
  const firmwareBytes = results.reduce((sum, result) => sum + result.plan.firmwareSize, 0);
  const servedBytes = results.reduce((sum, result) => sum + result.bytesServed, 0);
  const reDownloaded = results.reduce((sum, result) => sum + Math.max(0, result.bytesServed - result.plan.firmwareSize), 0);
  const seedsOf = (list: UpdateRecord[]) => {
    const seeds = results.filter((result) => result.updates.some((update) => list.includes(update))).map((result) => result.plan.seed);
    return seeds.length > 0 ? ` (seeds ${[...new Set(seeds)].join(', ')})` : '';
  };
  const percent = (part: number, whole: number) => (whole > 0 ? `${((part / whole) * 100).toFixed(1)} %` : '-');
  const codeList = [...codes.entries()]
    .sort()
    .map(([code, count]) => `${code} ×${count}`)
    .join(', ');

  const rows: [string, string][] = [
    ['runs', `${results.length}`],
    ['updates (console starts)', `${updates.length} (${results.length} first, ${restarts.length} re-starts after no done)`],
    ['runs finished done, burned file MD5 matches', `${doneMd5}${doneUnconfirmed > 0 ? ` (+${doneUnconfirmed} done without a confirmed MD5)` : ''}`],
    ['updates failed with a result code', `${failed.length}${codeList ? `: ${codeList}` : ''}${unexpectedCodes > 0 ? ` (${unexpectedCodes} not a protocol code)` : ''}`],
    ['re-starts taken up and done', `${released.length} of ${restarts.length}`],
    [
      'updates without exactly one final report',
      `${notOneFinal.length} of ${updates.length}` +
        ` (none: ${notOneFinal.filter((update) => update.finals.length === 0).length}, two or more: ${notOneFinal.filter((update) => update.finals.length > 1).length})` +
        `; runs affected: ${runsNotOneFinal.length}${seedsOf(notOneFinal)}`,
    ],
    ['stuck updates', `${stuck.length} (no final report: ${stuckNoFinal.length}, re-start not taken up: ${stuckNotTakenUp.length})${seedsOf(stuck)}`],
    ['done but new version never reported', `${doneNoVersion.length}${seedsOf(doneNoVersion)}`],
    ['reports at an unexpected QoS', `${qosProblems}`],
    ['bytes served', `${mebibytes(servedBytes)} for ${mebibytes(firmwareBytes)} of firmware`],
    [
      'bytes re-downloaded (served − size)',
      `${mebibytes(reDownloaded)} = ${percent(reDownloaded, firmwareBytes)} of the firmware, ${percent(reDownloaded, servedBytes)} of all bytes served`,
    ],
    ['harness errors', `${harnessErrors.length}${harnessErrors.length > 0 ? ` (seeds ${harnessErrors.map((result) => result.plan.seed).join(', ')})` : ''}`],
    ['time', `${seconds(elapsedMs)} (${(elapsedMs / 60000).toFixed(1)} min)`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const text = rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join('\n');
  const passed = stuck.length === 0 && notOneFinal.length === 0 && doneNoVersion.length === 0 && harnessErrors.length === 0;
  return { text, passed };
}

/**
 * `npm run chaos`: a bounded run of OTA updates through random faults, on the real nodes in a
 * Node-RED child process (the basic example flow) against the IoT Hub stand-in started in this
 * process. Each run has a fresh device and firmware and one or more faults (chaos/fault-plan.ts):
 * a connection cut at a random byte, a SIGKILL of Node-RED at a random step, a restart of the
 * stand-in, a read-only state folder, a slow server. It then checks what the stand-in saw: the
 * update ends within a bounded wait with exactly one final report (done and the new version, or
 * fail with a result code), and an update that did not end in done is taken up again when
 * started again. Exit code 1 when an update got stuck, had other than one final report, or
 * reported done without the new version.
 *
 *   --runs N          runs (default 14: about 3 minutes when nothing gets stuck; a stuck run adds about a minute)
 *   --seed S          seed of the first run; run i uses S+i, so `--seed X --runs 1` repeats run X (default 1)
 *   --faults a,b      only these faults (cut, kill, restart, readonly, slow; default all)
 *   --update-wait S   longest wait for an update to end after its start (default 45)
 *   --take-up-wait S  longest wait for a re-started update to be taken up (default 15)
 *   --keep            keep every run's folder (Node-RED user dir, state folder, log); by default
 *                     only those of runs with a problem are kept
 *   --verbose         print each run's faults and events as they happen
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startSimulator, type SimulatorFixture } from '../test/support/simulator-fixture';
import { describeRun, runHasProblem, summarize } from './chaos-report';
import { runChaos, type RunResult } from './chaos-run';
import { describeFault, FAULT_KINDS, planRun, type FaultKind } from './fault-plan';
import { nodeRedIdentity } from './read-only-state';
import { WireObserver } from './wire-observer';

interface ChaosOptions {
  runs: number;
  seed: number;
  faults: FaultKind[];
  updateWaitSeconds: number;
  takeUpWaitSeconds: number;
  keep: boolean;
  verbose: boolean;
}

const USAGE = 'usage: npm run chaos -- [--runs N] [--seed S] [--faults cut,kill,restart,readonly,slow] [--update-wait S] [--take-up-wait S] [--keep] [--verbose]';

function parseArguments(argv: string[]): ChaosOptions {
  const options: ChaosOptions = { runs: 14, seed: 1, faults: [...FAULT_KINDS], updateWaitSeconds: 45, takeUpWaitSeconds: 15, keep: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      return next;
    };
    const wholeNumber = (minimum: number) => {
      const next = Number(value());
      if (!Number.isSafeInteger(next) || next < minimum) throw new Error(`${argument} needs a whole number of at least ${minimum}`);
      return next;
    };
    if (argument === '--runs') options.runs = wholeNumber(1);
    else if (argument === '--seed') options.seed = wholeNumber(0);
    else if (argument === '--update-wait') options.updateWaitSeconds = wholeNumber(1);
    else if (argument === '--take-up-wait') options.takeUpWaitSeconds = wholeNumber(1);
    else if (argument === '--faults') {
      const names = value()
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean);
      for (const name of names) {
        if (!(FAULT_KINDS as readonly string[]).includes(name)) throw new Error(`unknown fault "${name}" (known: ${FAULT_KINDS.join(', ')})`);
      }
      if (names.length === 0) throw new Error('--faults needs at least one fault');
      options.faults = names as FaultKind[];
    } else if (argument === '--keep') options.keep = true;
    else if (argument === '--verbose') options.verbose = true;
    else if (argument === '--help' || argument === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${argument}`);
  }
  return options;
}

async function main(): Promise<number> {
  let options: ChaosOptions;
  try {
    options = parseArguments(process.argv.slice(2));
  } catch (error) {
    console.error(`chaos: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const started = Date.now();
  const identity = nodeRedIdentity();
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-chaos-'));
  // The Node-RED child (maybe another user) must reach its run folder.
  await fs.chmod(workDir, 0o755);
  let fixture: SimulatorFixture | undefined;
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.log('\nchaos: interrupted; finishing the current run (again to stop at once)');
  });

  const results: RunResult[] = [];
  try {
    fixture = await startSimulator();
    const observer = new WireObserver();
    observer.attach(fixture.simulator);
    console.log(
      `chaos: ${options.runs} runs from seed ${options.seed}, faults ${options.faults.join(', ')}; ` +
        `Node-RED runs as ${identity ? `uid ${identity.uid}` : 'this user'}; work dir ${workDir}`,
    );
    console.log(
      `       stand-in ${fixture.addresses.mqtts}, console ${fixture.addresses.console}; update wait ${options.updateWaitSeconds}s, take-up wait ${options.takeUpWaitSeconds}s\n`,
    );
    for (let index = 0; index < options.runs && !interrupted; index++) {
      const plan = planRun(options.seed + index, options.faults);
      if (options.verbose) console.log(`run ${index + 1} seed=${plan.seed}: ${plan.faults.map(describeFault).join(', ')}`);
      // A stand-in left stopped by a failed restart comes back before the next run.
      await fixture.start();
      observer.attach(fixture.simulator);
      const result = await runChaos(
        {
          fixture,
          observer,
          workDir,
          identity,
          updateWaitMs: options.updateWaitSeconds * 1000,
          takeUpWaitMs: options.takeUpWaitSeconds * 1000,
          settleMs: 1500,
          trace: options.verbose ? (text) => console.log(text) : undefined,
        },
        plan,
        index,
      );
      results.push(result);
      console.log(describeRun(result));
      if (!options.keep && !runHasProblem(result)) await fs.rm(result.runDir, { recursive: true, force: true });
    }
  } catch (error) {
    console.error(`chaos: ${(error as Error).stack ?? (error as Error).message}`);
    await fixture?.close().catch(() => undefined);
    return 1;
  }
  await fixture.close().catch(() => undefined);

  const summary = summarize(results, Date.now() - started);
  console.log('\nChaos summary (what the stand-in saw):');
  console.log(summary.text);
  const kept = results.some(runHasProblem) || options.keep;
  if (kept) console.log(`\nRun folders kept in ${workDir}`);
  else await fs.rm(workDir, { recursive: true, force: true });
  console.log(
    summary.passed ? '\nchaos: PASS' : '\nchaos: FAIL (stuck updates, updates without exactly one final report, done without the new version, or harness errors)',
  );
  return summary.passed && !interrupted ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(error);
    process.exit(1);
  },
);

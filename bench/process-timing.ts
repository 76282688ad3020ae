/**
 * Wall and CPU time of whole child processes, so that our download and a reference (curl, md5sum)
 * are measured the same way: CPU is read from the kernel's account of this process's waited-for
 * children (cutime + cstime in /proc/self/stat), which covers any program, not only Node.
 */
import { spawn } from 'child_process';
import { readFileSync } from 'fs';

const CLOCK_TICKS_PER_SECOND = 100;

/** CPU seconds of every child of this process that has ended and been waited for. */
function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 after "pid (comm) ".
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND;
}

export interface ProcessRun {
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; rejects with its stderr when it exits with another code than 0. */
export function runProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const run = { stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
      if (code === 0) resolve(run);
      else reject(new Error(`${command} ${args.join(' ')} ended with ${signal ?? code}: ${run.stderr.trim().slice(0, 500)}`));
    });
  });
}

export interface TimedSteps<T> {
  wallSeconds: number;
  cpuSeconds: number;
  result: T;
}

/**
 * Times `steps`, which runs child processes one after the other and nothing else CPU-heavy in this
 * process meanwhile: wall time from the first spawn to the last exit, CPU of those children.
 */
export async function timeProcesses<T>(steps: () => Promise<T>): Promise<TimedSteps<T>> {
  const cpuBefore = childrenCpuSeconds();
  const started = process.hrtime.bigint();
  const result = await steps();
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { wallSeconds, cpuSeconds: childrenCpuSeconds() - cpuBefore, result };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Watches a Node-RED process during an update storm: its VmRSS every interval, and the latency of
 * its admin API, one request after the other (at most one per interval). It runs in a worker thread
 * (see watchStorm) so that the bench's own event loop, busy serving the firmware, delays neither.
 */
import * as http from 'http';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { parentPort, Worker, workerData } from 'worker_threads';
import { residentKiB } from './process-usage';

export interface StormWatchOptions {
  pid: number;
  /** An admin API address to time, e.g. http://127.0.0.1:1880/settings. */
  adminUrl: string;
  intervalMs: number;
}

export interface StormWatchResult {
  peakRssKiB: number;
  rssSamples: number;
  /** One per admin request; a request still unanswered when the watch stops counts with the time it had waited. */
  latenciesMs: number[];
  /** Requests that failed or were not answered with 200. */
  failedRequests: number;
}

export interface StormWatch {
  /** Ends the watch and returns what it saw. */
  stop(): Promise<StormWatchResult>;
}

/** Starts a watch in a worker thread; resolves once it samples. */
export async function watchStorm(options: StormWatchOptions): Promise<StormWatch> {
  const worker = new Worker(path.join(__dirname, 'storm-watch.js'), { workerData: options });
  const result = new Promise<StormWatchResult>((resolve, reject) => {
    worker.on('message', (message: { result?: StormWatchResult }) => message.result && resolve(message.result));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the storm watch ended with ${code} before its result`)));
  });
  // Seen by stop(); a watch that is never stopped must not end the bench with an unhandled rejection.
  result.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (message: { ready?: boolean }) => message.ready && resolve());
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      try {
        return await result;
      } finally {
        await worker.terminate();
      }
    },
  };
}

function timedGet(url: string, agent: http.Agent): { answered: Promise<boolean>; abort: () => void } {
  const request = http.get(url, { agent, headers: { Accept: 'application/json' } });
  const answered = new Promise<boolean>((resolve) => {
    request.once('response', (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode === 200));
      response.once('error', () => resolve(false));
    });
    request.once('error', () => resolve(false));
  });
  return { answered, abort: () => request.destroy() };
}

function runWatch(port: NonNullable<typeof parentPort>, options: StormWatchOptions): void {
  let peakRssKiB = 0;
  let rssSamples = 0;
  const sample = () => {
    const rss = residentKiB(options.pid);
    if (rss === undefined) return;
    peakRssKiB = Math.max(peakRssKiB, rss);
    rssSamples++;
  };
  sample();
  const sampler = setInterval(sample, options.intervalMs);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latenciesMs: number[] = [];
  let failedRequests = 0;
  let stopping = false;
  let inFlight: { started: number; abort: () => void } | undefined;
  const probing = (async () => {
    while (!stopping) {
      const started = performance.now();
      const request = timedGet(options.adminUrl, agent);
      inFlight = { started, abort: request.abort };
      const ok = await request.answered;
      inFlight = undefined;
      if (stopping && !ok) break;
      latenciesMs.push(performance.now() - started);
      if (!ok) failedRequests++;
      const wait = options.intervalMs - (performance.now() - started);
      if (wait > 0 && !stopping) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();

  port.on('message', () => {
    stopping = true;
    // A request the runtime has not answered yet is as slow as it has been so far, at least.
    const unanswered = inFlight;
    const giveUp = setTimeout(() => {
      if (unanswered && inFlight === unanswered) {
        latenciesMs.push(performance.now() - unanswered.started);
        unanswered.abort();
      }
    }, 2000);
    void probing.then(() => {
      clearTimeout(giveUp);
      clearInterval(sampler);
      sample();
      agent.destroy();
      const result: StormWatchResult = { peakRssKiB, rssSamples, latenciesMs, failedRequests };
      port.postMessage({ result });
      port.close();
    });
  });
  port.postMessage({ ready: true });
}

if (parentPort && (workerData as StormWatchOptions | undefined)?.adminUrl) runWatch(parentPort, workerData as StormWatchOptions);

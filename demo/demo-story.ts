/** How the demos tell their story: time-stamped lines per source, and the cloud's view of each report. */
import type { OtaHistoryEntry } from '../simulator/ota-service';
import { freePort, portIsFree } from './node-red-process';

const started = Date.now();
export function say(source: string, text: string): void {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`${seconds}s  ${source.padEnd(9)} ${text}`);
}

/** The two pages to open while a demo runs: the Node-RED editor and the stand-in's web console. */
export function pagesToOpen(editorUrl: string, consoleUrl: string): string {
  return `editor ${editorUrl}   console ${consoleUrl}`;
}

export function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

export async function editorPort(requested: number | undefined): Promise<number> {
  if (requested) return requested;
  return (await portIsFree(1880)) ? 1880 : freePort();
}

export function describeReport(entry: OtaHistoryEntry): string {
  if (entry.type === 'report_version') return `← report_version ${entry.version} (QoS ${entry.qos})`;
  if (entry.type === 'invalid') return `← invalid report: ${entry.error}`;
  switch (entry.state) {
    case 'downloading':
      return `← downloading ${entry.percent}% (QoS ${entry.qos})`;
    case 'fail':
      return `← fail ${entry.result_code}: ${entry.result_msg} (QoS ${entry.qos})`;
    default:
      return `← ${entry.state} (QoS ${entry.qos})`;
  }
}

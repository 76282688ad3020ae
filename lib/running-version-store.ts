/** The version a device runs, kept under its stateDir so it survives restarts of Node-RED. */
import * as path from 'path';
import { readJsonFile, writeFileAtomic } from './atomic-file';
import { isValidFirmwareVersion } from './firmware-version';

interface RunningVersionFile {
  version: string;
  updatedAt: string;
}

export class RunningVersionStore {
  readonly filePath: string;

  constructor(stateDir: string) {
    this.filePath = path.join(stateDir, 'running-version.json');
  }

  async read(): Promise<string | undefined> {
    const stored = await readJsonFile<RunningVersionFile>(this.filePath);
    return stored && isValidFirmwareVersion(stored.version) ? stored.version : undefined;
  }

  async write(version: string): Promise<void> {
    if (!isValidFirmwareVersion(version)) throw new Error(`cannot store invalid version "${version}"`);
    const content: RunningVersionFile = { version, updatedAt: new Date().toISOString() };
    await writeFileAtomic(this.filePath, JSON.stringify(content, null, 2) + '\n');
  }
}

/**
 * A firmware store and server (HTTP + HTTPS with the stand-in's CA) on ephemeral ports in a fresh
 * temp dir, for tests of anything that downloads firmware. Close it in after/afterEach.
 */
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CertificateAuthority } from '../../simulator/certificate-authority';
import { FirmwareServer, type FirmwareServerAddresses, type SignedUrlOptions } from '../../simulator/firmware-server';
import { FirmwareStore, type FirmwareFaults, type FirmwareRecord, type FirmwareStoreOptions } from '../../simulator/firmware-store';

export interface FirmwareFixture {
  dataDir: string;
  store: FirmwareStore;
  server: FirmwareServer;
  addresses: FirmwareServerAddresses;
  /** PEM of the CA that signed the HTTPS certificate: pass it as `ca` to trust the server. */
  caPem: string;
  /** Stores the bytes, replacing an earlier upload of the version (a new ETag even for the same bytes). */
  upload(productId: string, version: string, bytes: Buffer): Promise<FirmwareRecord>;
  setFaults(productId: string, version: string, faults: FirmwareFaults): Promise<void>;
  /** A signed URL (https unless told otherwise, valid a day unless told otherwise). */
  url(productId: string, version: string, options?: SignedUrlOptions): string;
  /** Stops the servers and removes the temp dir (unless keepDataDir). */
  close(options?: { keepDataDir?: boolean }): Promise<void>;
}

export interface FirmwareFixtureOptions {
  /** Reuse a data dir (e.g. to restart over the same files); a fresh temp dir otherwise. */
  dataDir?: string;
  store?: FirmwareStoreOptions;
  httpPort?: number;
  httpsPort?: number;
  now?: () => number;
}

export async function startFirmwareFixture(options: FirmwareFixtureOptions = {}): Promise<FirmwareFixture> {
  const dataDir = options.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-fixture-')));
  const ca = await CertificateAuthority.loadOrCreate(dataDir);
  const store = await FirmwareStore.open(dataDir, options.store);
  const server = await FirmwareServer.open({ store, dataDir, serverCertificate: ca.serverCertificate, now: options.now });
  const addresses = await server.listen({ host: '127.0.0.1', httpPort: options.httpPort ?? 0, httpsPort: options.httpsPort ?? 0 });
  return {
    dataDir,
    store,
    server,
    addresses,
    caPem: ca.caCertPem,
    upload: async (productId, version, bytes) => (await store.upload(productId, version, bytes, { replace: true })).record,
    async setFaults(productId, version, faults) {
      if (!(await store.setFaults(productId, version, faults))) throw new Error(`no firmware ${productId} ${version}`);
    },
    url: (productId, version, urlOptions) => server.signedUrl(productId, version, urlOptions),
    async close(closeOptions = {}) {
      await server.close();
      await store.close();
      if (!closeOptions.keepDataDir && !options.dataDir) await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Random firmware bytes of the given size. */
export function firmwareBytes(size: number): Buffer {
  return randomBytes(size);
}

export function md5Of(bytes: Buffer): string {
  return createHash('md5').update(bytes).digest('hex');
}

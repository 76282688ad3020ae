/**
 * Serves firmware as Tencent COS does for IoT Hub: plain HTTP and HTTPS, one path segment
 * `/<appid>_<productId>_<version>` with a pre-signed expiring query, byte ranges, ETag and If-Range,
 * never compressed, streamed from disk. Fault knobs from the store make it misbehave on purpose.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import * as https from 'https';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { setTimeout as sleep } from 'timers/promises';
import { writeFileAtomic } from '../lib/atomic-file';
import type { FirmwareRecord, FirmwareStore, ResponseFaults, ServedRequest } from './firmware-store';

/** The appid-like prefix of every firmware object name, as COS puts the owner's appid there. */
export const FIRMWARE_APP_ID = '1250000000';

export const DEFAULT_URL_TTL_SECONDS = 24 * 60 * 60;

export type FirmwareUrlScheme = 'http' | 'https';

export interface SignedUrlOptions {
  scheme?: FirmwareUrlScheme;
  /** Seconds the URL stays valid; a negative value makes an already expired URL (for tests). */
  ttlSeconds?: number;
}

export interface ServerAddress {
  host: string;
  port: number;
  url: string;
}

export interface FirmwareServerAddresses {
  http: ServerAddress;
  https: ServerAddress;
}

export type RequestHandler = (request: http.IncomingMessage, response: http.ServerResponse) => void;

export interface FirmwareServerOptions {
  store: FirmwareStore;
  /** Where the URL-signing secret is kept, so URLs stay valid across restarts. */
  dataDir: string;
  /** Certificate and key of the HTTPS side (CertificateAuthority.serverCertificate). */
  serverCertificate: { certPem: string; keyPem: string };
  now?: () => number;
}

export interface FirmwareListenOptions {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** 0 = ephemeral (the default). */
  httpPort?: number;
  httpsPort?: number;
  /** Host name put into signed URLs; default the bound host (127.0.0.1 for a wildcard bind). */
  urlHost?: string;
  /** Requests whose path starts with /api/ on the plain HTTP port go here (the console API). */
  apiHandler?: RequestHandler;
  /** Requests for `/` and under `/console/` on the plain HTTP port go here (the web console); no firmware is named so. */
  pageHandler?: RequestHandler;
}

type ByteRange = { start: number; end: number };
type RangeRequest = { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' };

/** Reads a single `bytes=` range against a file size; anything else is served whole. */
export function parseRangeHeader(header: string | undefined, size: number): RangeRequest {
  if (!header) return { kind: 'none' };
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return { kind: 'none' };
  const [, first, last] = match;
  if (first === '' && last === '') return { kind: 'none' };
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Number(last);
  return { kind: 'range', range: { start, end: Math.min(end, size - 1) } };
}

interface FirmwareName {
  productId: string;
  version: string;
}

/** `/<appid>_<productId>_<version>`: productIds have no underscore, versions may. */
function parseFirmwarePath(pathname: string): FirmwareName | undefined {
  const match = /^\/(\d+)_([A-Za-z0-9]{1,32})_([A-Za-z0-9._-]{1,32})$/.exec(pathname);
  return match ? { productId: match[2], version: match[3] } : undefined;
}

function firmwarePath(productId: string, version: string): string {
  return `/${FIRMWARE_APP_ID}_${productId}_${version}`;
}

export class FirmwareServer {
  private readonly store: FirmwareStore;
  private readonly secret: Buffer;
  private readonly serverCertificate: { certPem: string; keyPem: string };
  private readonly now: () => number;
  private httpServer?: http.Server;
  private httpsServer?: https.Server;
  private urlHost = '127.0.0.1';
  private listening?: FirmwareServerAddresses;

  private constructor(options: FirmwareServerOptions, secret: Buffer) {
    this.store = options.store;
    this.secret = secret;
    this.serverCertificate = options.serverCertificate;
    this.now = options.now ?? Date.now;
  }

  static async open(options: FirmwareServerOptions): Promise<FirmwareServer> {
    const secretPath = path.join(options.dataDir, 'firmware-url-secret');
    let secret: Buffer;
    try {
      secret = Buffer.from((await fs.readFile(secretPath, 'utf8')).trim(), 'hex');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      secret = Buffer.alloc(0);
    }
    if (secret.length < 16) {
      secret = randomBytes(32);
      await writeFileAtomic(secretPath, secret.toString('hex') + '\n');
    }
    return new FirmwareServer(options, secret);
  }

  get addresses(): FirmwareServerAddresses {
    if (!this.listening) throw new Error('the firmware server is not listening');
    return this.listening;
  }

  async listen(options: FirmwareListenOptions = {}): Promise<FirmwareServerAddresses> {
    if (this.listening) throw new Error('the firmware server is already listening');
    const host = options.host ?? '127.0.0.1';
    const wildcard = host === '0.0.0.0' || host === '::' || host === '';
    this.urlHost = options.urlHost ?? (wildcard ? '127.0.0.1' : host);
    const { apiHandler, pageHandler } = options;
    this.httpServer = http.createServer((request, response) => {
      const target = request.url ?? '';
      if (apiHandler && target.startsWith('/api/')) apiHandler(request, response);
      else if (pageHandler && (target === '/' || target.startsWith('/?') || target.startsWith('/console/'))) pageHandler(request, response);
      else this.handle(request, response, 'http');
    });
    this.httpsServer = https.createServer({ cert: this.serverCertificate.certPem, key: this.serverCertificate.keyPem }, (request, response) =>
      this.handle(request, response, 'https'),
    );
    try {
      const httpPort = await listenOn(this.httpServer, host, options.httpPort ?? 0);
      const httpsPort = await listenOn(this.httpsServer, host, options.httpsPort ?? 0);
      const hostInUrl = this.urlHost.includes(':') ? `[${this.urlHost}]` : this.urlHost;
      this.listening = {
        http: { host, port: httpPort, url: `http://${hostInUrl}:${httpPort}` },
        https: { host, port: httpsPort, url: `https://${hostInUrl}:${httpsPort}` },
      };
      return this.listening;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** A pre-signed URL of the firmware (it need not exist yet: the URL answers 404 until it does). */
  signedUrl(productId: string, version: string, options: SignedUrlOptions = {}): string {
    const scheme = options.scheme ?? 'https';
    const expiry = Math.floor(this.now() / 1000) + Math.trunc(options.ttlSeconds ?? DEFAULT_URL_TTL_SECONDS);
    const objectPath = firmwarePath(productId, version);
    const base = this.addresses[scheme].url;
    return `${base}${objectPath}?sign=${this.sign(objectPath, expiry)}&t=${expiry}`;
  }

  private sign(objectPath: string, expiry: number): string {
    return createHmac('sha256', this.secret).update(`${objectPath}\n${expiry}`).digest('hex');
  }

  private checkSignature(objectPath: string, query: URLSearchParams): 'ok' | 'expired' | 'bad' {
    const expiryText = query.get('t') ?? '';
    const signature = query.get('sign') ?? '';
    if (!/^\d{1,12}$/.test(expiryText) || !/^[0-9a-f]{64}$/.test(signature)) return 'bad';
    const expected = Buffer.from(this.sign(objectPath, Number(expiryText)), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return 'bad';
    return Number(expiryText) * 1000 < this.now() ? 'expired' : 'ok';
  }

  /** Answers one firmware request; usable from another server too. */
  handle(request: http.IncomingMessage, response: http.ServerResponse, scheme: FirmwareUrlScheme): void {
    this.serve(request, response, scheme).catch((error: unknown) => {
      if (!response.headersSent) sendText(response, 500, `internal error: ${(error as Error).message}`);
      else response.destroy();
    });
  }

  private async serve(request: http.IncomingMessage, response: http.ServerResponse, scheme: FirmwareUrlScheme): Promise<void> {
    const method = request.method ?? 'GET';
    const url = new URL(request.url ?? '/', 'http://firmware.invalid');
    const name = parseFirmwarePath(url.pathname);
    const rangeHeader = request.headers.range;
    const ifRangeHeader = request.headers['if-range'];
    const ifRange = Array.isArray(ifRangeHeader) ? ifRangeHeader.join(', ') : ifRangeHeader;
    const served: Omit<ServedRequest, 'status' | 'bytes'> = { time: new Date(this.now()).toISOString(), scheme, method };
    if (rangeHeader !== undefined) served.range = rangeHeader;
    if (ifRange !== undefined) served.ifRange = ifRange;
    const recordAnswer = (status: number, bytes = 0, fault?: ServedRequest['fault']) => {
      if (!name) return;
      const entry: ServedRequest = { ...served, status, bytes };
      if (fault) entry.fault = fault;
      this.store.recordServed(name.productId, name.version, entry);
    };

    if (method !== 'GET' && method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      sendText(response, 405, 'method not allowed');
      recordAnswer(405);
      return;
    }
    if (!name) {
      sendText(response, 404, 'no such object');
      return;
    }
    const signature = this.checkSignature(url.pathname, url.searchParams);
    if (signature !== 'ok') {
      sendText(response, 403, signature === 'expired' ? 'request has expired' : 'signature does not match');
      recordAnswer(403);
      return;
    }
    const opened = await this.openFirmware(name);
    if (!opened) {
      sendText(response, 404, 'no such object');
      recordAnswer(404);
      return;
    }
    const { record, handle } = opened;
    try {
      const size = record.file_size;
      const rangeApplies = record.faults.ignoreRange !== true && (ifRange === undefined || ifRange === record.etag);
      const wanted = rangeApplies ? parseRangeHeader(rangeHeader, size) : { kind: 'none' as const };

      response.setHeader('Accept-Ranges', 'bytes');
      response.setHeader('ETag', record.etag);
      response.setHeader('Last-Modified', new Date(record.uploadedAt).toUTCString());
      response.setHeader('Cache-Control', 'no-store');
      if (wanted.kind === 'unsatisfiable') {
        response.setHeader('Content-Range', `bytes */${size}`);
        sendText(response, 416, 'requested range not satisfiable');
        recordAnswer(416);
        return;
      }
      const range = wanted.kind === 'range' ? wanted.range : { start: 0, end: size - 1 };
      const status = wanted.kind === 'range' ? 206 : 200;
      response.statusCode = status;
      response.setHeader('Content-Type', 'application/octet-stream');
      response.setHeader('Content-Length', String(range.end - range.start + 1));
      if (status === 206) response.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      if (method === 'HEAD') {
        response.end();
        recordAnswer(status);
        return;
      }
      // One-shot faults are used up only by responses that carry a body.
      const faults: ResponseFaults = this.store.takeResponseFaults(name.productId, name.version);
      const outcome = await sendBody(handle, range, response, faults);
      recordAnswer(status, outcome.bytes, outcome.fault);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /** Opens the file and takes its record, retrying if an upload replaces it in between. */
  private async openFirmware(name: FirmwareName): Promise<{ record: FirmwareRecord; handle: fs.FileHandle } | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.store.get(name.productId, name.version)) return undefined;
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(this.store.filePath(name.productId, name.version), 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
      const record = this.store.get(name.productId, name.version);
      const stat = await handle.stat();
      if (record && stat.size === record.file_size) return { record, handle };
      await handle.close();
      if (!record) return undefined;
    }
    return undefined;
  }

  async close(): Promise<void> {
    const servers: (http.Server | https.Server | undefined)[] = [this.httpServer, this.httpsServer];
    this.httpServer = undefined;
    this.httpsServer = undefined;
    this.listening = undefined;
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server || !server.listening) {
              resolve();
              return;
            }
            server.close(() => resolve());
            // Stalled and keep-alive responses would otherwise hold the server open forever.
            server.closeAllConnections();
          }),
      ),
    );
    await this.store.flush();
  }
}

function listenOn(server: http.Server | https.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function sendText(response: http.ServerResponse, status: number, text: string): void {
  response.statusCode = status;
  response.setHeader('Content-Type', 'text/plain; charset=utf-8');
  response.setHeader('Content-Length', String(Buffer.byteLength(text)));
  response.end(text);
}

function drainedOrClosed(response: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}

interface BodyOutcome {
  bytes: number;
  fault?: 'closed' | 'stalled';
}

/**
 * Streams the range from disk, pausing for back-pressure and throttling, and applies the
 * close-after and stall-after faults at their byte counts.
 */
async function sendBody(handle: fs.FileHandle, range: ByteRange, response: http.ServerResponse, faults: ResponseFaults): Promise<BodyOutcome> {
  const rate = faults.throttleBytesPerSecond;
  const chunkSize = rate ? Math.max(1024, Math.min(64 * 1024, Math.floor(rate / 8))) : 64 * 1024;
  const aborted = new AbortController();
  const onClose = () => aborted.abort();
  response.once('close', onClose);
  const stream = handle.createReadStream({ start: range.start, end: range.end, highWaterMark: chunkSize, autoClose: false });
  const cutAt = Math.min(faults.closeAfterBytes ?? Infinity, faults.stallAfterBytes ?? Infinity);
  const cutFault: BodyOutcome['fault'] = (faults.closeAfterBytes ?? Infinity) <= (faults.stallAfterBytes ?? Infinity) ? 'closed' : 'stalled';
  const started = Date.now();
  let sent = 0;
  try {
    for await (const data of stream) {
      if (aborted.signal.aborted) return { bytes: sent };
      let chunk = data as Buffer;
      const cut = sent + chunk.length >= cutAt;
      if (cut) chunk = chunk.subarray(0, cutAt - sent);
      if (cut) {
        // Everything up to the cut must reach the client (headers included) before the socket goes.
        if (chunk.length > 0) {
          await new Promise<void>((resolve) => {
            response.write(chunk, () => resolve());
            response.once('close', resolve);
          });
          sent += chunk.length;
        } else {
          response.flushHeaders();
        }
        if (cutFault === 'closed') response.socket?.end();
        // A stalled response keeps its socket open with nothing more to send, until the client gives up.
        return { bytes: sent, fault: cutFault };
      }
      const flushed = response.write(chunk);
      sent += chunk.length;
      if (!flushed) await drainedOrClosed(response);
      if (rate) {
        const due = started + (sent / rate) * 1000 - Date.now();
        if (due > 0) {
          try {
            await sleep(due, undefined, { signal: aborted.signal });
          } catch {
            return { bytes: sent };
          }
        }
      }
    }
    if (!aborted.signal.aborted) response.end();
    return { bytes: sent };
  } finally {
    response.off('close', onClose);
    stream.destroy();
  }
}

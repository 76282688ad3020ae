/**
 * One GET of a firmware over HTTP/1.1, read by hand rather than through Node's http client: the
 * socket reads into one buffer of the connection's, whose body bytes are copied straight into the
 * firmware file's blocks, with no buffer allocated per read and no stream in between, which more
 * than halves what receiving a body costs (npm run bench). Only what
 * a firmware download needs: one request per connection (Connection: close), a body delimited by
 * Content-Length, chunked framing or the end of the connection, and no content decoding.
 */
import * as net from 'net';
import * as tls from 'tls';
import type { ResponseHeaders } from './http-range-response';

/** Where the body goes: the file being downloaded. */
export interface BodySink {
  /** Copies in as many of `bytes` as there is room for now, as the next body bytes; returns how many. Throws to end the body. */
  takeAvailable(bytes: Buffer): number;
  /** Resolves once there is room again (or a failure waits to be thrown by takeAvailable). */
  roomFreed(): Promise<void>;
}

export interface FirmwareRequestOptions {
  headers: Record<string, string>;
  /** The trust of an https request (default: Node's own). */
  secureContext?: tls.SecureContext;
  /** Destroys the connection; the request or body rejects with an AbortError. */
  signal: AbortSignal;
}

export interface FirmwareResponse {
  status: number;
  headers: ResponseHeaders;
  /**
   * Reads the body into `sink`, calling `onData` whenever bytes arrive; resolves when the body is
   * complete or the connection ended (the caller compares what it has with what it expected).
   */
  readBody(sink: BodySink, onData: () => void): Promise<void>;
  /** Closes the connection, for an answer whose body is of no use. */
  close(): void;
}

/** Response heads larger than this are refused (Node's own client allows 16 KiB). */
const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (with its extensions) longer than this is refused. */
const MAX_CHUNK_LINE_BYTES = 4096;
/** What one read of the socket may bring (the size Node reads in anyway). */
const READ_BUFFER_BYTES = 64 * 1024;
const USER_AGENT = 'node-red-contrib-tencent-iot-ota';

class ProtocolError extends Error {
  readonly code = 'HPE_INVALID_RESPONSE';
}

function abortError(): Error {
  return Object.assign(new Error('the request was aborted'), { name: 'AbortError' });
}

class Headers implements ResponseHeaders {
  private readonly values = new Map<string, string>();

  add(name: string, value: string): void {
    const key = name.toLowerCase();
    const existing = this.values.get(key);
    this.values.set(key, existing === undefined ? value : `${existing}, ${value}`);
  }

  get(name: string): string | null {
    return this.values.get(name.toLowerCase()) ?? null;
  }
}

interface Head {
  status: number;
  headers: Headers;
}

/** Parses a response head (the bytes before the empty line, without it). */
function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]);
  if (!statusLine) throw new ProtocolError('invalid HTTP status line');
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const header = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!header) throw new ProtocolError('invalid HTTP header line');
    headers.add(header[1], header[2]);
  }
  return { status: Number(statusLine[1]), headers };
}

/** How the end of the body is known. */
type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' };

function framingOf(headers: Headers): Framing {
  const transferEncoding = headers.get('transfer-encoding');
  if (transferEncoding !== null) {
    const codings = transferEncoding.split(',').map((coding) => coding.trim().toLowerCase());
    if (codings[codings.length - 1] === 'chunked') return { kind: 'chunked' };
    return { kind: 'close' };
  }
  const length = headers.get('content-length');
  if (length === null) return { kind: 'close' };
  const values = new Set(length.split(',').map((value) => value.trim()));
  const [only] = values;
  if (values.size !== 1 || !/^\d+$/.test(only)) throw new ProtocolError('invalid Content-Length');
  return { kind: 'length', remaining: Number(only) };
}

const CR = 13;
const LF = 10;

/**
 * Removes the chunked framing of a body in place, across reads that split it anywhere: each
 * call keeps the data bytes of the region, moved to its start, and says how many there are.
 */
class ChunkedDecoder {
  private state: 'size' | 'extension' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'trailer-lf' | 'done' = 'size';
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private remaining = 0;
  /** Whether the trailer line being read is still empty (an empty one ends the body). */
  private emptyLine = true;

  get done(): boolean {
    return this.state === 'done';
  }

  /** Decodes bytes[0, length) in place; returns how many data bytes it left at the start. */
  decode(bytes: Buffer, length: number): number {
    let read = 0;
    let kept = 0;
    while (read < length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, length - read);
        if (kept !== read) bytes.copyWithin(kept, read, read + take);
        kept += take;
        read += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-cr';
        continue;
      }
      const byte = bytes[read++];
      switch (this.state) {
        case 'size': {
          const digit = hexValue(byte);
          if (digit >= 0) {
            this.size = this.size * 16 + digit;
            this.digits += 1;
            if (this.digits > 13) throw new ProtocolError('invalid chunk size');
          } else if (this.digits > 0 && (byte === 0x3b || byte === 0x20 || byte === 0x09)) {
            this.state = 'extension';
          } else if (this.digits > 0 && byte === CR) {
            this.state = 'size-lf';
          } else {
            throw new ProtocolError('invalid chunk size');
          }
          break;
        }
        case 'extension':
          if (++this.lineBytes > MAX_CHUNK_LINE_BYTES) throw new ProtocolError('chunk extension too long');
          if (byte === CR) this.state = 'size-lf';
          break;
        case 'size-lf':
          if (byte !== LF) throw new ProtocolError('invalid chunk size line');
          if (this.size === 0) {
            this.state = 'trailer';
            this.emptyLine = true;
          } else {
            this.remaining = this.size;
            this.state = 'data';
          }
          this.size = 0;
          this.digits = 0;
          this.lineBytes = 0;
          break;
        case 'data-cr':
          if (byte !== CR) throw new ProtocolError('chunk data longer than its size');
          this.state = 'data-lf';
          break;
        case 'data-lf':
          if (byte !== LF) throw new ProtocolError('chunk data longer than its size');
          this.state = 'size';
          break;
        case 'trailer':
          if (byte === CR) this.state = 'trailer-lf';
          else this.emptyLine = false;
          if (++this.lineBytes > MAX_HEAD_BYTES) throw new ProtocolError('chunked trailer too long');
          break;
        case 'trailer-lf':
          if (byte !== LF) throw new ProtocolError('invalid chunked trailer');
          if (this.emptyLine) this.state = 'done';
          else {
            this.state = 'trailer';
            this.emptyLine = true;
          }
          break;
      }
    }
    return kept;
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  return -1;
}

function requestText(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, `User-Agent: ${USER_AGENT}`, 'Accept: */*', 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Sends the GET and resolves with the response head once it has arrived. */
export function requestFirmware(url: URL, options: FirmwareRequestOptions): Promise<FirmwareResponse> {
  return new FirmwareConnection(url, options).response;
}

class FirmwareConnection implements FirmwareResponse {
  status = 0;
  headers = new Headers();
  readonly response: Promise<FirmwareResponse>;
  private readonly socket: net.Socket;
  /** Every read lands here; its body bytes are copied into the sink before the next read. */
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private headBytes: Buffer[] = [];
  private headLength = 0;
  private framing: Framing = { kind: 'close' };
  private chunked: ChunkedDecoder | undefined;
  /** Body bytes the sink had no room for yet (copies, in order): every later byte waits behind them. */
  private readonly pending: Buffer[] = [];
  private waitingForRoom = false;
  private sink: BodySink | undefined;
  private onData: () => void = () => undefined;
  private bodyComplete = false;
  private ended = false;
  private failure: unknown;
  private settleHead: { resolve: (response: FirmwareResponse) => void; reject: (error: unknown) => void } | undefined;
  private settleBody: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor(
    url: URL,
    private readonly options: FirmwareRequestOptions,
  ) {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const onread: net.OnReadOpts = { buffer: this.readBuffer, callback: (length) => this.received(length) };
    const sendRequest = () => this.socket.write(requestText(url, options.headers));
    if (url.protocol === 'https:') {
      const tlsOptions: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        host,
        port: Number(url.port || 443),
        servername: net.isIP(host) === 0 ? host : undefined,
        secureContext: options.secureContext,
        onread,
      };
      this.socket = tls.connect(tlsOptions, sendRequest);
    } else {
      this.socket = net.connect({ host, port: Number(url.port || 80), onread }, sendRequest);
    }
    this.response = new Promise<FirmwareResponse>((resolve, reject) => {
      this.settleHead = { resolve, reject };
    });
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.onEnd());
    if (options.signal.aborted) this.fail(abortError());
    else options.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  readBody(sink: BodySink, onData: () => void): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.sink = sink;
    this.onData = onData;
    const body = new Promise<void>((resolve, reject) => {
      this.settleBody = { resolve, reject };
    });
    if (this.pending.length > 0) void this.waitForRoom();
    else this.socket.resume();
    this.settleIfDone();
    return body;
  }

  close(): void {
    this.options.signal.removeEventListener('abort', this.onAbort);
    this.socket.destroy();
  }

  private readonly onAbort = () => this.fail(abortError());

  /** `length` bytes landed at the start of the read buffer; false pauses the socket. */
  private received(length: number): boolean {
    if (this.failure !== undefined || this.bodyComplete) return false;
    try {
      const bytes = this.readBuffer.subarray(0, length);
      if (this.settleHead) {
        this.receiveHead(bytes);
      } else {
        this.onData();
        this.take(this.decode(bytes));
        this.settleIfDone();
      }
    } catch (error) {
      this.fail(error);
    }
    if (this.failure !== undefined) return false;
    // Reading goes on while the head is incomplete, and then only while the sink takes every byte.
    return this.settleHead !== undefined || (this.sink !== undefined && this.pending.length === 0 && !this.bodyComplete);
  }

  /** Hands body bytes to the sink; what it has no room for waits, copied, and the socket with it. */
  private take(body: Buffer): void {
    if (body.length === 0) return;
    if (!this.sink || this.pending.length > 0) {
      this.pending.push(Buffer.from(body));
      return;
    }
    const taken = this.sink.takeAvailable(body);
    if (taken < body.length) {
      this.pending.push(Buffer.from(body.subarray(taken)));
      void this.waitForRoom();
    }
  }

  /** Gives the waiting bytes to the sink as room frees up, then lets the socket read again. */
  private async waitForRoom(): Promise<void> {
    const sink = this.sink;
    if (this.waitingForRoom || !sink) return;
    this.waitingForRoom = true;
    try {
      while (this.pending.length > 0 && this.failure === undefined) {
        await sink.roomFreed();
        // The socket was quiet meanwhile because of us, not of the server.
        this.onData();
        while (this.pending.length > 0) {
          const first = this.pending[0];
          const taken = sink.takeAvailable(first);
          if (taken < first.length) {
            this.pending[0] = first.subarray(taken);
            break;
          }
          this.pending.shift();
        }
      }
    } catch (error) {
      this.fail(error);
    }
    this.waitingForRoom = false;
    this.settleIfDone();
    if (this.failure === undefined && !this.bodyComplete) this.socket.resume();
  }

  private receiveHead(bytes: Buffer): void {
    this.headBytes.push(Buffer.from(bytes));
    this.headLength += bytes.length;
    for (;;) {
      const all = this.headBytes.length === 1 ? this.headBytes[0] : Buffer.concat(this.headBytes);
      this.headBytes = [all];
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.headLength > MAX_HEAD_BYTES) throw new ProtocolError('response head too large');
        return;
      }
      const head = parseHead(all.toString('latin1', 0, end));
      const rest = all.subarray(end + 4);
      this.headBytes = [rest];
      this.headLength = rest.length;
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      if (head.status >= 100 && head.status < 200) {
        if (head.status === 101) throw new ProtocolError('unexpected protocol switch');
        continue;
      }
      this.status = head.status;
      this.headers = head.headers;
      this.framing = framingOf(head.headers);
      if (this.framing.kind === 'chunked') this.chunked = new ChunkedDecoder();
      this.headBytes = [];
      this.headLength = 0;
      // The socket pauses (no sink yet) until the caller asks for the body or closes.
      this.take(this.decode(rest));
      const settle = this.settleHead;
      this.settleHead = undefined;
      settle?.resolve(this);
      return;
    }
  }

  /** The body bytes of `bytes` (decoded in place), up to the end of the body. */
  private decode(bytes: Buffer): Buffer {
    if (this.chunked) {
      const kept = this.chunked.decode(bytes, bytes.length);
      if (this.chunked.done) this.bodyComplete = true;
      return bytes.subarray(0, kept);
    }
    if (this.framing.kind === 'length') {
      const take = Math.min(bytes.length, this.framing.remaining);
      this.framing.remaining -= take;
      if (this.framing.remaining === 0) this.bodyComplete = true;
      return bytes.subarray(0, take);
    }
    return bytes;
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.settleHead) {
      this.fail(Object.assign(new Error('the connection closed before the response headers arrived'), { code: 'ECONNRESET' }));
      return;
    }
    this.settleIfDone();
  }

  /** Resolves the body once it is complete or the connection ended, and every byte that arrived is in the sink. */
  private settleIfDone(): void {
    if (!this.settleBody || this.failure !== undefined) return;
    if (!(this.bodyComplete || this.ended) || this.waitingForRoom || this.pending.length > 0) return;
    const settle = this.settleBody;
    this.settleBody = undefined;
    this.close();
    settle.resolve();
  }

  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.close();
    this.settleHead?.reject(error);
    this.settleHead = undefined;
    this.settleBody?.reject(error);
    this.settleBody = undefined;
  }
}

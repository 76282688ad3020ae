/** A typed client of the stand-in's console API (console-api.ts), for the CLI, tests and demos. */
import { createReadStream, promises as fs } from 'fs';
import * as http from 'http';
import { Readable } from 'stream';
import type { DeviceAuthMode, DeviceType } from './device-registry';
import type { DeletedDevice, DeviceSummary, DeviceView, StandInEndpoint, UnboundSubDevice, UploadedFirmware } from './console-api';
import type { SubDeviceBinding } from './gateway-service';
import type { DeviceIdentity } from '../lib/ota-topics';
import type { FirmwareSignature, SignatureAlgorithm } from '../lib/firmware-signature';
import type { FirmwareFaults, FirmwareRecord } from './firmware-store';
import type { UpdateRequest, UpdateTask } from './ota-service';

/** An error answer of the console API, with its HTTP status and message. */
export class ConsoleApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ConsoleApiError';
  }
}

export interface WaitOptions {
  /** Default 20 s. */
  timeoutMs?: number;
  /** Default 50 ms. */
  intervalMs?: number;
}

/** How to upload a firmware. */
export interface FirmwareUploadRequest {
  /** The size of a stream, when it is known: sent as Content-Length. */
  contentLength?: number;
  /** Replace an existing upload of the version with other content (without it, the console answers 409). */
  replace?: boolean;
  /** user_defined text for the update commands; a signature is added into it. */
  userDefined?: string;
  /** Have the console sign the firmware's manifest with this private key (PEM). */
  signing?: { privateKeyPem: string; keyId: string; alg?: SignatureAlgorithm };
  /** A signature made elsewhere for the console to put into user_defined. */
  signature?: FirmwareSignature;
}

interface RawAnswer {
  status: number;
  contentType: string;
  body: Buffer;
}

function bindingsPath(gateway: DeviceIdentity): string {
  return `/api/gateways/${encodeURIComponent(gateway.productId)}/${encodeURIComponent(gateway.deviceName)}/bindings`;
}

export class ConsoleClient {
  /** `http://host:port`, without /api. */
  readonly baseUrl: string;

  /** Accepts the stand-in's HTTP address with or without a trailing /api. */
  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '').replace(/\/api$/, '');
  }

  private request(
    method: string,
    pathAndQuery: string,
    body?: Buffer | Readable,
    contentLength?: number,
    contentType = 'application/json',
    extraHeaders: http.OutgoingHttpHeaders = {},
  ): Promise<RawAnswer> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { ...extraHeaders };
      if (body !== undefined) {
        headers['Content-Type'] = contentType;
        if (Buffer.isBuffer(body)) headers['Content-Length'] = body.length;
        else if (contentLength !== undefined) headers['Content-Length'] = contentLength;
      }
      let answered = false;
      const request = http.request(`${this.baseUrl}${pathAndQuery}`, { method, headers, agent: false }, (response) => {
        answered = true;
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, contentType: String(response.headers['content-type'] ?? ''), body: Buffer.concat(chunks) }));
        response.on('error', reject);
      });
      // A console that refuses an upload answers before the body is sent and closes: its answer counts, not the broken pipe.
      request.on('error', (error) => {
        if (!answered) reject(error);
      });
      if (body === undefined) request.end();
      else if (Buffer.isBuffer(body)) request.end(body);
      else {
        body.on('error', (error) => request.destroy(error));
        request.on('close', () => body.destroy());
        body.pipe(request);
      }
    });
  }

  private async json<T>(method: string, pathAndQuery: string, body?: unknown): Promise<T> {
    const answer = await this.request(method, pathAndQuery, body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    return this.decode<T>(answer);
  }

  private decode<T>(answer: RawAnswer): T {
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new ConsoleApiError(answer.status, `the console answered ${answer.status} with a body that is not JSON`);
    }
    if (answer.status >= 400) {
      const message = typeof parsed === 'object' && parsed !== null && 'error' in parsed ? String((parsed as { error: unknown }).error) : `HTTP ${answer.status}`;
      throw new ConsoleApiError(answer.status, message);
    }
    return parsed as T;
  }

  /** Creates a device (or a gateway) and returns its device_info.json. */
  createDevice(productId: string, deviceName: string, authMode: DeviceAuthMode = 'key', deviceType: DeviceType = 'device'): Promise<Record<string, unknown>> {
    return this.json('POST', '/api/devices', deviceType === 'device' ? { productId, deviceName, authMode } : { productId, deviceName, authMode, deviceType });
  }

  /** Binds an ordinary device to a gateway as its sub-device; a connected gateway is sent `change` status 1. */
  bindSubDevice(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<SubDeviceBinding> {
    return this.json('POST', bindingsPath(gateway), { productId: subDevice.productId, deviceName: subDevice.deviceName });
  }

  /** Unbinds a sub-device (it goes offline); a connected gateway is sent `change` status 0. */
  unbindSubDevice(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<UnboundSubDevice> {
    return this.json('DELETE', `${bindingsPath(gateway)}/${encodeURIComponent(subDevice.productId)}/${encodeURIComponent(subDevice.deviceName)}`);
  }

  /** Unbinds every sub-device of the gateway; a connected gateway is sent `unbind_all`. */
  async unbindAllSubDevices(gateway: DeviceIdentity): Promise<DeviceIdentity[]> {
    return (await this.json<{ unbound: DeviceIdentity[] }>('DELETE', bindingsPath(gateway))).unbound;
  }

  /** The gateway's sub-devices, in the order they were bound, with their online state. */
  listSubDevices(gateway: DeviceIdentity): Promise<SubDeviceBinding[]> {
    return this.json('GET', bindingsPath(gateway));
  }

  listDevices(productId?: string): Promise<DeviceSummary[]> {
    return this.json('GET', `/api/devices${productId ? `?productId=${encodeURIComponent(productId)}` : ''}`);
  }

  getDevice(productId: string, deviceName: string): Promise<DeviceView> {
    return this.json('GET', `/api/devices/${encodeURIComponent(productId)}/${encodeURIComponent(deviceName)}`);
  }

  /**
   * Deletes a device as the cloud does: its connection ends (a sub-device goes offline on its gateway's,
   * the gateway told `change` status 0; a gateway's sub-devices are unbound) and it can no longer connect.
   */
  deleteDevice(productId: string, deviceName: string): Promise<DeletedDevice> {
    return this.json('DELETE', `/api/devices/${encodeURIComponent(productId)}/${encodeURIComponent(deviceName)}`);
  }

  /** Where a device connects to this stand-in (MQTT over TLS: host, port) and the PEM of the CA to trust. */
  deviceEndpoint(): Promise<StandInEndpoint> {
    return this.json('GET', '/api/device-endpoint');
  }

  /**
   * Uploads firmware bytes or a stream. An existing version with other content is refused (409) unless
   * `replace` is given; the same content again answers the stored record (`outcome` "unchanged").
   */
  async uploadFirmware(productId: string, version: string, content: Buffer | Readable, options: FirmwareUploadRequest = {}): Promise<UploadedFirmware> {
    const query = new URLSearchParams({ productId, version });
    if (options.replace) query.set('replace', 'true');
    if (options.userDefined !== undefined) query.set('userDefined', options.userDefined);
    const headers: http.OutgoingHttpHeaders = {};
    const signer = options.signing ?? options.signature;
    if (signer) {
      query.set('keyId', signer.keyId);
      if (signer.alg) query.set('alg', signer.alg);
    }
    if (options.signing) headers['X-Signing-Key'] = Buffer.from(options.signing.privateKeyPem, 'utf8').toString('base64');
    else if (options.signature) query.set('signature', options.signature.sig);
    const answer = await this.request('POST', `/api/firmware?${query.toString()}`, content, options.contentLength, 'application/octet-stream', headers);
    return this.decode<UploadedFirmware>(answer);
  }

  /** Uploads a file from disk, streamed. */
  async uploadFirmwareFile(productId: string, version: string, filePath: string, options: Omit<FirmwareUploadRequest, 'contentLength'> = {}): Promise<UploadedFirmware> {
    const { size } = await fs.stat(filePath);
    return this.uploadFirmware(productId, version, createReadStream(filePath), { ...options, contentLength: size });
  }

  listFirmware(productId?: string): Promise<FirmwareRecord[]> {
    return this.json('GET', `/api/firmware${productId ? `?productId=${encodeURIComponent(productId)}` : ''}`);
  }

  getFirmware(productId: string, version: string): Promise<FirmwareRecord> {
    return this.json('GET', `/api/firmware/${encodeURIComponent(productId)}/${encodeURIComponent(version)}`);
  }

  async deleteFirmware(productId: string, version: string): Promise<void> {
    await this.json('DELETE', `/api/firmware/${encodeURIComponent(productId)}/${encodeURIComponent(version)}`);
  }

  /** Replaces the firmware's fault knobs; `{}` clears them. */
  setFirmwareFaults(productId: string, version: string, faults: FirmwareFaults): Promise<FirmwareRecord> {
    return this.json('PUT', `/api/firmware/${encodeURIComponent(productId)}/${encodeURIComponent(version)}/faults`, faults);
  }

  startUpdate(request: UpdateRequest): Promise<UpdateTask> {
    return this.json('POST', '/api/updates', request);
  }

  getTask(taskId: string): Promise<UpdateTask> {
    return this.json('GET', `/api/tasks/${encodeURIComponent(taskId)}`);
  }

  listTasks(productId?: string): Promise<UpdateTask[]> {
    return this.json('GET', `/api/tasks${productId ? `?productId=${encodeURIComponent(productId)}` : ''}`);
  }

  /** The PEM of the stand-in's CA (it signs the broker's and the firmware server's certificates). */
  async caPem(): Promise<string> {
    const answer = await this.request('GET', '/api/ca');
    if (answer.status !== 200) throw new ConsoleApiError(answer.status, `the console answered ${answer.status} for the CA`);
    return answer.body.toString('utf8');
  }

  /** Polls the device until `condition` holds for its view, and returns that view. */
  async waitForDevice(productId: string, deviceName: string, condition: (device: DeviceView) => boolean, options: WaitOptions = {}): Promise<DeviceView> {
    const deadline = Date.now() + (options.timeoutMs ?? 20000);
    for (;;) {
      const device = await this.getDevice(productId, deviceName);
      if (condition(device)) return device;
      if (Date.now() > deadline) {
        throw new Error(
          `device ${productId}/${deviceName} did not reach the expected state; last seen: ${JSON.stringify({ online: device.online, version: device.version, ota: { ...device.ota, history: device.ota.history.length } })}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
    }
  }
}

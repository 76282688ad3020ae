/**
 * The stand-in's console as a loopback HTTP JSON API under /api/: devices, gateway bindings, firmware
 * (streamed upload, fault knobs), update tasks, the CA, where devices connect, and the push channel of changes (/api/events).
 * Errors are `{"error": "..."}` with 400, 403 (a change asked by a page of another origin), 404, 405 or 409.
 */
import type * as http from 'http';
import { SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from '../lib/firmware-signature';
import type { DeviceIdentity } from '../lib/ota-topics';
import type { CertificateAuthority } from './certificate-authority';
import type { ConsoleEventStream } from './console-events';
import { crossOriginChangeRefusal } from './console-origin';
import { DeviceExistsError, InvalidDeviceError, type DeviceAuthMode, type DeviceRegistry, type DeviceType, type RegisteredDevice } from './device-registry';
import { GatewayRequestError, type ForgottenBindings, type GatewayHistoryEntry, type GatewayService, type SubDeviceBinding } from './gateway-service';
import {
  FirmwareVersionExistsError,
  InvalidFirmwareError,
  type FirmwareRecord,
  type FirmwareStore,
  type FirmwareUploadOptions,
  type FirmwareUploadOutcome,
} from './firmware-store';
import type { SimulatedMqttBroker } from './mqtt-broker';
import { parseUpdateRequest, UpdateRequestError, type CloudOtaService, type DeviceOtaStatus, type OtaHistoryEntry, type DeviceUpdateState } from './ota-service';

/** A device as GET /api/devices lists it. */
export interface DeviceSummary {
  productId: string;
  deviceName: string;
  authMode: DeviceAuthMode;
  deviceType: DeviceType;
  createdAt: string;
  /** Connected; for a sub-device also online through its gateway, as the gateway reported it. */
  online: boolean;
  connectCount: number;
  /** The version the device last reported; null before its first report_version. */
  version: string | null;
}

/** A device as GET /api/devices/<productId>/<deviceName> shows it. */
export interface DeviceView extends DeviceSummary {
  /** A bound sub-device: its gateway. */
  gateway?: DeviceIdentity;
  /** A gateway: its bound sub-devices. */
  subDevices?: SubDeviceBinding[];
  /** A gateway: its operations (PROTOCOL.md §6) as the cloud saw them, oldest first. */
  gatewayHistory?: GatewayHistoryEntry[];
  ota: {
    taskId: string | null;
    targetVersion: string | null;
    state: DeviceUpdateState | null;
    percent: number | null;
    result_code: number | null;
    result_msg: string | null;
    history: OtaHistoryEntry[];
  };
}

/** The answer of POST /api/firmware: 201 created, 200 replaced (`?replace=true`) or unchanged (the same content again). */
export interface UploadedFirmware {
  productId: string;
  version: string;
  md5sum: string;
  file_size: number;
  sha256?: string;
  user_defined?: string;
  outcome: FirmwareUploadOutcome;
}

export interface ConsoleApiOptions {
  registry: DeviceRegistry;
  certificateAuthority: CertificateAuthority;
  broker: SimulatedMqttBroker;
  firmwareStore: FirmwareStore;
  otaService: CloudOtaService;
  gatewayService: GatewayService;
  events: ConsoleEventStream;
}

/** The answer of DELETE /api/devices/<pid>/<dn>. */
export interface DeletedDevice extends DeviceIdentity, ForgottenBindings {
  deleted: true;
  /** It was online (on its own connection or through its gateway) and is no longer. */
  disconnected: boolean;
}

/** GET /api/device-endpoint: where a device connects to this stand-in (MQTT over TLS), and the CA to trust. */
export interface StandInEndpoint {
  host: string;
  port: number;
  transport: 'mqtts';
  caPem: string;
}

/** The answer of DELETE /api/gateways/<pid>/<dn>/bindings/<subPid>/<subDn>. */
export interface UnboundSubDevice extends DeviceIdentity {
  unbound: true;
}

const MAX_JSON_BODY_BYTES = 1024 * 1024;
/** Bind addresses that stand for every address of the machine. */
const WILDCARD_HOSTS = ['0.0.0.0', '::', ''];

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  response.statusCode = status;
  response.setHeader('Content-Type', 'application/json; charset=utf-8');
  response.setHeader('Content-Length', String(Buffer.byteLength(text)));
  response.setHeader('Cache-Control', 'no-store');
  response.end(text);
}

async function readJsonBody(request: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_JSON_BODY_BYTES) throw new ApiError(400, `the request body is larger than ${MAX_JSON_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'the request body is not valid JSON');
  }
}

function requireObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError(400, `"${segment}" is not a valid path segment`);
  }
}

/** The host name of a Host header, without the port and the brackets of an IPv6 address. */
function hostnameOf(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  try {
    return new URL(`http://${hostHeader}`).hostname.replace(/^\[(.*)\]$/, '$1') || undefined;
  } catch {
    return undefined;
  }
}

/** Maps the errors of the parts behind the API to HTTP answers. */
function statusOf(error: unknown): number {
  if (error instanceof ApiError) return error.status;
  if (error instanceof UpdateRequestError) return error.status;
  if (error instanceof GatewayRequestError) return error.status;
  if (error instanceof DeviceExistsError || error instanceof FirmwareVersionExistsError) return 409;
  if (error instanceof InvalidDeviceError || error instanceof InvalidFirmwareError) return 400;
  return 500;
}

export class ConsoleApi {
  private readonly registry: DeviceRegistry;
  private readonly certificateAuthority: CertificateAuthority;
  private readonly broker: SimulatedMqttBroker;
  private readonly firmwareStore: FirmwareStore;
  private readonly otaService: CloudOtaService;
  private readonly gatewayService: GatewayService;
  private readonly events: ConsoleEventStream;

  constructor(options: ConsoleApiOptions) {
    this.registry = options.registry;
    this.certificateAuthority = options.certificateAuthority;
    this.broker = options.broker;
    this.firmwareStore = options.firmwareStore;
    this.otaService = options.otaService;
    this.gatewayService = options.gatewayService;
    this.events = options.events;
  }

  /** Answers one request under /api/. */
  handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.route(request, response).catch((error: unknown) => {
      const status = statusOf(error);
      const message = error instanceof Error ? error.message : String(error);
      if (response.headersSent) {
        response.destroy();
        return;
      }
      // An upload refused halfway leaves body bytes unread; the connection cannot be reused.
      if (!request.complete) response.setHeader('Connection', 'close');
      sendJson(response, status, { error: status === 500 ? `internal error: ${message}` : message });
    });
  }

  private async route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://console.invalid');
    const segments = url.pathname
      .split('/')
      .filter((segment) => segment !== '')
      .map(decodeSegment);
    const method = request.method ?? 'GET';
    const [api, resource, ...rest] = segments;
    if (api !== 'api') throw new ApiError(404, `no route ${url.pathname}`);
    const refusal = crossOriginChangeRefusal(request);
    if (refusal) throw new ApiError(403, refusal);
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) {
        response.setHeader('Allow', methods.join(', '));
        throw new ApiError(405, `${method} is not allowed on ${url.pathname}`);
      }
    };

    switch (resource) {
      case 'devices':
        if (rest.length === 0) {
          allow('GET', 'POST');
          if (method === 'POST') return this.createDevice(request, response);
          return sendJson(response, 200, this.listDevices(url.searchParams.get('productId') ?? undefined));
        }
        if (rest.length === 2) {
          allow('GET', 'DELETE');
          if (method === 'DELETE') return sendJson(response, 200, await this.deleteDevice(rest[0], rest[1]));
          return sendJson(response, 200, this.deviceView(rest[0], rest[1]));
        }
        break;
      case 'device-endpoint':
        if (rest.length === 0) {
          allow('GET');
          return sendJson(response, 200, this.deviceEndpoint(request));
        }
        break;
      case 'gateways':
        if (rest.length >= 3 && rest[2] === 'bindings') {
          const gateway = { productId: rest[0], deviceName: rest[1] };
          if (rest.length === 3) {
            allow('GET', 'POST', 'DELETE');
            if (method === 'POST') return this.bind(request, response, gateway);
            if (method === 'DELETE') return sendJson(response, 200, { unbound: await this.gatewayService.unbindAllFromConsole(gateway) });
            return sendJson(response, 200, this.gatewayService.listBindings(gateway));
          }
          if (rest.length === 5) {
            allow('DELETE');
            const subDevice = { productId: rest[3], deviceName: rest[4] };
            await this.gatewayService.unbindFromConsole(gateway, subDevice);
            const unbound: UnboundSubDevice = { ...subDevice, unbound: true };
            return sendJson(response, 200, unbound);
          }
        }
        break;
      case 'firmware':
        if (rest.length === 0) {
          allow('GET', 'POST');
          if (method === 'POST') return this.uploadFirmware(request, response, url.searchParams);
          return sendJson(response, 200, this.firmwareStore.list(url.searchParams.get('productId') ?? undefined));
        }
        if (rest.length === 2) {
          allow('GET', 'DELETE');
          if (method === 'DELETE') {
            if (!(await this.firmwareStore.remove(rest[0], rest[1]))) throw this.noFirmware(rest[0], rest[1]);
            return sendJson(response, 200, { productId: rest[0], version: rest[1], deleted: true });
          }
          return sendJson(response, 200, this.firmwareRecord(rest[0], rest[1]));
        }
        if (rest.length === 3 && rest[2] === 'faults') {
          allow('PUT');
          const updated = await this.firmwareStore.setFaults(rest[0], rest[1], requireObject(await readJsonBody(request)));
          if (!updated) throw this.noFirmware(rest[0], rest[1]);
          return sendJson(response, 200, updated);
        }
        break;
      case 'updates':
        if (rest.length === 0) {
          allow('POST');
          const task = await this.otaService.startUpdate(parseUpdateRequest(await readJsonBody(request)));
          return sendJson(response, 201, task);
        }
        break;
      case 'tasks':
        if (rest.length === 0) {
          allow('GET');
          return sendJson(response, 200, this.otaService.listTasks(url.searchParams.get('productId') ?? undefined));
        }
        if (rest.length === 1) {
          allow('GET');
          const task = this.otaService.getTask(rest[0]);
          if (!task) throw new ApiError(404, `no task ${rest[0]}`);
          return sendJson(response, 200, task);
        }
        break;
      case 'events':
        if (rest.length === 0) {
          allow('GET');
          return this.events.open(request, response);
        }
        break;
      case 'ca':
        if (rest.length === 0) {
          allow('GET');
          response.statusCode = 200;
          response.setHeader('Content-Type', 'application/x-pem-file');
          response.end(this.certificateAuthority.caCertPem);
          return;
        }
        break;
    }
    throw new ApiError(404, `no route ${url.pathname}`);
  }

  private async createDevice(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const body = requireObject(await readJsonBody(request));
    if (typeof body.productId !== 'string') throw new ApiError(400, 'productId is missing');
    if (typeof body.deviceName !== 'string') throw new ApiError(400, 'deviceName is missing');
    const authMode = body.authMode ?? 'key';
    if (authMode !== 'key' && authMode !== 'cert') throw new ApiError(400, 'authMode must be "key" or "cert"');
    const deviceType = body.deviceType ?? 'device';
    if (deviceType !== 'device' && deviceType !== 'gateway') throw new ApiError(400, 'deviceType must be "device" or "gateway"');
    const created = await this.registry.create(body.productId, body.deviceName, authMode, this.certificateAuthority, deviceType);
    sendJson(response, 201, created.deviceInfo);
  }

  private async bind(request: http.IncomingMessage, response: http.ServerResponse, gateway: DeviceIdentity): Promise<void> {
    const body = requireObject(await readJsonBody(request));
    if (typeof body.productId !== 'string' || body.productId === '') throw new ApiError(400, 'productId is missing');
    if (typeof body.deviceName !== 'string' || body.deviceName === '') throw new ApiError(400, 'deviceName is missing');
    const binding = await this.gatewayService.bindFromConsole(gateway, { productId: body.productId, deviceName: body.deviceName });
    sendJson(response, 201, binding);
  }

  /**
   * Deletes a device as the cloud does: it can no longer connect, its connection (or its gateway's
   * proxying of it) ends at once, its bindings go and its OTA record with them.
   */
  private async deleteDevice(productId: string, deviceName: string): Promise<DeletedDevice> {
    const device = this.registry.find(productId, deviceName);
    if (!device) throw new ApiError(404, `device ${productId}/${deviceName} does not exist`);
    const wasOnline = this.broker.isOnline(device);
    await this.registry.remove(productId, deviceName);
    await this.broker.disconnect(device);
    const unbound = await this.gatewayService.forgetDevice(device);
    await this.otaService.forgetDevice(device);
    return { productId, deviceName, deleted: true, disconnected: wasOnline, ...unbound };
  }

  private deviceEndpoint(request: http.IncomingMessage): StandInEndpoint {
    const mqtts = this.broker.addresses?.mqtts;
    if (!mqtts) throw new Error('the broker is not listening');
    let host = mqtts.host;
    if (WILDCARD_HOSTS.includes(host)) {
      // Bound to every address: the one this request reached the console at is one the caller can reach.
      host = hostnameOf(request.headers.host) ?? '127.0.0.1';
    }
    return { host, port: mqtts.port, transport: 'mqtts', caPem: this.certificateAuthority.caCertPem };
  }

  private summary(device: RegisteredDevice, ota: DeviceOtaStatus): DeviceSummary {
    return {
      productId: device.productId,
      deviceName: device.deviceName,
      authMode: device.authMode,
      deviceType: device.deviceType,
      createdAt: device.createdAt,
      online: this.broker.isOnline(device),
      connectCount: this.broker.connectCount(device),
      version: ota.version ?? null,
    };
  }

  private listDevices(productId: string | undefined): DeviceSummary[] {
    return this.registry.list(productId).map((device) => this.summary(device, this.otaService.deviceStatus(device)));
  }

  private deviceView(productId: string, deviceName: string): DeviceView {
    const device = this.registry.find(productId, deviceName);
    if (!device) throw new ApiError(404, `device ${productId}/${deviceName} does not exist`);
    const ota = this.otaService.deviceStatus(device);
    const gateway = this.gatewayService.gatewayOf(device);
    const gatewayFields: Pick<DeviceView, 'gateway' | 'subDevices' | 'gatewayHistory'> = {};
    if (gateway) gatewayFields.gateway = gateway;
    if (device.deviceType === 'gateway') {
      gatewayFields.subDevices = this.gatewayService.listBindings(device);
      gatewayFields.gatewayHistory = this.gatewayService.history(device);
    }
    return {
      ...this.summary(device, ota),
      ...gatewayFields,
      ota: {
        taskId: ota.taskId ?? null,
        targetVersion: ota.targetVersion ?? null,
        state: ota.state ?? null,
        percent: ota.percent ?? null,
        result_code: ota.result_code ?? null,
        result_msg: ota.result_msg ?? null,
        history: ota.history,
      },
    };
  }

  private noFirmware(productId: string, version: string): ApiError {
    return new ApiError(404, `no firmware ${version} uploaded for product ${productId}`);
  }

  private firmwareRecord(productId: string, version: string): FirmwareRecord {
    const record = this.firmwareStore.get(productId, version);
    if (!record) throw this.noFirmware(productId, version);
    return record;
  }

  private async uploadFirmware(request: http.IncomingMessage, response: http.ServerResponse, query: URLSearchParams): Promise<void> {
    const productId = query.get('productId');
    const version = query.get('version');
    if (!productId) throw new ApiError(400, 'the productId query parameter is missing');
    if (!version) throw new ApiError(400, 'the version query parameter is missing');
    const replace = query.get('replace') ?? 'false';
    if (replace !== 'true' && replace !== 'false') throw new ApiError(400, 'the replace query parameter must be true or false');
    const declared = Number(request.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > this.firmwareStore.maxFileSize) {
      throw new ApiError(400, `firmware is larger than the maximum of ${this.firmwareStore.maxFileSize} bytes`);
    }
    const { record, outcome } = await this.firmwareStore.upload(productId, version, request, {
      replace: replace === 'true',
      declaredSize: Number.isFinite(declared) ? declared : undefined,
      ...signingOfUpload(request, query),
    });
    const uploaded: UploadedFirmware = { productId: record.productId, version: record.version, md5sum: record.md5sum, file_size: record.file_size, outcome };
    if (record.sha256 !== undefined) uploaded.sha256 = record.sha256;
    if (record.user_defined !== undefined) uploaded.user_defined = record.user_defined;
    sendJson(response, outcome === 'created' ? 201 : 200, uploaded);
  }
}

/**
 * The user_defined and signing of an upload: `userDefined`, `keyId`, `alg` and `signature` (base64)
 * in the query; a private key to sign with in the X-Signing-Key header (the PEM in base64), kept out of URLs.
 */
function signingOfUpload(request: http.IncomingMessage, query: URLSearchParams): Pick<FirmwareUploadOptions, 'userDefined' | 'signing' | 'signature'> {
  const options: Pick<FirmwareUploadOptions, 'userDefined' | 'signing' | 'signature'> = {};
  const userDefined = query.get('userDefined');
  if (userDefined !== null) options.userDefined = userDefined;
  const signingKey = request.headers['x-signing-key'];
  const signature = query.get('signature');
  if (signingKey === undefined && signature === null) return options;
  const keyId = query.get('keyId');
  if (!keyId) throw new ApiError(400, 'the keyId query parameter is missing: a signature names its key');
  const alg = query.get('alg') ?? 'ed25519';
  if (!(SIGNATURE_ALGORITHMS as readonly string[]).includes(alg)) throw new ApiError(400, `alg must be one of ${SIGNATURE_ALGORITHMS.join(', ')}`);
  if (typeof signingKey === 'string') {
    options.signing = { privateKeyPem: Buffer.from(signingKey, 'base64').toString('utf8'), keyId, alg: alg as SignatureAlgorithm };
  } else if (signature !== null) {
    options.signature = { alg: alg as SignatureAlgorithm, sig: signature, keyId };
  } else {
    throw new ApiError(400, 'give the X-Signing-Key header once');
  }
  return options;
}

/**
 * The stand-in's MQTT endpoints (PROTOCOL.md §1-2): aedes behind plain MQTT, MQTT over TLS and MQTT over
 * WebSocket/TLS, with IoT Hub's key and certificate authentication and its per-device topic rules.
 * A gateway (§6) also has its operation topics, and the topics of each sub-device it has brought online
 * on its current connection; which sub-devices those are, the gateway service decides.
 */
import { EventEmitter } from 'events';
import * as net from 'net';
import * as tls from 'tls';
import * as https from 'https';
import type { IncomingMessage } from 'http';
import type { Duplex } from 'stream';
import { WebSocketServer, createWebSocketStream } from 'ws';
import Aedes, { AuthErrorCode } from 'aedes';
import type { AedesPublishPacket, AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import { checkSignedConnection, checkUsername, clientIdOf } from '../lib/device-signing';
import { otaReportTopic, otaUpdateTopic, parseOtaTopic, type DeviceIdentity } from '../lib/ota-topics';
import { gatewayOperationResultTopic, gatewayOperationTopic } from '../lib/gateway-messages';
import { resolveEndpoint, type Transport } from '../lib/device-endpoint';
import type { CertificateAuthority } from './certificate-authority';
import type { DeviceRegistry, DeviceType, RegisteredDevice } from './device-registry';

export interface BrokerPorts {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 = ephemeral, for each port. */
  mqttPort: number;
  mqttsPort: number;
  wssPort: number;
}

export interface BrokerAddress {
  host: string;
  port: number;
  url: string;
}

export interface BrokerAddresses {
  mqtt: BrokerAddress;
  mqtts: BrokerAddress;
  /** url is wss://host:port/mqtt */
  wss: BrokerAddress;
}

export interface DevicePublish {
  productId: string;
  deviceName: string;
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  time: Date;
}

export interface DeviceConnectInfo {
  productId: string;
  deviceName: string;
  clientId: string;
  protocolVersion: number;
  transport: Transport;
  username: string;
}

export interface DeviceSubscribe {
  productId: string;
  deviceName: string;
  topic: string;
  /** 0 or 1, or 0x80 when the subscription was refused. */
  grantedQos: number;
}

export interface ConnectRefused {
  clientId: string;
  username: string;
  /** The CONNACK return code sent: 1 protocol version, 4 bad username or password, 5 not authorized. */
  returnCode: number;
  reason: string;
}

export interface PublishRefused {
  productId: string;
  deviceName: string;
  topic: string;
  reason: string;
}

/** A sub-device came online or went offline on its gateway's connection. */
export interface SubDeviceState extends DeviceIdentity {
  gateway: DeviceIdentity;
  online: boolean;
}

export interface SimulatedMqttBrokerEvents {
  'device-connect': [DeviceConnectInfo];
  'device-disconnect': [DeviceIdentity];
  'device-publish': [DevicePublish];
  'device-subscribe': [DeviceSubscribe];
  'connect-refused': [ConnectRefused];
  /** The device's connection is closed right after, as the cloud does. */
  'publish-refused': [PublishRefused];
  'sub-device-state': [SubDeviceState];
}

/** The largest keepalive IoT Hub accepts, in seconds. */
export const MAX_KEEPALIVE_SECONDS = 900;
/** IoT Hub does not support QoS 2: subscriptions get at most QoS 1. */
const MAX_GRANTED_QOS = 1;
const DEFAULT_HOST = '127.0.0.1';
/** MQTT 3.1 limits client ids to 23 bytes; IoT Hub ids (productId + deviceName) are up to 80 characters. */
const MAX_CLIENT_ID_LENGTH = 65535;

interface ConnectionOrigin {
  transport: Transport;
  /** The TLS socket under mqtts and wss: it carries the device's client certificate. */
  tlsSocket?: tls.TLSSocket;
}

interface DeviceSession {
  device: RegisteredDevice;
  info: DeviceConnectInfo;
  /** Gateways: the sub-devices brought online on this connection, by keyOf. */
  subDevices: Map<string, DeviceIdentity>;
}

type ConnectCheck = { ok: true; device: RegisteredDevice } | { ok: false; returnCode: AuthErrorCode; reason: string };

type DeviceWithType = DeviceIdentity & { deviceType?: DeviceType };

function keyOf(device: DeviceIdentity): string {
  return `${device.productId}/${device.deviceName}`;
}

function isUserTopicOf(device: DeviceIdentity, topic: string): boolean {
  const prefix = `${device.productId}/${device.deviceName}/`;
  return topic.startsWith(prefix) && topic.length > prefix.length;
}

/**
 * The topics a device may publish to: its OTA report topic and its own user topics; a gateway also
 * its operation topic.
 */
export function mayPublish(device: DeviceWithType, topic: string): boolean {
  if (device.deviceType === 'gateway' && topic === gatewayOperationTopic(device)) return true;
  return topic === otaReportTopic(device) || isUserTopicOf(device, topic);
}

/**
 * The topic filters a device may subscribe to: its OTA update topic and its own user topics (wildcards
 * below them too); a gateway also its operation result topic.
 */
export function maySubscribe(device: DeviceWithType, topicFilter: string): boolean {
  if (device.deviceType === 'gateway' && topicFilter === gatewayOperationResultTopic(device)) return true;
  return topicFilter === otaUpdateTopic(device) || isUserTopicOf(device, topicFilter);
}

/**
 * The device a topic (or filter) belongs to by its name: `$ota/<report|update>/<pid>/<dn>` or a user
 * topic `<pid>/<dn>/...`; undefined for any other topic and for wildcards in the two names.
 */
export function topicOwnerOf(topic: string): DeviceIdentity | undefined {
  const ota = parseOtaTopic(topic);
  if (ota) return { productId: ota.productId, deviceName: ota.deviceName };
  const [productId, deviceName, ...rest] = topic.split('/');
  if (!productId || !deviceName || rest.length === 0 || productId.startsWith('$')) return undefined;
  if (/[+#]/.test(productId) || /[+#]/.test(deviceName)) return undefined;
  return { productId, deviceName };
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

export class SimulatedMqttBroker extends EventEmitter<SimulatedMqttBrokerEvents> {
  private readonly registry: DeviceRegistry;
  private readonly certificateAuthority: CertificateAuthority;
  private readonly now: () => number;

  private aedes?: Aedes;
  private listening?: BrokerAddresses;
  private servers: net.Server[] = [];
  private webSocketServer?: WebSocketServer;
  /** Every raw socket accepted, so that close() ends connections at once instead of waiting for clients. */
  private readonly sockets = new Set<net.Socket>();
  private readonly origins = new WeakMap<Client, ConnectionOrigin>();
  private readonly connectPackets = new WeakMap<Client, ConnectPacket>();
  private readonly sessions = new WeakMap<Client, DeviceSession>();
  /** The connected client of each online device, by client id. */
  private readonly onlineClients = new Map<string, Client>();
  /** The gateway client each online sub-device is online on, by keyOf. */
  private readonly subDeviceClients = new Map<string, Client>();
  private readonly connectCounts = new Map<string, number>();

  constructor(options: { registry: DeviceRegistry; certificateAuthority: CertificateAuthority; now?: () => number }) {
    super();
    this.registry = options.registry;
    this.certificateAuthority = options.certificateAuthority;
    this.now = options.now ?? Date.now;
  }

  async listen(ports: BrokerPorts): Promise<BrokerAddresses> {
    if (this.aedes) throw new Error('the broker is already listening');
    const host = ports.host ?? DEFAULT_HOST;
    const aedes = this.createAedes();
    this.aedes = aedes;

    const tlsOptions: tls.TlsOptions = {
      key: this.certificateAuthority.serverCertificate.keyPem,
      cert: this.certificateAuthority.serverCertificate.certPem,
      ca: [this.certificateAuthority.caCertPem],
      // Key devices connect without a certificate and cert devices present theirs; authenticate() decides.
      requestCert: true,
      rejectUnauthorized: false,
    };
    const mqttServer = net.createServer((socket) => this.accept(socket, { transport: 'mqtt' }));
    const mqttsServer = tls.createServer(tlsOptions, (socket) => this.accept(socket, { transport: 'mqtts', tlsSocket: socket }));
    const wssServer = https.createServer(tlsOptions, (request, response) => {
      response.writeHead(request.url === '/mqtt' ? 426 : 404, { 'Content-Type': 'text/plain' });
      response.end(request.url === '/mqtt' ? 'MQTT over WebSocket: upgrade required\n' : 'not found\n');
    });
    const webSocketServer = new WebSocketServer({
      server: wssServer,
      path: '/mqtt',
      // mqtt.js asks for "mqttv3.1" when it speaks MQTT 3.1.
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    webSocketServer.on('connection', (webSocket, request) => {
      const tlsSocket = request.socket instanceof tls.TLSSocket ? request.socket : undefined;
      this.accept(createWebSocketStream(webSocket), { transport: 'wss', tlsSocket }, request);
    });
    this.webSocketServer = webSocketServer;
    this.servers = [mqttServer, mqttsServer, wssServer];
    for (const server of this.servers) {
      server.on('connection', (socket: net.Socket) => {
        this.sockets.add(socket);
        socket.once('close', () => this.sockets.delete(socket));
      });
    }

    try {
      const [mqttPort, mqttsPort, wssPort] = [
        await listenOn(mqttServer, host, ports.mqttPort),
        await listenOn(mqttsServer, host, ports.mqttsPort),
        await listenOn(wssServer, host, ports.wssPort),
      ];
      const address = (transport: Transport, port: number): BrokerAddress => {
        const endpoint = resolveEndpoint({ productId: '', region: 'china', transport, host, port });
        return { host, port, url: endpoint.url };
      };
      this.listening = { mqtt: address('mqtt', mqttPort), mqtts: address('mqtts', mqttsPort), wss: address('wss', wssPort) };
      return this.listening;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Stops listening and ends every connection now, so that the same ports can be listened on right after. */
  async close(): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) return;
    this.aedes = undefined;
    this.listening = undefined;
    const servers = this.servers;
    this.servers = [];
    const serversClosed = servers.filter((server) => server.listening).map(closeServer);
    this.webSocketServer?.close();
    this.webSocketServer = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(serversClosed);
    this.onlineClients.clear();
    this.subDeviceClients.clear();
  }

  /** Where the broker listens; undefined before listen() and after close(). */
  get addresses(): BrokerAddresses | undefined {
    return this.listening;
  }

  /** Publishes from the cloud side (no client), never retained; the cloud sends update_firmware with QoS 0. */
  async publishToDevice(device: DeviceIdentity, topic: string, payload: Buffer | string, qos: 0 | 1 = 0): Promise<void> {
    const aedes = this.aedes;
    if (!aedes) throw new Error('the broker is not listening');
    if (!maySubscribe(this.registry.find(device.productId, device.deviceName) ?? device, topic) || /[+#]/.test(topic)) {
      throw new Error(`${device.productId}/${device.deviceName} cannot receive ${topic}`);
    }
    const packet: PublishPacket = {
      cmd: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload,
      qos,
      retain: false,
      dup: false,
    };
    await new Promise<void>((resolve, reject) => aedes.publish(packet, (error) => (error ? reject(error) : resolve())));
  }

  /** Connected itself, or a sub-device its gateway has brought online. */
  isOnline(device: DeviceIdentity): boolean {
    return this.isConnected(device) || this.subDeviceClients.has(keyOf(device));
  }

  /** Connected on its own MQTT connection. */
  isConnected(device: DeviceIdentity): boolean {
    return this.onlineClients.has(clientIdOf(device));
  }

  /**
   * Brings a sub-device online on the gateway's current connection: the gateway may then use the
   * sub-device's topics as the sub-device would. False when the gateway is not connected. Whether the
   * two are bound is for the caller to check.
   */
  setSubDeviceOnline(gateway: DeviceIdentity, subDevice: DeviceIdentity): boolean {
    const client = this.onlineClients.get(clientIdOf(gateway));
    const session = client ? this.sessions.get(client) : undefined;
    if (!client || !session || session.device.deviceType !== 'gateway') return false;
    const key = keyOf(subDevice);
    const current = this.subDeviceClients.get(key);
    if (current === client) return true;
    if (current) this.setSubDeviceOffline(subDevice);
    session.subDevices.set(key, { productId: subDevice.productId, deviceName: subDevice.deviceName });
    this.subDeviceClients.set(key, client);
    this.emit('sub-device-state', { gateway: identityOf(session.device), productId: subDevice.productId, deviceName: subDevice.deviceName, online: true });
    return true;
  }

  /**
   * Takes a sub-device offline: its gateway loses its topics at once, and the gateway's subscriptions
   * on them are removed (a new online needs new subscriptions, as after a reconnect). False when it was
   * not online through a gateway.
   */
  setSubDeviceOffline(subDevice: DeviceIdentity): boolean {
    const key = keyOf(subDevice);
    const client = this.subDeviceClients.get(key);
    if (!client) return false;
    this.subDeviceClients.delete(key);
    const session = this.sessions.get(client);
    session?.subDevices.delete(key);
    removeSubscriptionsOf(client, subDevice);
    const gateway = session ? identityOf(session.device) : { productId: '', deviceName: '' };
    this.emit('sub-device-state', { gateway, productId: subDevice.productId, deviceName: subDevice.deviceName, online: false });
    return true;
  }

  /** The sub-devices online on the gateway's current connection, in the order they came online. */
  subDevicesOnline(gateway: DeviceIdentity): DeviceIdentity[] {
    const client = this.onlineClients.get(clientIdOf(gateway));
    const session = client ? this.sessions.get(client) : undefined;
    return session ? [...session.subDevices.values()].map((device) => ({ ...device })) : [];
  }

  /**
   * Ends the device's own connection now, as the cloud does when the device is deleted, and resolves once
   * it is closed (its sub-devices, for a gateway, offline with it). False when it was not connected.
   */
  async disconnect(device: DeviceIdentity): Promise<boolean> {
    const client = this.onlineClients.get(clientIdOf(device));
    if (!client) return false;
    await new Promise<void>((resolve) => client.close(() => resolve()));
    return true;
  }

  /** Accepted CONNECTs of this device since this broker was made. */
  connectCount(device: DeviceIdentity): number {
    return this.connectCounts.get(clientIdOf(device)) ?? 0;
  }

  private createAedes(): Aedes {
    const aedes = new Aedes({
      maxClientsIdLength: MAX_CLIENT_ID_LENGTH,
      preConnect: (client, packet, callback) => {
        this.connectPackets.set(client, packet);
        callback(null, true);
      },
      authenticate: (client, username, password, callback) => {
        const check = this.checkConnect(client, username ?? '', password);
        if (!check.ok) {
          const error = Object.assign(new Error(check.reason), { returnCode: check.returnCode });
          callback(error as AuthenticateError, false);
          return;
        }
        const packet = this.connectPackets.get(client);
        const origin = this.origins.get(client);
        this.sessions.set(client, {
          device: check.device,
          info: {
            productId: check.device.productId,
            deviceName: check.device.deviceName,
            clientId: client.id,
            protocolVersion: packet?.protocolVersion ?? 4,
            transport: origin?.transport ?? 'mqtt',
            username: username ?? '',
          },
          subDevices: new Map(),
        });
        callback(null, true);
      },
      authorizePublish: (client, packet, callback) => {
        // Publishes without a client are the broker's own (publishToDevice).
        if (!client) return callback(null);
        const session = this.sessions.get(client);
        if (!session) return callback(new Error('not authenticated'));
        const reason = this.describeRefusedPublish(session, packet);
        if (!reason) return callback(null);
        const { productId, deviceName } = session.device;
        this.emit('publish-refused', { productId, deviceName, topic: packet.topic, reason });
        // An error here makes aedes close the connection, which is what the cloud does.
        callback(new Error(reason));
      },
      authorizeSubscribe: (client, subscription, callback) => {
        const session = this.sessions.get(client);
        // A null subscription is answered with 0x80 in the SUBACK; the connection stays up.
        callback(null, session && this.maySubscribeIn(session, subscription.topic) ? subscription : null);
      },
      authorizeForward: (client, packet) => {
        const session = this.sessions.get(client);
        if (!session) return packet;
        // A subscription on a sub-device's topic receives only while the sub-device is online on this connection.
        const owner = topicOwnerOf(packet.topic);
        if (!owner || keyOf(owner) === keyOf(session.device) || session.subDevices.has(keyOf(owner))) return packet;
        return null;
      },
    });

    aedes.on('client', (client) => {
      const session = this.sessions.get(client);
      if (!session) return;
      this.onlineClients.set(client.id, client);
      this.connectCounts.set(client.id, (this.connectCounts.get(client.id) ?? 0) + 1);
      this.emit('device-connect', { ...session.info });
    });
    aedes.on('clientDisconnect', (client) => {
      const session = this.sessions.get(client);
      if (!session) return;
      // A second CONNECT with the same client id replaces the first; only the current one marks the device online.
      if (this.onlineClients.get(client.id) === client) this.onlineClients.delete(client.id);
      // The sub-devices a gateway brought online go offline with its connection.
      for (const subDevice of [...session.subDevices.values()]) {
        if (this.subDeviceClients.get(keyOf(subDevice)) === client) this.setSubDeviceOffline(subDevice);
      }
      session.subDevices.clear();
      this.emit('device-disconnect', { productId: session.device.productId, deviceName: session.device.deviceName });
    });
    aedes.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
      const session = client ? this.sessions.get(client) : undefined;
      if (!session) return;
      this.emit('device-publish', {
        productId: session.device.productId,
        deviceName: session.device.deviceName,
        topic: packet.topic,
        payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
        qos: packet.qos === 1 ? 1 : 0,
        time: new Date(this.now()),
      });
    });
    aedes.on('subscribe', (subscriptions: Subscription[], client: Client) => {
      const session = this.sessions.get(client);
      if (!session) return;
      for (const subscription of subscriptions) {
        const { productId, deviceName } = session.device;
        this.emit('device-subscribe', { productId, deviceName, topic: subscription.topic, grantedQos: subscription.qos });
      }
    });
    // aedes reports a refused CONNECT as an error carrying the CONNACK return code, after sending the CONNACK.
    const reportRefusedConnect = (client: Client, error: Error & { errorCode?: number }) => {
      if (typeof error.errorCode !== 'number') return;
      const packet = this.connectPackets.get(client);
      this.emit('connect-refused', {
        clientId: packet?.clientId ?? '',
        username: packet?.username ?? '',
        returnCode: error.errorCode,
        reason: error.message,
      });
    };
    aedes.on('clientError', reportRefusedConnect);
    aedes.on('connectionError', reportRefusedConnect);
    return aedes;
  }

  private accept(stream: Duplex, origin: ConnectionOrigin, request?: IncomingMessage): void {
    const aedes = this.aedes;
    if (!aedes) {
      stream.destroy();
      return;
    }
    const client = aedes.handle(stream, request);
    this.origins.set(client, origin);
    capRequestedQos(client);
  }

  private checkConnect(client: Client, username: string, password: Buffer | undefined): ConnectCheck {
    const packet = this.connectPackets.get(client);
    // MQTT 3.1.1 has no return code for these; "not authorized" is the nearest: the server will not accept this session.
    if (packet?.keepalive !== undefined && packet.keepalive > MAX_KEEPALIVE_SECONDS) {
      return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: `keepalive ${packet.keepalive} s is above ${MAX_KEEPALIVE_SECONDS} s` };
    }
    if (packet?.will) {
      return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: 'will messages are not supported' };
    }
    const device = this.registry.findByClientId(client.id);
    if (!device) return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: `no device has client id ${client.id}` };

    if (device.authMode === 'key') {
      const check = checkSignedConnection(client.id, username, password?.toString('utf8') ?? '', device.deviceSecret, this.now());
      return check.ok ? { ok: true, device } : { ok: false, returnCode: AuthErrorCode.BAD_USERNAME_OR_PASSWORD, reason: check.reason };
    }

    // Cert devices: the TLS client certificate is the credential and the password is ignored.
    const tlsSocket = this.origins.get(client)?.tlsSocket;
    if (!tlsSocket) return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: 'a certificate device must connect over TLS' };
    const peerCertificate = tlsSocket.getPeerCertificate();
    if (!peerCertificate || !peerCertificate.fingerprint256) {
      return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: 'no client certificate was presented' };
    }
    if (!tlsSocket.authorized) {
      return {
        ok: false,
        returnCode: AuthErrorCode.NOT_AUTHORIZED,
        reason: `client certificate not issued by the simulator CA (${String(tlsSocket.authorizationError)})`,
      };
    }
    if (peerCertificate.fingerprint256 !== device.certificateFingerprint256) {
      return { ok: false, returnCode: AuthErrorCode.NOT_AUTHORIZED, reason: `client certificate is not the one issued to ${client.id}` };
    }
    // The cloud ties the username to the certificate's device too: a username naming another device, or none, is refused.
    const usernameCheck = checkUsername(client.id, username);
    if (!usernameCheck.ok) return { ok: false, returnCode: AuthErrorCode.BAD_USERNAME_OR_PASSWORD, reason: usernameCheck.reason };
    return { ok: true, device };
  }

  /** The sub-device of this gateway session whose topic this is, if it is online on this connection. */
  private onlineSubDeviceOf(session: DeviceSession, topic: string): DeviceIdentity | undefined {
    if (session.device.deviceType !== 'gateway') return undefined;
    const owner = topicOwnerOf(topic);
    return owner ? session.subDevices.get(keyOf(owner)) : undefined;
  }

  private maySubscribeIn(session: DeviceSession, topicFilter: string): boolean {
    if (maySubscribe(session.device, topicFilter)) return true;
    const subDevice = this.onlineSubDeviceOf(session, topicFilter);
    return subDevice !== undefined && maySubscribe(subDevice, topicFilter);
  }

  private describeRefusedPublish(session: DeviceSession, packet: PublishPacket): string | undefined {
    if (packet.qos === 2) return 'QoS 2 is not supported';
    if (packet.retain) return 'retained messages are not supported';
    if (mayPublish(session.device, packet.topic)) return undefined;
    const subDevice = this.onlineSubDeviceOf(session, packet.topic);
    if (subDevice && mayPublish(subDevice, packet.topic)) return undefined;
    const owner = topicOwnerOf(packet.topic);
    if (session.device.deviceType === 'gateway' && owner && !subDevice) {
      return `not allowed to publish to ${packet.topic}: ${keyOf(owner)} is not online through this gateway`;
    }
    return `not allowed to publish to ${packet.topic}`;
  }
}

function identityOf(device: DeviceIdentity): DeviceIdentity {
  return { productId: device.productId, deviceName: device.deviceName };
}

/**
 * Removes the client's subscriptions on a device's topics, without an UNSUBACK (the client did not ask).
 * Relies on aedes 0.51's per-client subscription table (`subscriptions`, the package is pinned); delivery
 * is also filtered in authorizeForward, so a subscription missed here still receives nothing.
 */
function removeSubscriptionsOf(client: Client, device: DeviceIdentity): void {
  const table = (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
  const filters = Object.keys(table).filter((filter) => {
    const owner = topicOwnerOf(filter);
    return owner !== undefined && keyOf(owner) === keyOf(device);
  });
  if (filters.length === 0 || client.closed) return;
  client.unsubscribe({ cmd: 'unsubscribe', unsubscriptions: filters }, () => undefined);
}

/**
 * aedes grants exactly the QoS asked for, and its authorizeSubscribe cannot lower the granted value.
 * Lowering the request as each SUBSCRIBE is parsed, before aedes sees it, grants QoS 1 for a QoS 2
 * request and delivers accordingly. Relies on aedes 0.51's client parser (`_parser`, the package is pinned).
 */
function capRequestedQos(client: Client): void {
  const parser = (client as unknown as { _parser?: EventEmitter })._parser;
  if (!parser) throw new Error('aedes client has no packet parser: the QoS cap needs aedes 0.51');
  parser.prependListener('packet', (packet: { cmd: string; subscriptions?: { qos: number }[] }) => {
    if (packet.cmd !== 'subscribe' || !packet.subscriptions) return;
    for (const subscription of packet.subscriptions) {
      if (subscription.qos > MAX_GRANTED_QOS) subscription.qos = MAX_GRANTED_QOS;
    }
  });
}

/**
 * The QoS 1 publishes of a device connection that are not acknowledged yet: queued while
 * disconnected, handed to each new client after a reconnect until the PUBACK comes, failed after
 * their timeout or when the connection closes. Each connection attempt uses a new MQTT.js client,
 * so everything in flight is owned here, not by the client.
 */
import type * as mqtt from 'mqtt';
import type { ConnectionStatus } from './device-connection';

interface QueuedPublish {
  topic: string;
  payload: Buffer;
  resolve: () => void;
  reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
  /** Sent only while this says so (a sub-device's report waits until it is online). */
  when?: () => boolean;
  /** The client the message was last handed to; undefined while it waits to be sent. */
  sentOn?: mqtt.MqttClient;
}

export class PublishTimeoutError extends Error {
  constructor(topic: string, timeoutMs: number, status: ConnectionStatus) {
    const state = status.state === 'connected' ? 'no PUBACK' : `still ${status.state}${status.reason ? ` (${status.reason})` : ''}`;
    super(`publish to ${topic} not acknowledged within ${Math.round(timeoutMs / 1000)} s: ${state}`);
    this.name = 'PublishTimeoutError';
  }
}

/** What the queue needs to know of its connection. */
export interface QueueConnection {
  readonly status: ConnectionStatus;
  /** The client messages go out on now, if connected. */
  readonly currentClient: mqtt.MqttClient | undefined;
}

export class PublishQueue {
  private readonly entries: QueuedPublish[] = [];

  constructor(private readonly connection: QueueConnection) {}

  get size(): number {
    return this.entries.length;
  }

  /** Queues a QoS 1 publish; settles on its PUBACK, or fails after timeoutMs (0 waits for ever). `when` gates it. */
  add(topic: string, payload: Buffer, timeoutMs: number, when?: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry: QueuedPublish = { topic, payload, resolve, reject, when };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.remove(entry);
          reject(new PublishTimeoutError(topic, timeoutMs, this.connection.status));
        }, timeoutMs);
      }
      this.entries.push(entry);
      this.flush();
    });
  }

  /** Hands every message not yet sent on the current client (and whose gate is open) to it. */
  flush(): void {
    const client = this.connection.currentClient;
    if (!client) return;
    for (const entry of this.entries) {
      if (entry.sentOn || (entry.when && !entry.when())) continue;
      entry.sentOn = client;
      client.publish(entry.topic, entry.payload, { qos: 1, retain: false }, (error) => {
        // A client that has since been replaced will not deliver; the entry is sent again.
        if (entry.sentOn !== client || this.connection.currentClient !== client) {
          if (error && entry.sentOn === client) entry.sentOn = undefined;
          return;
        }
        this.remove(entry);
        if (error) entry.reject(error);
        else entry.resolve();
      });
    }
  }

  /** The client's link dropped: what was handed to it and not acknowledged goes out again after reconnect. */
  clientLost(client: mqtt.MqttClient): void {
    for (const entry of this.entries) if (entry.sentOn === client) entry.sentOn = undefined;
  }

  /** Fails every queued message (the connection is closing). */
  rejectAll(errorFor: (topic: string) => Error): void {
    for (const entry of this.entries.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(errorFor(entry.topic));
    }
  }

  private remove(entry: QueuedPublish): void {
    clearTimeout(entry.timer);
    const index = this.entries.indexOf(entry);
    if (index >= 0) this.entries.splice(index, 1);
  }
}

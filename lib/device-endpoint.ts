/** Where a device connects (PROTOCOL.md §1), derived from region and transport unless overridden. */
export type Region = 'china' | 'us-east' | 'europe' | 'ap-bangkok';
export const REGIONS: readonly Region[] = ['china', 'us-east', 'europe', 'ap-bangkok'];

export type Transport = 'mqtts' | 'mqtt' | 'wss';
export const TRANSPORTS: readonly Transport[] = ['mqtts', 'mqtt', 'wss'];

export const DEFAULT_PORTS: Record<Transport, number> = { mqtts: 8883, mqtt: 1883, wss: 443 };

export interface EndpointSettings {
  productId: string;
  region: Region;
  transport: Transport;
  /** Empty or undefined: derived from region and transport. */
  host?: string;
  port?: number;
}

export interface Endpoint {
  host: string;
  port: number;
  transport: Transport;
  /** The URL handed to the MQTT client: mqtts://host:port, mqtt://host:port or wss://host:port/mqtt. */
  url: string;
}

function defaultHost(productId: string, region: Region, transport: Transport): string {
  if (transport === 'wss') {
    return region === 'china' ? `${productId}.ap-guangzhou.iothub.tencentdevices.com` : `${productId}.${region}.iothub.tencentdevices.com`;
  }
  switch (region) {
    case 'china':
      return `${productId}.iotcloud.tencentdevices.com`;
    case 'us-east':
      return `${productId}.us-east.iotcloud.tencentdevices.com`;
    case 'europe':
      return `${productId}.europe.iothub.tencentdevices.com`;
    case 'ap-bangkok':
      return `${productId}.ap-bangkok.iothub.tencentdevices.com`;
  }
}

export function resolveEndpoint(settings: EndpointSettings): Endpoint {
  const host = settings.host && settings.host.trim() ? settings.host.trim() : defaultHost(settings.productId, settings.region, settings.transport);
  const port = settings.port && settings.port > 0 ? settings.port : DEFAULT_PORTS[settings.transport];
  const hostInUrl = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const url = settings.transport === 'wss' ? `wss://${hostInUrl}:${port}/mqtt` : `${settings.transport}://${hostInUrl}:${port}`;
  return { host, port, transport: settings.transport, url };
}

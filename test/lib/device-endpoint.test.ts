import { strict as assert } from 'assert';
import { DEFAULT_PORTS, REGIONS, TRANSPORTS, resolveEndpoint, type Region, type Transport } from '../../lib/device-endpoint';

/**
 * Every expected value here is copied from PROTOCOL.md §1 as a literal, never built the way
 * lib/device-endpoint.ts builds it, so that a wrong host name or port fails the test.
 */
const PRODUCT_ID = 'E69UADXUYY';

/** MQTT (plain and TLS) hosts: `<productId>.iotcloud.tencentdevices.com` in China, the productId prefix kept elsewhere. */
const MQTT_HOSTS: Record<Region, string> = {
  china: 'E69UADXUYY.iotcloud.tencentdevices.com',
  'us-east': 'E69UADXUYY.us-east.iotcloud.tencentdevices.com',
  europe: 'E69UADXUYY.europe.iothub.tencentdevices.com',
  'ap-bangkok': 'E69UADXUYY.ap-bangkok.iothub.tencentdevices.com',
};

/** WebSocket hosts: `<productId>.ap-guangzhou.iothub.tencentdevices.com` in China, `<region>.iothub` elsewhere. */
const WEBSOCKET_HOSTS: Record<Region, string> = {
  china: 'E69UADXUYY.ap-guangzhou.iothub.tencentdevices.com',
  'us-east': 'E69UADXUYY.us-east.iothub.tencentdevices.com',
  europe: 'E69UADXUYY.europe.iothub.tencentdevices.com',
  'ap-bangkok': 'E69UADXUYY.ap-bangkok.iothub.tencentdevices.com',
};

describe('device endpoint', () => {
  it('offers the four regions of the protocol', () => {
    assert.deepEqual([...REGIONS].sort(), ['ap-bangkok', 'china', 'europe', 'us-east']);
  });

  it('offers MQTT over TLS, plain MQTT and WebSocket over TLS', () => {
    assert.deepEqual([...TRANSPORTS].sort(), ['mqtt', 'mqtts', 'wss']);
  });

  it('uses port 8883 for MQTT over TLS, 1883 for plain MQTT and 443 for WebSocket over TLS', () => {
    assert.deepEqual(DEFAULT_PORTS, { mqtts: 8883, mqtt: 1883, wss: 443 });
  });

  for (const region of ['china', 'us-east', 'europe', 'ap-bangkok'] as const) {
    it(`connects a ${region} device over TLS to ${MQTT_HOSTS[region]}:8883`, () => {
      assert.deepEqual(resolveEndpoint({ productId: PRODUCT_ID, region, transport: 'mqtts' }), {
        host: MQTT_HOSTS[region],
        port: 8883,
        transport: 'mqtts',
        url: `mqtts://${MQTT_HOSTS[region]}:8883`,
      });
    });

    it(`connects a ${region} device over plain MQTT to ${MQTT_HOSTS[region]}:1883`, () => {
      assert.deepEqual(resolveEndpoint({ productId: PRODUCT_ID, region, transport: 'mqtt' }), {
        host: MQTT_HOSTS[region],
        port: 1883,
        transport: 'mqtt',
        url: `mqtt://${MQTT_HOSTS[region]}:1883`,
      });
    });

    it(`connects a ${region} device over WebSocket to wss://${WEBSOCKET_HOSTS[region]}:443/mqtt`, () => {
      assert.deepEqual(resolveEndpoint({ productId: PRODUCT_ID, region, transport: 'wss' }), {
        host: WEBSOCKET_HOSTS[region],
        port: 443,
        transport: 'wss',
        url: `wss://${WEBSOCKET_HOSTS[region]}:443/mqtt`,
      });
    });
  }

  it('spells out the China hosts of another product with that productId in front', () => {
    assert.equal(resolveEndpoint({ productId: 'ABCDEFGHIJ', region: 'china', transport: 'mqtts' }).host, 'ABCDEFGHIJ.iotcloud.tencentdevices.com');
    assert.equal(resolveEndpoint({ productId: 'ABCDEFGHIJ', region: 'china', transport: 'wss' }).host, 'ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com');
  });

  const transports: Transport[] = ['mqtts', 'mqtt', 'wss'];
  for (const transport of transports) {
    it(`connects to an overriding host (a private deployment) on the ${transport} default port`, () => {
      const endpoint = resolveEndpoint({ productId: PRODUCT_ID, region: 'europe', transport, host: 'iot.example.internal' });
      const expected: Record<Transport, { port: number; url: string }> = {
        mqtts: { port: 8883, url: 'mqtts://iot.example.internal:8883' },
        mqtt: { port: 1883, url: 'mqtt://iot.example.internal:1883' },
        wss: { port: 443, url: 'wss://iot.example.internal:443/mqtt' },
      };
      assert.deepEqual(endpoint, { host: 'iot.example.internal', transport, ...expected[transport] });
    });
  }

  it('connects to an overriding port on the region host', () => {
    assert.deepEqual(resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'mqtts', port: 18883 }), {
      host: 'E69UADXUYY.iotcloud.tencentdevices.com',
      port: 18883,
      transport: 'mqtts',
      url: 'mqtts://E69UADXUYY.iotcloud.tencentdevices.com:18883',
    });
  });

  it('connects to an overriding host and port together, keeping /mqtt for WebSocket', () => {
    assert.deepEqual(resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'wss', host: '127.0.0.1', port: 8443 }), {
      host: '127.0.0.1',
      port: 8443,
      transport: 'wss',
      url: 'wss://127.0.0.1:8443/mqtt',
    });
  });

  it('trims spaces around an overriding host', () => {
    const endpoint = resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'mqtt', host: '  broker.example.com \n' });
    assert.equal(endpoint.host, 'broker.example.com');
    assert.equal(endpoint.url, 'mqtt://broker.example.com:1883');
  });

  it('falls back to the region host when the host field is empty or blank', () => {
    for (const host of ['', '   ', undefined]) {
      assert.equal(
        resolveEndpoint({ productId: PRODUCT_ID, region: 'us-east', transport: 'mqtts', host }).host,
        'E69UADXUYY.us-east.iotcloud.tencentdevices.com',
        `host ${JSON.stringify(host)}`,
      );
    }
  });

  it('falls back to the transport default port when the port is missing, 0 or negative', () => {
    for (const port of [undefined, 0, -1]) {
      assert.equal(resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'mqtts', port }).port, 8883, `port ${String(port)}`);
      assert.equal(resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'wss', port }).port, 443, `port ${String(port)}`);
    }
  });

  it('puts an IPv6 host in brackets in the URL, and leaves a bracketed one as it is', () => {
    const bare = resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'mqtts', host: '::1', port: 8883 });
    assert.equal(bare.host, '::1');
    assert.equal(bare.url, 'mqtts://[::1]:8883');
    const bracketed = resolveEndpoint({ productId: PRODUCT_ID, region: 'china', transport: 'wss', host: '[fd00::5]' });
    assert.equal(bracketed.url, 'wss://[fd00::5]:443/mqtt');
  });
});

/** The two OTA topics of a device (PROTOCOL.md §2): the one place that builds them. */
export interface DeviceIdentity {
  productId: string;
  deviceName: string;
}

/** device → cloud: report_version and report_progress. */
export function otaReportTopic(device: DeviceIdentity): string {
  return `$ota/report/${device.productId}/${device.deviceName}`;
}

/** cloud → device: update_firmware and report_version_rsp. */
export function otaUpdateTopic(device: DeviceIdentity): string {
  return `$ota/update/${device.productId}/${device.deviceName}`;
}

export type OtaTopicDirection = 'report' | 'update';

/** Splits `$ota/<report|update>/<productId>/<deviceName>`; undefined for any other topic. */
export function parseOtaTopic(topic: string): ({ direction: OtaTopicDirection } & DeviceIdentity) | undefined {
  const parts = topic.split('/');
  if (parts.length !== 4 || parts[0] !== '$ota') return undefined;
  const [, direction, productId, deviceName] = parts;
  if (direction !== 'report' && direction !== 'update') return undefined;
  if (!productId || !deviceName) return undefined;
  return { direction, productId, deviceName };
}

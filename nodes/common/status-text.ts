/**
 * Node status texts as message keys that the editor translates, so that each editor shows them in
 * its own language whatever the runtime's. Node-RED's editor translates a status text that is a
 * key by itself, with no parameters; a key with parameters travels as `key?name=value&…` and the
 * translator in tencent-iot-device.html fills them in. The key names its catalog's namespace
 * (`<package>/<catalog>:`), so that any node of the package can show a text of any catalog.
 */

/** The package's name: the editor's namespace of a catalog is `<package>/<node set>`. */
export const PACKAGE_NAME = 'node-red-contrib-tencent-iot-ota';

export type StatusParameters = Record<string, string | number>;

export interface ParsedStatusText {
  /** The catalog key, `<catalog>.status.<name>`. */
  key: string;
  parameters: Record<string, string>;
}

const KEY_PATTERN = /^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$/;
const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9]*$/;

// URI-encoded, and '_' too: i18next reads `__name__` in a text it falls back to as a placeholder.
const encodeValue = (value: string) => encodeURIComponent(value).replace(/_/g, '%5F');

/** The status text of a key of one of the package's catalogs (`ota-download.status.downloading`), with its parameters. */
export function statusText(key: string, parameters: StatusParameters = {}): string {
  if (!KEY_PATTERN.test(key)) throw new Error(`status key ${JSON.stringify(key)} is not <catalog>.<name>`);
  const catalog = key.slice(0, key.indexOf('.'));
  const query = Object.entries(parameters).map(([name, value]) => {
    if (!NAME_PATTERN.test(name)) throw new Error(`status parameter ${JSON.stringify(name)} is not a plain name`);
    return `${name}=${encodeValue(String(value))}`;
  });
  return `${PACKAGE_NAME}/${catalog}:${key}${query.length > 0 ? `?${query.join('&')}` : ''}`;
}

/** The key and parameters of a status text statusText made, or undefined for any other text. */
export function parseStatusText(text: string): ParsedStatusText | undefined {
  const match = /^([^:?]+):([^?]+)(?:\?(.*))?$/.exec(text);
  if (!match) return undefined;
  const [, namespace, key, query] = match;
  if (!KEY_PATTERN.test(key) || namespace !== `${PACKAGE_NAME}/${key.slice(0, key.indexOf('.'))}`) return undefined;
  const parameters: Record<string, string> = {};
  for (const pair of query ? query.split('&') : []) {
    const equals = pair.indexOf('=');
    if (equals < 1) return undefined;
    try {
      parameters[pair.slice(0, equals)] = decodeURIComponent(pair.slice(equals + 1));
    } catch {
      return undefined;
    }
  }
  return { key, parameters };
}

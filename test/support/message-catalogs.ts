/** The package's message catalogs as Node-RED serves them: locales/<language>/<catalog>.json. */
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';

export const LANGUAGES = ['en-US', 'zh-CN'] as const;
export type Language = (typeof LANGUAGES)[number];

const localesDir = path.resolve(__dirname, '../../../locales');

/** Every catalog of a language by name (the node set it belongs to). */
export function catalogsOf(language: Language): Record<string, Record<string, unknown>> {
  const catalogs: Record<string, Record<string, unknown>> = {};
  for (const file of readdirSync(path.join(localesDir, language))) {
    if (file.endsWith('.json'))
      catalogs[file.slice(0, -'.json'.length)] = JSON.parse(readFileSync(path.join(localesDir, language, file), 'utf8')) as Record<string, unknown>;
  }
  return catalogs;
}

/** The text of `<catalog>.<path…>` in a language, or undefined when that key is missing or no text. */
export function messageOf(language: Language, key: string): string | undefined {
  const catalog = catalogsOf(language)[key.slice(0, key.indexOf('.'))];
  let value: unknown = catalog;
  for (const part of key.split('.')) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
  return typeof value === 'string' ? value : undefined;
}

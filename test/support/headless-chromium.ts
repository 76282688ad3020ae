/**
 * Debian's Chromium for the tests that drive a real browser (the Node-RED editor, the dashboard,
 * the stand-in's web console). `.ci/run` installs it; a machine without it skips those tests and
 * says so, rather than failing.
 */
import { existsSync } from 'fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Skips the suite (from its before hook) when Chromium is not installed, saying what goes untested. */
export function skipWithoutChromium(context: Mocha.Context, what: string): void {
  if (existsSync(CHROMIUM)) return;
  console.warn(`Chromium not found at ${CHROMIUM}: run "apt-get install chromium" to test ${what}`);
  context.skip();
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
}

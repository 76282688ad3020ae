/**
 * Which console requests come from a page of another origin. The console API sends no CORS headers,
 * so a browser never lets another site read its answers; but a "simple" cross-origin request (a form
 * post, a no-cors fetch) is still sent, and would create devices, upload firmware or start updates.
 * Browsers say where a request comes from (Origin, and Sec-Fetch-Site in current ones); the CLI, curl
 * and other programs send neither and are not affected.
 */
import type * as http from 'http';

/** Methods that read only; everything else changes the stand-in's state. */
const READING_METHODS = ['GET', 'HEAD', 'OPTIONS'];

function hostOf(authority: string): string | undefined {
  try {
    return new URL(`http://${authority}`).host;
  } catch {
    return undefined;
  }
}

/** Why a state-changing request must be refused as coming from another origin; undefined when it may go ahead. */
export function crossOriginChangeRefusal(request: http.IncomingMessage): string | undefined {
  if (READING_METHODS.includes(request.method ?? 'GET')) return undefined;
  const site = request.headers['sec-fetch-site'];
  // 'none': typed into the address bar or opened from a bookmark, by the user.
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `a ${site} request may not change the stand-in's state`;
  const origin = request.headers.origin;
  if (origin === undefined) return undefined;
  let originHost: string | undefined;
  try {
    const url = new URL(origin);
    originHost = url.protocol === 'http:' || url.protocol === 'https:' ? url.host : undefined;
  } catch {
    originHost = undefined;
  }
  const host = hostOf(request.headers.host ?? '');
  if (originHost === undefined || host === undefined || originHost !== host) {
    return `a request from ${origin === 'null' ? 'an opaque origin' : origin} may not change the stand-in's state`;
  }
  return undefined;
}

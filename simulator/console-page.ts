/**
 * The stand-in's web console: one page at `/`, its script, strings and styles under `/console/`, all
 * static files of console-page/ beside this module. The page works over the console API and its push
 * channel (GET /api/events), same origin, nothing fetched from elsewhere. It opens in the language the
 * browser asks for first among English and Simplified Chinese, and has a switch.
 */
import { promises as fs } from 'fs';
import type * as http from 'http';
import * as path from 'path';

export type ConsoleLanguage = 'en' | 'zh-CN';

/** Where the page's files are: beside the compiled module (the build copies them there). */
export const CONSOLE_PAGE_DIRECTORY = path.join(__dirname, 'console-page');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Scripts and styles from the page's own origin only: no inline script, no framing by another site. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** The language of the first tag of Accept-Language (by quality, then order) that is English or Chinese; English otherwise. */
export function preferredLanguage(acceptLanguage: string | undefined): ConsoleLanguage {
  const ranked = (acceptLanguage ?? '')
    .split(',')
    .map((part, index) => {
      const [tag, ...parameters] = part.trim().split(';');
      const quality = parameters.map((parameter) => /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(parameter)).find((match) => match !== null);
      return { tag: tag.trim().toLowerCase(), quality: quality ? Number(quality[1]) : 1, index };
    })
    .filter((entry) => entry.tag !== '' && entry.quality > 0)
    .sort((a, b) => b.quality - a.quality || a.index - b.index);
  for (const { tag } of ranked) {
    if (tag === 'zh' || tag.startsWith('zh-')) return 'zh-CN';
    if (tag === 'en' || tag.startsWith('en-')) return 'en';
  }
  return 'en';
}

/** The file a path names: `/` is the page, `/console/<name>` one of its scripts or styles. */
function fileOf(pathname: string): string | undefined {
  if (pathname === '/') return 'index.html';
  return /^\/console\/([a-z0-9-]+\.(?:js|css|svg))$/.exec(pathname)?.[1];
}

function sendText(response: http.ServerResponse, status: number, text: string): void {
  response.statusCode = status;
  response.setHeader('Content-Type', 'text/plain; charset=utf-8');
  response.setHeader('Content-Length', String(Buffer.byteLength(text)));
  response.end(text);
}

export class ConsolePage {
  constructor(private readonly directory: string = CONSOLE_PAGE_DIRECTORY) {}

  /** Answers one request for `/` or under `/console/`. */
  handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.serve(request, response).catch((error: unknown) => {
      if (response.headersSent) response.destroy();
      else sendText(response, 500, `internal error: ${(error as Error).message}\n`);
    });
  }

  private async serve(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const method = request.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      return sendText(response, 405, 'method not allowed\n');
    }
    const file = fileOf(new URL(request.url ?? '/', 'http://console.invalid').pathname);
    if (!file) return sendText(response, 404, 'not found\n');
    let body: Buffer;
    try {
      body = await fs.readFile(path.join(this.directory, file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return sendText(response, 404, 'not found\n');
      throw error;
    }
    if (file === 'index.html') {
      const language = preferredLanguage(request.headers['accept-language']);
      body = Buffer.from(body.toString('utf8').replace('<html lang="en">', `<html lang="${language}">`));
      response.setHeader('Vary', 'Accept-Language');
    }
    response.statusCode = 200;
    response.setHeader('Content-Type', CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream');
    response.setHeader('Content-Length', String(body.length));
    response.setHeader('Cache-Control', 'no-cache');
    response.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    response.setHeader('X-Content-Type-Options', 'nosniff');
    response.setHeader('X-Frame-Options', 'DENY');
    response.setHeader('Referrer-Policy', 'no-referrer');
    response.end(method === 'HEAD' ? undefined : body);
  }
}

/** One HTTP(S) request with real sockets, answering whatever happened: status, headers, body bytes, cut-off. */
import * as http from 'http';
import * as https from 'https';

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** CA PEM(s) to trust for https URLs (otherwise the Node default store). */
  ca?: string | string[];
  body?: Buffer | string;
  /** Gives up when no byte arrives for this long (a client read timeout). */
  idleTimeoutMs?: number;
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** True when the whole body arrived; false when the server cut it or the client gave up. */
  complete: boolean;
  /** Why the body is incomplete: 'aborted' (server closed) or 'timeout' (client gave up). */
  cutOff?: 'aborted' | 'timeout';
}

export function httpRequest(url: string, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const transport = target.protocol === 'https:' ? https : http;
    const request = transport.request(target, { method: options.method ?? 'GET', headers: options.headers, ca: options.ca, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const finish = (complete: boolean, cutOff?: 'aborted' | 'timeout') => {
        if (settled) return;
        settled = true;
        const answer: HttpAnswer = { status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks), complete };
        if (cutOff) answer.cutOff = cutOff;
        resolve(answer);
      };
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => finish(true));
      response.on('aborted', () => finish(false, 'aborted'));
      response.on('error', () => finish(false, 'aborted'));
      response.on('close', () => finish(response.complete, response.complete ? undefined : 'aborted'));
      if (options.idleTimeoutMs) {
        response.setTimeout(options.idleTimeoutMs, () => {
          finish(false, 'timeout');
          request.destroy();
        });
      }
    });
    request.on('error', (error) => reject(error));
    request.end(options.body);
  });
}

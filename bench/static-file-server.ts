/**
 * The server the download benchmark fetches from: Debian's nginx when it is installed (a plain
 * static file server, with sendfile, over HTTP and HTTPS on loopback), else the stand-in's firmware
 * server. Both serve the same file to our download and to the reference (curl), and the bench
 * names the one it used.
 */
import { spawn, type ChildProcess } from 'child_process';
import { createHash } from 'crypto';
import { createReadStream, existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { freePort } from '../demo/node-red-process';
import type { IotHubSimulator } from '../simulator/iot-hub-simulator';

export interface ServedFile {
  httpUrl: string;
  httpsUrl: string;
  md5sum: string;
  size: number;
  /** Removes the file from the server. */
  remove(): Promise<void>;
}

export interface StaticFileServer {
  /** 'nginx 1.22.1' or 'the stand-in's firmware server'. */
  readonly description: string;
  /** Serves the file (copied or uploaded) at an http and an https URL. */
  serve(name: string, filePath: string): Promise<ServedFile>;
  close(): Promise<void>;
}

const NGINX_PATHS = ['/usr/sbin/nginx', '/usr/bin/nginx'];

export async function md5OfFile(filePath: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(filePath, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function waitForPort(port: number, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const answered = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (answered) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const log = await fs.readFile(errorLog, 'utf8').catch(() => '');
  throw new Error(`nginx did not start: ${log.trim().slice(-500)}`);
}

async function startNginx(binary: string, workDir: string, certPath: string, keyPath: string): Promise<StaticFileServer> {
  const root = path.join(workDir, 'nginx');
  const www = path.join(root, 'www');
  await fs.mkdir(www, { recursive: true });
  // The worker process runs as an unprivileged user when nginx starts as root: it must reach the files.
  for (let dir = www; dir !== path.dirname(dir) && dir.startsWith(workDir); dir = path.dirname(dir)) await fs.chmod(dir, 0o755);
  await fs.chmod(workDir, 0o755);
  await fs.copyFile(certPath, path.join(root, 'server.crt'));
  await fs.copyFile(keyPath, path.join(root, 'server.key'));
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const errorLog = path.join(root, 'error.log');
  const config = [
    'worker_processes 1;',
    `pid ${path.join(root, 'nginx.pid')};`,
    `error_log ${errorLog} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    '  access_log off;',
    '  sendfile on;',
    '  default_type application/octet-stream;',
    `  client_body_temp_path ${root}/client-body;`,
    `  proxy_temp_path ${root}/proxy;`,
    `  fastcgi_temp_path ${root}/fastcgi;`,
    `  uwsgi_temp_path ${root}/uwsgi;`,
    `  scgi_temp_path ${root}/scgi;`,
    '  server {',
    `    listen 127.0.0.1:${httpPort};`,
    `    listen 127.0.0.1:${httpsPort} ssl;`,
    `    ssl_certificate ${root}/server.crt;`,
    `    ssl_certificate_key ${root}/server.key;`,
    `    root ${www};`,
    '  }',
    '}',
    '',
  ].join('\n');
  const configPath = path.join(root, 'nginx.conf');
  await fs.writeFile(configPath, config);
  const child = spawn(binary, ['-p', root, '-c', configPath, '-g', 'daemon off;'], { stdio: 'ignore' });
  await waitForPort(httpPort, child, errorLog);
  const version = await new Promise<string>((resolve) => {
    const probe = spawn(binary, ['-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let text = '';
    probe.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
    probe.once('close', () => resolve(/nginx\/(\S+)/.exec(text)?.[1] ?? ''));
  });
  return {
    description: `nginx ${version} (static files, sendfile)`.replace('  ', ' '),
    async serve(name, filePath) {
      const target = path.join(www, name);
      await fs.copyFile(filePath, target);
      await fs.chmod(target, 0o644);
      const stat = await fs.stat(target);
      return {
        httpUrl: `http://127.0.0.1:${httpPort}/${name}`,
        httpsUrl: `https://127.0.0.1:${httpsPort}/${name}`,
        md5sum: await md5OfFile(target),
        size: stat.size,
        remove: () => fs.rm(target, { force: true }),
      };
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGQUIT');
      await exited;
    },
  };
}

function standInServer(sim: IotHubSimulator, productId: string): StaticFileServer {
  return {
    description: "the stand-in's firmware server (nginx is not installed)",
    async serve(name, filePath) {
      const stat = await fs.stat(filePath);
      await sim.console.uploadFirmware(productId, name, createReadStream(filePath), { contentLength: stat.size });
      return {
        httpUrl: sim.firmwareServer.signedUrl(productId, name, { scheme: 'http', ttlSeconds: 3600 }),
        httpsUrl: sim.firmwareServer.signedUrl(productId, name, { scheme: 'https', ttlSeconds: 3600 }),
        md5sum: await md5OfFile(filePath),
        size: stat.size,
        remove: () => sim.console.deleteFirmware(productId, name).then(() => undefined),
      };
    },
    async close() {},
  };
}

/** nginx when installed (and `useNginx` is not false), else the stand-in's firmware server. */
export async function startStaticFileServer(sim: IotHubSimulator, workDir: string, productId: string, useNginx = true): Promise<StaticFileServer> {
  const binary = NGINX_PATHS.find((candidate) => existsSync(candidate));
  if (!binary || !useNginx) return standInServer(sim, productId);
  const tlsDir = path.dirname(sim.certificateAuthority.caCertPath);
  return startNginx(binary, workDir, path.join(tlsDir, 'server.crt'), path.join(tlsDir, 'server.key'));
}

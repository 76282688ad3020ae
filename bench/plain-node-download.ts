/**
 * The plainest Node download, as a reference: http(s).get piped to a file, with a running MD5.
 *
 *   node dist/bench/plain-node-download.js <url> <file> [<ca file>]
 */
import { createHash } from 'crypto';
import { createWriteStream, readFileSync } from 'fs';
import * as http from 'http';
import * as https from 'https';

const [url, file, caPath] = process.argv.slice(2);
const hash = createHash('md5');
const get = url.startsWith('https:') ? https.get : http.get;
get(url, caPath ? { ca: readFileSync(caPath) } : {}, (response) => {
  response.on('data', (chunk: Buffer) => hash.update(chunk));
  response.pipe(createWriteStream(file)).on('finish', () => process.stdout.write(hash.digest('hex') + '\n'));
}).on('error', (error) => {
  console.error(error.message);
  process.exit(1);
});

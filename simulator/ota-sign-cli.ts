#!/usr/bin/env node
/**
 * tencent-iot-ota-sign: makes firmware signing keys and signs a firmware's manifest, printing the
 * user_defined JSON to paste into the console (or to give the stand-in's firmware upload).
 */
import { createHash } from 'crypto';
import { createReadStream, promises as fs } from 'fs';
import * as path from 'path';
import { pipeline } from 'stream/promises';
import { parseArgs } from 'util';
import { generateFirmwareKeyPair, signFirmwareManifest, SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from '../lib/firmware-signature';

const USAGE = `usage:
  tencent-iot-ota-sign keys generate [--alg ${SIGNATURE_ALGORITHMS.join('|')}] [--out <prefix>]
      writes <prefix>.private.pem and <prefix>.public.pem (without --out: prints both)
  tencent-iot-ota-sign sign --key <private.pem> --key-id <id> --product <productId> --version <version> [--alg <alg>] [--user-defined <json>] <firmware.bin>
      prints the user_defined JSON that carries the signature`;

class UsageError extends Error {}

function algorithmOf(value: string | undefined): SignatureAlgorithm {
  const alg = value ?? 'ed25519';
  if (!(SIGNATURE_ALGORITHMS as readonly string[]).includes(alg)) throw new UsageError(`--alg must be one of ${SIGNATURE_ALGORITHMS.join(', ')}`);
  return alg as SignatureAlgorithm;
}

async function sha256OfFile(filePath: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(createReadStream(filePath), async function* (chunks: AsyncIterable<Buffer>) {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
    }
    yield* [];
  });
  return { sha256: hash.digest('hex'), size };
}

/** Runs the tool; resolves with the exit code. */
export async function main(argv: string[], print: (text: string) => void = (text) => process.stdout.write(`${text}\n`)): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        alg: { type: 'string' },
        out: { type: 'string' },
        key: { type: 'string' },
        'key-id': { type: 'string' },
        product: { type: 'string' },
        version: { type: 'string' },
        'user-defined': { type: 'string' },
      },
    });
    if (values.help) {
      print(USAGE);
      return 0;
    }
    const command = positionals.join(' ');
    if (command === 'keys generate') {
      const pair = generateFirmwareKeyPair(algorithmOf(values.alg));
      if (values.out === undefined) {
        print(`${pair.privateKeyPem}${pair.publicKeyPem}`.trimEnd());
        return 0;
      }
      const privatePath = path.resolve(`${values.out}.private.pem`);
      const publicPath = path.resolve(`${values.out}.public.pem`);
      await fs.writeFile(privatePath, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
      await fs.writeFile(publicPath, pair.publicKeyPem, { flag: 'wx' });
      print(`private key: ${privatePath}\npublic key:  ${publicPath}`);
      return 0;
    }
    if (positionals[0] === 'sign' && positionals.length === 2) {
      const missing = (['key', 'key-id', 'product', 'version'] as const).find((name) => !values[name]);
      if (missing) throw new UsageError(`--${missing} is missing`);
      const { sha256, size } = await sha256OfFile(positionals[1]);
      const privateKeyPem = await fs.readFile(values.key as string, 'utf8');
      const manifest = { productId: values.product as string, version: values.version as string, size, sha256 };
      const signature = signFirmwareManifest(manifest, privateKeyPem, values['key-id'] as string, algorithmOf(values.alg));
      let fields: unknown = {};
      if (values['user-defined'] !== undefined) {
        fields = JSON.parse(values['user-defined']);
        if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw new UsageError('--user-defined must be a JSON object');
      }
      print(JSON.stringify({ ...(fields as object), signature }));
      return 0;
    }
    throw new UsageError(positionals.length === 0 ? 'a command is missing' : `unknown command "${command}"`);
  } catch (error) {
    process.stderr.write(`error: ${(error as Error).message}\n`);
    if (error instanceof UsageError || (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) process.stderr.write(`${USAGE}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((exitCode) => {
    process.exitCode = exitCode;
  });
}

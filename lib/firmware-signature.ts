/**
 * Signed firmware: a signature over a small manifest that binds the bytes (by size and SHA-256) to
 * their product and version, so that an old signed image cannot be replayed under a new version
 * label. Signing the manifest rather than the file keeps verification streaming: the SHA-256 is the
 * one the download computes as the bytes arrive. node:crypto alone; keys are PEM (SPKI for public keys).
 */
import * as crypto from 'crypto';
import { printable } from './printable-text';

export const SIGNATURE_ALGORITHMS = ['ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha256'] as const;
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

/** A signature as it travels in user_defined or msg.signature: standard padded base64. */
export interface FirmwareSignature {
  alg: SignatureAlgorithm;
  sig: string;
  keyId: string;
}

/** A public key the device trusts, under the id signatures name. */
export interface FirmwareKey {
  id: string;
  pem: string;
}

export interface FirmwareManifest {
  productId: string;
  version: string;
  size: number;
  sha256: string;
}

/** What the device asks of a firmware's signature. */
export interface SignaturePolicy {
  keys: readonly FirmwareKey[];
  /** A firmware without a signature fails. */
  required: boolean;
}

const RSA_PSS_SALT_LENGTH = 32;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The UTF-8 text that is signed. */
export function firmwareManifestText(manifest: FirmwareManifest): string {
  return `tencent-iot-ota-firmware-v1\n${manifest.productId}\n${manifest.version}\n${manifest.size}\n${manifest.sha256.toLowerCase()}\n`;
}

/** True when the policy asks for a check even of a firmware that comes without a signature. */
export function policyChecksSignatures(policy: SignaturePolicy | undefined): boolean {
  return policy !== undefined && (policy.required || policy.keys.length > 0);
}

function paddingOptions(alg: SignatureAlgorithm): { padding?: number; saltLength?: number } {
  return alg === 'rsa-pss-sha256' ? { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: RSA_PSS_SALT_LENGTH } : {};
}

function digestOf(alg: SignatureAlgorithm): string | null {
  return alg === 'ed25519' ? null : 'sha256';
}

/** Why a key cannot serve for an algorithm, or undefined. */
function describeKeyMismatch(key: crypto.KeyObject, alg: SignatureAlgorithm): string | undefined {
  const type = key.asymmetricKeyType;
  if (alg === 'ed25519' && type !== 'ed25519') return `is ${type}, not ed25519`;
  if (alg === 'ecdsa-p256-sha256' && (type !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')) return `is ${type}, not an EC P-256 key`;
  if (alg === 'rsa-pss-sha256' && type !== 'rsa' && type !== 'rsa-pss') return `is ${type}, not an RSA key`;
  return undefined;
}

/** Signs the manifest with a PEM private key; returns the signature to put in user_defined. */
export function signFirmwareManifest(manifest: FirmwareManifest, privateKeyPem: string, keyId: string, alg: SignatureAlgorithm = 'ed25519'): FirmwareSignature {
  const key = crypto.createPrivateKey(privateKeyPem);
  const mismatch = describeKeyMismatch(key, alg);
  if (mismatch) throw new Error(`the private key ${mismatch}`);
  const signature = crypto.sign(digestOf(alg), Buffer.from(firmwareManifestText(manifest), 'utf8'), { key, ...paddingOptions(alg) });
  return { alg, sig: signature.toString('base64'), keyId };
}

/** A new key pair in PEM (PKCS#8 private, SPKI public). */
export function generateFirmwareKeyPair(alg: SignatureAlgorithm = 'ed25519'): { privateKeyPem: string; publicKeyPem: string } {
  const publicKeyEncoding = { type: 'spki', format: 'pem' } as const;
  const privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const;
  const pair =
    alg === 'ed25519'
      ? crypto.generateKeyPairSync('ed25519', { publicKeyEncoding, privateKeyEncoding })
      : alg === 'ecdsa-p256-sha256'
        ? crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1', publicKeyEncoding, privateKeyEncoding })
        : crypto.generateKeyPairSync('rsa', { modulusLength: 3072, publicKeyEncoding, privateKeyEncoding });
  return { privateKeyPem: pair.privateKey, publicKeyPem: pair.publicKey };
}

/** Says what is wrong with a configured key, or undefined. */
export function describeInvalidFirmwareKey(key: Partial<FirmwareKey>): string | undefined {
  if (typeof key.id !== 'string' || key.id.trim() === '') return 'a firmware key has no id';
  if (typeof key.pem !== 'string' || !key.pem.includes('BEGIN PUBLIC KEY')) return `firmware key ${printable(key.id, 40)} is not a PEM public key (BEGIN PUBLIC KEY)`;
  try {
    crypto.createPublicKey(key.pem);
  } catch (error) {
    return `firmware key ${printable(key.id, 40)} cannot be read: ${(error as Error).message}`;
  }
  return undefined;
}

/** The signature in a value from user_defined or msg.signature, or why it is malformed. */
export function parseFirmwareSignature(value: unknown): { ok: true; signature: FirmwareSignature } | { ok: false; reason: string } {
  const malformed = (why: string) => ({ ok: false as const, reason: `malformed signature: ${why}` });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return malformed('not an object');
  const fields = value as Record<string, unknown>;
  const alg = fields.alg === undefined ? 'ed25519' : fields.alg;
  if (typeof alg !== 'string' || !(SIGNATURE_ALGORITHMS as readonly string[]).includes(alg)) {
    return malformed(`alg "${printable(String(alg), 40)}" is not one of ${SIGNATURE_ALGORITHMS.join(', ')}`);
  }
  if (typeof fields.keyId !== 'string' || fields.keyId.trim() === '') return malformed('no keyId');
  if (typeof fields.sig !== 'string' || fields.sig === '' || fields.sig.length % 4 !== 0 || !BASE64.test(fields.sig)) return malformed('sig is not padded base64');
  return { ok: true, signature: { alg: alg as SignatureAlgorithm, sig: fields.sig, keyId: fields.keyId.trim() } };
}

/**
 * Where the signature of an update is: msg.signature when the flow set one, else user_defined's
 * "signature". user_defined is the parsed object, or the text when it did not parse as a JSON object.
 */
export function findFirmwareSignature(flowSignature: unknown, userDefined: unknown): { found: true; value: unknown } | { found: false; problem?: string } {
  if (flowSignature !== undefined && flowSignature !== null) return { found: true, value: flowSignature };
  if (userDefined === undefined || userDefined === null || userDefined === '') return { found: false };
  if (typeof userDefined === 'string') {
    try {
      const parsed: unknown = JSON.parse(userDefined);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { found: false, problem: 'malformed user_defined: not a JSON object' };
      userDefined = parsed;
    } catch (error) {
      return { found: false, problem: `malformed user_defined: ${(error as Error).message}` };
    }
  }
  if (typeof userDefined !== 'object' || Array.isArray(userDefined)) return { found: false, problem: 'malformed user_defined: not a JSON object' };
  const signature = (userDefined as Record<string, unknown>).signature;
  return signature === undefined ? { found: false } : { found: true, value: signature };
}

export type SignatureCheck = { ok: true; signature?: { alg: SignatureAlgorithm; keyId: string } } | { ok: false; reason: string };

/** Checks a firmware's signature (already found) against the policy; a firmware without one passes unless one is required. */
export function checkFirmwareSignature(manifest: FirmwareManifest, found: ReturnType<typeof findFirmwareSignature>, policy: SignaturePolicy): SignatureCheck {
  if (!found.found) {
    if (found.problem && policyChecksSignatures(policy)) return { ok: false, reason: found.problem };
    return policy.required ? { ok: false, reason: 'no signature and signed firmware is required' } : { ok: true };
  }
  const parsed = parseFirmwareSignature(found.value);
  if (!parsed.ok) return parsed;
  const { alg, sig, keyId } = parsed.signature;
  const key = policy.keys.find((candidate) => candidate.id.trim() === keyId);
  if (!key) return { ok: false, reason: `unknown key id ${printable(keyId, 60)}` };
  let publicKey: crypto.KeyObject;
  try {
    publicKey = crypto.createPublicKey(key.pem);
  } catch (error) {
    return { ok: false, reason: `key ${key.id} cannot be read: ${(error as Error).message}` };
  }
  const mismatch = describeKeyMismatch(publicKey, alg);
  if (mismatch) return { ok: false, reason: `signature is ${alg} but key ${key.id} ${mismatch}` };
  let verified: boolean;
  try {
    const text = Buffer.from(firmwareManifestText(manifest), 'utf8');
    verified = crypto.verify(digestOf(alg), text, { key: publicKey, ...paddingOptions(alg) }, Buffer.from(sig, 'base64'));
  } catch {
    verified = false;
  }
  if (!verified) return { ok: false, reason: `signature does not verify with key ${key.id}` };
  return { ok: true, signature: { alg, keyId: key.id } };
}

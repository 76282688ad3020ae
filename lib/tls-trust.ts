/**
 * The TLS contexts that downloads trust servers by. Building one with a CA of the user's besides
 * Node's root store parses every root certificate again (tens of milliseconds of the main thread
 * and over half a MiB each), so there is one context per distinct set of extra certificates,
 * shared by every download, every retry and every device that trusts the same CA.
 */
import { createHash } from 'crypto';
import * as tls from 'tls';

/** More distinct CA sets than this in one process are not expected; the oldest context is let go. */
const MAX_CONTEXTS = 16;
const contexts = new Map<string, tls.SecureContext>();

/** Node's default CA store (with NODE_EXTRA_CA_CERTS, where Node counts it there) plus the extra certificates. */
function trustedCertificates(extra: string[]): string[] {
  const getCACertificates = (tls as unknown as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  const defaults = getCACertificates ? getCACertificates('default') : [...tls.rootCertificates];
  return [...defaults, ...extra];
}

/** The one context that trusts Node's default CAs and `extraCa`; throws for a certificate that does not parse. */
export function secureContextTrusting(extraCa: string | string[]): tls.SecureContext {
  const extra = (Array.isArray(extraCa) ? extraCa : [extraCa]).map((pem) => pem.trim());
  const key = createHash('sha256').update(extra.join('\n')).digest('hex');
  const cached = contexts.get(key);
  if (cached) return cached;
  const context = tls.createSecureContext({ ca: trustedCertificates(extra) });
  contexts.set(key, context);
  if (contexts.size > MAX_CONTEXTS) contexts.delete(contexts.keys().next().value as string);
  return context;
}

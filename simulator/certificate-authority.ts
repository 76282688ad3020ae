/**
 * The stand-in's private CA: it signs the TLS certificate of the broker and the firmware server and
 * the client certificates of cert-auth devices, as Tencent's own CA does for the real cloud.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { isIP } from 'net';
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'crypto';
import * as forge from 'node-forge';
import { readFileIfPresent, writeFileAtomic } from '../lib/atomic-file';

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
  /** As X509Certificate.fingerprint256: colon-separated uppercase hex. */
  fingerprint256: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_LIFETIME_DAYS = 20 * 365;
const SERVER_LIFETIME_DAYS = 825;
const CLIENT_LIFETIME_DAYS = 10 * 365;
/** A server certificate this close to expiry is replaced at start. */
const SERVER_RENEWAL_DAYS = 30;
/** Certificates start an hour in the past so that a peer whose clock lags a little accepts them. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;

const ALWAYS_SERVED_NAMES = ['localhost', '127.0.0.1', '::1'];
const ORGANIZATION = 'node-red-contrib-tencent-iot-ota simulator';

interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

/** Native key generation: node-forge's own RSA generation takes seconds. */
function generateRsaKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** 16 random bytes with the top bit clear (a positive DER integer) and a non-zero first byte (minimal encoding). */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x3f) | 0x40;
  return bytes.toString('hex');
}

type CertificateExtension = Record<string, unknown> & { name: string };

interface CertificateRequest {
  subject: forge.pki.CertificateField[];
  publicKeyPem: string;
  lifetimeDays: number;
  extensions: CertificateExtension[];
  /** Absent for the self-signed CA. */
  issuer?: { certificate: forge.pki.Certificate; privateKeyPem: string };
}

function signCertificate(request: CertificateRequest, subjectPrivateKeyPem: string): string {
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = forge.pki.publicKeyFromPem(request.publicKeyPem);
  certificate.serialNumber = randomSerialNumber();
  const now = Date.now();
  certificate.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  certificate.validity.notAfter = new Date(now + request.lifetimeDays * DAY_MS);
  certificate.setSubject(request.subject);
  certificate.setIssuer(request.issuer ? request.issuer.certificate.subject.attributes : request.subject);
  const authorityKeyIdentifier = (request.issuer ? request.issuer.certificate : certificate).generateSubjectKeyIdentifier().getBytes();
  certificate.setExtensions([...request.extensions, { name: 'subjectKeyIdentifier' }, { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyIdentifier }]);
  const signingKeyPem = request.issuer ? request.issuer.privateKeyPem : subjectPrivateKeyPem;
  certificate.sign(forge.pki.privateKeyFromPem(signingKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return forge.pki.certificateToPem(certificate);
}

function issuedCertificate(certPem: string, keyPem: string): IssuedCertificate {
  return { certPem, keyPem, fingerprint256: new X509Certificate(certPem).fingerprint256 };
}

/** Lowercase DNS names and bare IP addresses (brackets removed), the fixed loopback names first, no duplicates. */
function normalizeServedNames(hostnames: readonly string[]): string[] {
  const names: string[] = [];
  for (const raw of [...ALWAYS_SERVED_NAMES, ...hostnames]) {
    const name = raw
      .trim()
      .replace(/^\[(.*)\]$/, '$1')
      .toLowerCase();
    if (name && !names.includes(name)) names.push(name);
  }
  return names;
}

// node-forge converts IP text to bytes for subjectAltName itself but its typings omit the helper.
const forgeIpBytes = (forge.util as unknown as { bytesFromIP(ip: string): string | null }).bytesFromIP;

/** One comparable key per subjectAltName entry: IPs by their bytes, so that `::1` and `0:0::1` agree. */
function subjectAltNameKey(entry: { type: number; value?: string; ip?: string }): string {
  if (entry.type === 7) {
    const bytes = entry.ip !== undefined ? forgeIpBytes(entry.ip) : entry.value;
    return `ip:${forge.util.bytesToHex(bytes ?? '')}`;
  }
  return `dns:${(entry.value ?? '').toLowerCase()}`;
}

function subjectAltNames(names: readonly string[]): { type: number; value?: string; ip?: string }[] {
  return names.map((name) => (isIP(name) ? { type: 7, ip: name } : { type: 2, value: name }));
}

function sameNameSet(certificatePem: string, names: readonly string[]): boolean {
  const extension = forge.pki.certificateFromPem(certificatePem).getExtension('subjectAltName') as
    { altNames?: { type: number; value?: string; ip?: string }[] } | undefined;
  const actual = new Set((extension?.altNames ?? []).map(subjectAltNameKey));
  const expected = new Set(subjectAltNames(names).map(subjectAltNameKey));
  return actual.size === expected.size && [...expected].every((key) => actual.has(key));
}

/** True when the stored server certificate can be served as is for these names. */
function serverCertificateIsCurrent(certPem: string, keyPem: string, caCertPem: string, names: readonly string[]): boolean {
  try {
    const certificate = new X509Certificate(certPem);
    const ca = new X509Certificate(caCertPem);
    if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey)) return false;
    if (!certificate.checkPrivateKey(createPrivateKey(keyPem))) return false;
    if (Date.parse(certificate.validTo) - Date.now() < SERVER_RENEWAL_DAYS * DAY_MS) return false;
    return sameNameSet(certPem, names);
  } catch {
    return false;
  }
}

const PRIVATE_FILE_MODE = 0o600;
const PUBLIC_FILE_MODE = 0o644;

export class CertificateAuthority {
  readonly caCertPath: string;

  private constructor(
    tlsDirectory: string,
    readonly caCertPem: string,
    private readonly caKeyPem: string,
    readonly serverCertificate: IssuedCertificate,
  ) {
    this.caCertPath = path.join(tlsDirectory, 'ca.crt');
  }

  /**
   * Loads the CA and server certificate from `<dataDir>/tls/`, creating what is missing. The server
   * certificate covers localhost, 127.0.0.1, ::1 and `hostnames`, and is reissued when that set changes.
   */
  static async loadOrCreate(dataDir: string, hostnames: string[] = []): Promise<CertificateAuthority> {
    const tlsDirectory = path.join(dataDir, 'tls');
    await fs.mkdir(tlsDirectory, { recursive: true, mode: 0o700 });
    const files = {
      caCert: path.join(tlsDirectory, 'ca.crt'),
      caKey: path.join(tlsDirectory, 'ca.key'),
      serverCert: path.join(tlsDirectory, 'server.crt'),
      serverKey: path.join(tlsDirectory, 'server.key'),
    };

    let caCertPem = await readFileIfPresent(files.caCert);
    let caKeyPem = await readFileIfPresent(files.caKey);
    if (caCertPem === undefined || caKeyPem === undefined) {
      // Half a CA cannot sign or be trusted: start over. The key is written first, so a crash
      // between the two writes leaves a key without a certificate, which lands here again.
      ({ caCertPem, caKeyPem } = createCertificateAuthority());
      await writeFileAtomic(files.caKey, caKeyPem, { mode: PRIVATE_FILE_MODE });
      await writeFileAtomic(files.caCert, caCertPem, { mode: PUBLIC_FILE_MODE });
    } else {
      // A mismatched pair is somebody's edit; replacing it would silently invalidate every device certificate.
      const problem = describeInvalidCertificateAuthority(caCertPem, caKeyPem);
      if (problem) throw new Error(`${files.caCert} and ${files.caKey}: ${problem}`);
    }

    const names = normalizeServedNames(hostnames);
    const storedServerCertPem = await readFileIfPresent(files.serverCert);
    const storedServerKeyPem = await readFileIfPresent(files.serverKey);
    let serverCertificate: IssuedCertificate;
    if (storedServerCertPem !== undefined && storedServerKeyPem !== undefined && serverCertificateIsCurrent(storedServerCertPem, storedServerKeyPem, caCertPem, names)) {
      serverCertificate = issuedCertificate(storedServerCertPem, storedServerKeyPem);
    } else {
      serverCertificate = issueServerCertificate(caCertPem, caKeyPem, names);
      await writeFileAtomic(files.serverKey, serverCertificate.keyPem, { mode: PRIVATE_FILE_MODE });
      await writeFileAtomic(files.serverCert, serverCertificate.certPem, { mode: PUBLIC_FILE_MODE });
    }
    return new CertificateAuthority(tlsDirectory, caCertPem, caKeyPem, serverCertificate);
  }

  /** A TLS client certificate for a cert-auth device: CN = productId + deviceName, O and OU = productId. */
  issueClientCertificate(productId: string, deviceName: string): IssuedCertificate {
    const keyPair = generateRsaKeyPair();
    const certPem = signCertificate(
      {
        subject: [
          { name: 'commonName', value: `${productId}${deviceName}` },
          { name: 'organizationName', value: productId },
          { shortName: 'OU', value: productId },
        ],
        publicKeyPem: keyPair.publicKeyPem,
        lifetimeDays: CLIENT_LIFETIME_DAYS,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', clientAuth: true },
        ],
        issuer: { certificate: forge.pki.certificateFromPem(this.caCertPem), privateKeyPem: this.caKeyPem },
      },
      keyPair.privateKeyPem,
    );
    return issuedCertificate(certPem, keyPair.privateKeyPem);
  }
}

function createCertificateAuthority(): { caCertPem: string; caKeyPem: string } {
  const keyPair = generateRsaKeyPair();
  const caCertPem = signCertificate(
    {
      subject: [
        { name: 'commonName', value: 'IoT Hub Simulator CA' },
        { name: 'organizationName', value: ORGANIZATION },
      ],
      publicKeyPem: keyPair.publicKeyPem,
      lifetimeDays: CA_LIFETIME_DAYS,
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
      ],
    },
    keyPair.privateKeyPem,
  );
  return { caCertPem, caKeyPem: keyPair.privateKeyPem };
}

function issueServerCertificate(caCertPem: string, caKeyPem: string, names: readonly string[]): IssuedCertificate {
  const keyPair = generateRsaKeyPair();
  const certPem = signCertificate(
    {
      subject: [
        { name: 'commonName', value: names[0] },
        { name: 'organizationName', value: ORGANIZATION },
      ],
      publicKeyPem: keyPair.publicKeyPem,
      lifetimeDays: SERVER_LIFETIME_DAYS,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: subjectAltNames(names) },
      ],
      issuer: { certificate: forge.pki.certificateFromPem(caCertPem), privateKeyPem: caKeyPem },
    },
    keyPair.privateKeyPem,
  );
  return issuedCertificate(certPem, keyPair.privateKeyPem);
}

function describeInvalidCertificateAuthority(caCertPem: string, caKeyPem: string): string | undefined {
  try {
    const certificate = new X509Certificate(caCertPem);
    if (!certificate.ca) return 'the certificate is not a CA certificate';
    if (!certificate.checkPrivateKey(createPrivateKey(caKeyPem))) return 'the key does not belong to the certificate';
    return undefined;
  } catch (error) {
    return `unreadable (${(error as Error).message})`;
  }
}

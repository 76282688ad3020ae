import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tls from 'tls';
import { createPrivateKey, X509Certificate } from 'crypto';
import { CertificateAuthority } from '../../simulator/certificate-authority';

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

async function readTlsFiles(dataDir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) files[name] = await fs.readFile(path.join(dataDir, 'tls', name), 'utf8');
  return files;
}

/** A real TLS handshake: the server presents `server`, the client trusts `caPem` and checks `servername`. */
function handshake(server: { certPem: string; keyPem: string }, caPem: string, host: string, servername?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // The client ends the connection; the server just completes the handshake.
    const tlsServer = tls.createServer({ cert: server.certPem, key: server.keyPem });
    tlsServer.listen(0, host, () => {
      const { port } = tlsServer.address() as { port: number };
      const socket = tls.connect({ host, port, ca: [caPem], servername }, () => {
        socket.end();
        tlsServer.close(() => resolve());
      });
      socket.once('error', (error) => tlsServer.close(() => reject(error)));
    });
  });
}

describe('simulator certificate authority', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certificate-authority-test-'));
  });

  afterEach(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('creates the CA and the server certificate under <dataDir>/tls with private keys readable by the owner only', async () => {
    const authority = await CertificateAuthority.loadOrCreate(dataDir);
    assert.equal(authority.caCertPath, path.join(dataDir, 'tls', 'ca.crt'));
    const files = await readTlsFiles(dataDir);
    assert.equal(files['ca.crt'], authority.caCertPem);
    assert.equal(files['server.crt'], authority.serverCertificate.certPem);
    assert.equal(files['server.key'], authority.serverCertificate.keyPem);
    for (const key of ['ca.key', 'server.key']) {
      const { mode } = await fs.stat(path.join(dataDir, 'tls', key));
      assert.equal(mode & 0o777, 0o600, `${key} mode ${(mode & 0o777).toString(8)}`);
    }
    const ca = new X509Certificate(authority.caCertPem);
    assert.equal(ca.ca, true);
    assert.equal(authority.serverCertificate.fingerprint256, new X509Certificate(authority.serverCertificate.certPem).fingerprint256);
  });

  it('issues a server certificate that TLS clients trusting the CA accept for localhost, 127.0.0.1, ::1 and the given hostnames', async () => {
    const authority = await CertificateAuthority.loadOrCreate(dataDir, ['iot.example.test', '192.0.2.7']);
    const server = new X509Certificate(authority.serverCertificate.certPem);
    assert.ok(server.checkIssued(new X509Certificate(authority.caCertPem)));
    assert.deepEqual(server.keyUsage, [SERVER_AUTH_OID]);
    assert.equal(server.checkHost('iot.example.test'), 'iot.example.test');
    assert.equal(server.checkIP('192.0.2.7'), '192.0.2.7');
    assert.equal(server.checkIP('::1'), '::1');
    assert.equal(server.checkHost('other.example.test'), undefined);
    await handshake(authority.serverCertificate, authority.caCertPem, '127.0.0.1');
    await handshake(authority.serverCertificate, authority.caCertPem, '127.0.0.1', 'localhost');
    await handshake(authority.serverCertificate, authority.caCertPem, '127.0.0.1', 'iot.example.test');
    await assert.rejects(handshake(authority.serverCertificate, authority.caCertPem, '127.0.0.1', 'other.example.test'), /altnames/i);
  });

  it('reuses the stored CA and server certificate on a later start', async () => {
    const first = await CertificateAuthority.loadOrCreate(dataDir, ['iot.example.test']);
    const before = await readTlsFiles(dataDir);
    const second = await CertificateAuthority.loadOrCreate(dataDir, ['IOT.example.test']);
    assert.deepEqual(await readTlsFiles(dataDir), before);
    assert.equal(second.caCertPem, first.caCertPem);
    assert.deepEqual(second.serverCertificate, first.serverCertificate);
  });

  it('reissues only the server certificate, from the same CA, when the hostnames change', async () => {
    const first = await CertificateAuthority.loadOrCreate(dataDir, ['iot.example.test']);
    const second = await CertificateAuthority.loadOrCreate(dataDir, ['mqtt.example.test']);
    assert.equal(second.caCertPem, first.caCertPem);
    assert.notEqual(second.serverCertificate.fingerprint256, first.serverCertificate.fingerprint256);
    const server = new X509Certificate(second.serverCertificate.certPem);
    assert.equal(server.checkHost('mqtt.example.test'), 'mqtt.example.test');
    assert.equal(server.checkHost('iot.example.test'), undefined);
    assert.equal((await readTlsFiles(dataDir))['server.crt'], second.serverCertificate.certPem);
    // Dropping the extra name is a change too.
    const third = await CertificateAuthority.loadOrCreate(dataDir);
    assert.equal(new X509Certificate(third.serverCertificate.certPem).checkHost('mqtt.example.test'), undefined);
  });

  it('refuses to start over a CA key that does not belong to the CA certificate', async () => {
    await CertificateAuthority.loadOrCreate(dataDir);
    const otherDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certificate-authority-other-'));
    try {
      await CertificateAuthority.loadOrCreate(otherDir);
      await fs.copyFile(path.join(otherDir, 'tls', 'ca.key'), path.join(dataDir, 'tls', 'ca.key'));
    } finally {
      await fs.rm(otherDir, { recursive: true, force: true });
    }
    await assert.rejects(CertificateAuthority.loadOrCreate(dataDir), /does not belong/);
  });

  it('issues client certificates naming the device, for client authentication, chained to the CA', async () => {
    const authority = await CertificateAuthority.loadOrCreate(dataDir);
    const issued = authority.issueClientCertificate('PRODUCTID1', 'dev1');
    const certificate = new X509Certificate(issued.certPem);
    assert.equal(issued.fingerprint256, certificate.fingerprint256);
    assert.match(certificate.subject, /^CN=PRODUCTID1dev1$/m);
    assert.match(certificate.subject, /^O=PRODUCTID1$/m);
    assert.match(certificate.subject, /^OU=PRODUCTID1$/m);
    assert.deepEqual(certificate.keyUsage, [CLIENT_AUTH_OID]);
    assert.equal(certificate.ca, false);
    const ca = new X509Certificate(authority.caCertPem);
    assert.ok(certificate.checkIssued(ca));
    assert.ok(certificate.verify(ca.publicKey));
    assert.ok(certificate.checkPrivateKey(createPrivateKey(issued.keyPem)));
    assert.notEqual(authority.issueClientCertificate('PRODUCTID1', 'dev1').fingerprint256, issued.fingerprint256);
  });
});

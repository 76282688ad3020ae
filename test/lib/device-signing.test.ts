import { strict as assert } from 'assert';
import { createHmac } from 'crypto';
import { DeviceSecretError, checkSignedConnection, checkUsername, decodeDeviceSecret, parseUsername, signConnection, signPassword } from '../../lib/device-signing';

const SECRET = 'MDEyMzQ1Njc4OWFiY2RlZg==';
/** A username as the Python SDK builds it: sdkappid 21010406, expiry in milliseconds. */
const PYTHON_SDK_USERNAME = 'PRODUCTID1dev1;21010406;fvity;1795730968449';

describe('device signing', () => {
  it('matches the HMAC-SHA1 password the Python SDK computes for the same username and secret', () => {
    assert.equal(signPassword(PYTHON_SDK_USERNAME, SECRET, 'hmacsha1'), '1e57faa43b50c3169c1a83b9ffe6a4786e80dac7;hmacsha1');
  });

  it('signs with HMAC-SHA256 keyed by the decoded secret bytes by default', () => {
    const expected = createHmac('sha256', Buffer.from('0123456789abcdef', 'utf8')).update(PYTHON_SDK_USERNAME).digest('hex');
    assert.equal(signPassword(PYTHON_SDK_USERNAME, SECRET), `${expected};hmacsha256`);
  });

  it('refuses a device secret that is not base64 with a DeviceSecretError', () => {
    assert.throws(() => signPassword(PYTHON_SDK_USERNAME, 'not base64!'), DeviceSecretError);
    assert.throws(() => decodeDeviceSecret(''), DeviceSecretError);
    assert.throws(() => decodeDeviceSecret('abc'), DeviceSecretError);
  });

  it('reads the expiry as Unix seconds, as the cloud does, whatever its size', () => {
    assert.equal(parseUsername(PYTHON_SDK_USERNAME)?.expirySeconds, 1795730968449);
    assert.equal(parseUsername('PRODUCTID1dev1;12010126;abcde;1795730968')?.expirySeconds, 1795730968);
    assert.equal(parseUsername('PRODUCTID1dev1;12010126;abcde'), undefined);
  });

  it("accepts the Python SDK's expiry, its clock in milliseconds, after that moment has passed", () => {
    const signedAt = Date.UTC(2030, 0, 1);
    const username = `PRODUCTID1dev1;21010406;fvity;${signedAt}`;
    const password = signPassword(username, SECRET);
    assert.deepEqual(checkSignedConnection('PRODUCTID1dev1', username, password, SECRET, signedAt + 5000), { ok: true });
  });

  it('checks that a username names the client id, as for a certificate device', () => {
    assert.equal(checkUsername('PRODUCTID1dev1', 'PRODUCTID1dev1;12010126;abcde;1795730968').ok, true);
    assert.deepEqual(checkUsername('PRODUCTID1dev1', 'PRODUCTID1dev2;12010126;abcde;1795730968'), {
      ok: false,
      reason: 'username names client id PRODUCTID1dev2, not PRODUCTID1dev1',
    });
    assert.deepEqual(checkUsername('PRODUCTID1dev1', ''), { ok: false, reason: 'empty username' });
  });

  it('accepts its own signed connection and refuses it once expired or under another client id', () => {
    const now = Date.UTC(2030, 0, 1);
    const credentials = signConnection({ productId: 'PRODUCTID1', deviceName: 'dev1' }, SECRET, now, 60);
    assert.equal(credentials.clientId, 'PRODUCTID1dev1');
    assert.deepEqual(checkSignedConnection(credentials.clientId, credentials.username, credentials.password, SECRET, now), { ok: true });
    assert.deepEqual(checkSignedConnection(credentials.clientId, credentials.username, credentials.password, SECRET, now + 61_000), {
      ok: false,
      reason: 'signature expired',
    });
    assert.equal(checkSignedConnection('PRODUCTID1dev2', credentials.username, credentials.password, SECRET, now).ok, false);
  });
});

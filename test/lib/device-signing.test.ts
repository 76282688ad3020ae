import { strict as assert } from 'assert';
import { createHmac } from 'crypto';
import { DeviceSecretError, checkSignedConnection, decodeDeviceSecret, parseUsername, signConnection, signPassword } from '../../lib/device-signing';

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

  it('reads an expiry in milliseconds and one in seconds as the same instant', () => {
    assert.equal(parseUsername(PYTHON_SDK_USERNAME)?.expiresAtMs, 1795730968449);
    assert.equal(parseUsername('PRODUCTID1dev1;12010126;abcde;1795730968')?.expiresAtMs, 1795730968000);
    assert.equal(parseUsername('PRODUCTID1dev1;12010126;abcde'), undefined);
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

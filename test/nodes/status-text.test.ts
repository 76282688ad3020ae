import { strict as assert } from 'assert';
import { PACKAGE_NAME, parseStatusText, statusText } from '../../nodes/common/status-text';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const packageJson = require('../../../package.json') as { name: string };

describe('status texts as message keys', function () {
  it("name the catalog's namespace as the editor knows it: <package>/<node set>", function () {
    assert.equal(PACKAGE_NAME, packageJson.name);
    assert.equal(statusText('ota-verify.status.verifying'), `${packageJson.name}/ota-verify:ota-verify.status.verifying`);
    assert.equal(statusText('tencent-iot-device.status.connected'), `${packageJson.name}/tencent-iot-device:tencent-iot-device.status.connected`);
  });

  it("are what Node-RED's editor translates by itself when they carry no parameters: a key that starts with a letter", function () {
    const text = statusText('ota-verify.status.verifying');
    assert.match(text, /^[@a-zA-Z]/);
    assert.equal(text.split(':').length, 2, 'one namespace separator');
    assert.ok(!text.includes('?'));
  });

  it('carry parameters after the key, URI-encoded, that come back as they were', function () {
    const values = { version: '1.0.0-rc_2', percent: 45, odd: 'a&b=c?d:e %f __g__ 升级 …' };
    const text = statusText('ota-download.status.downloading', values);
    assert.equal(text.split(':').length, 2, "a value's ':' does not look like a second namespace");
    assert.ok(!text.includes('__'), "a value's __ does not look like a placeholder to the editor's i18next");
    assert.deepEqual(parseStatusText(text), {
      key: 'ota-download.status.downloading',
      parameters: { version: '1.0.0-rc_2', percent: '45', odd: 'a&b=c?d:e %f __g__ 升级 …' },
    });
    assert.equal(
      text,
      `${packageJson.name}/ota-download:ota-download.status.downloading?version=1.0.0-rc%5F2&percent=45&odd=${encodeURIComponent(values.odd).replace(/_/g, '%5F')}`,
    );
  });

  it('parse back a key without parameters', function () {
    assert.deepEqual(parseStatusText(statusText('tencent-iot-device.status.connected')), { key: 'tencent-iot-device.status.connected', parameters: {} });
  });

  it('are told apart from any other text', function () {
    for (const text of [
      'connected',
      'node-red:common.status.connected',
      'downloading 45%',
      `${packageJson.name}/ota-verify:ota-download.status.downloading`,
      `other-package/ota-download:ota-download.status.downloading?percent=1`,
      `${packageJson.name}/ota-download:ota-download.status.downloading?percent=%E0%A4%A`,
      `${packageJson.name}/ota-download:ota-download.status.downloading?=1`,
    ]) {
      assert.equal(parseStatusText(text), undefined, text);
    }
  });

  it('refuse a key that is no catalog key and a parameter name that is no plain name', function () {
    assert.throws(() => statusText('connected'), /not <catalog>\.<name>/);
    assert.throws(() => statusText('ns:ota-download.status.x'), /not <catalog>\.<name>/);
    assert.throws(() => statusText('ota-download.status.downloading', { 'a=b': 1 }), /plain name/);
  });
});

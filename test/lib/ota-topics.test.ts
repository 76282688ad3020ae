import { strict as assert } from 'assert';
import { otaReportTopic, otaUpdateTopic, parseOtaTopic } from '../../lib/ota-topics';

/** Topics of PROTOCOL.md §2, written out. */
const DEVICE = { productId: 'E69UADXUYY', deviceName: 'light1' };

describe('OTA topics', () => {
  it('reports on $ota/report/<productId>/<deviceName>', () => {
    assert.equal(otaReportTopic(DEVICE), '$ota/report/E69UADXUYY/light1');
  });

  it('listens on $ota/update/<productId>/<deviceName>', () => {
    assert.equal(otaUpdateTopic(DEVICE), '$ota/update/E69UADXUYY/light1');
  });

  it('keeps every character a device name may have, such as _-.:@', () => {
    const device = { productId: 'PRODUCT1', deviceName: 'gw_1-a.b:c@d' };
    assert.equal(otaReportTopic(device), '$ota/report/PRODUCT1/gw_1-a.b:c@d');
    assert.equal(otaUpdateTopic(device), '$ota/update/PRODUCT1/gw_1-a.b:c@d');
  });

  it("uses a sub-device's own productId and deviceName, as a gateway does for it", () => {
    const subDevice = { productId: 'SUBPROD001', deviceName: 'sensor7' };
    assert.equal(otaReportTopic(subDevice), '$ota/report/SUBPROD001/sensor7');
    assert.equal(otaUpdateTopic(subDevice), '$ota/update/SUBPROD001/sensor7');
  });

  it('reads the direction and the device back from either topic', () => {
    assert.deepEqual(parseOtaTopic('$ota/report/E69UADXUYY/light1'), { direction: 'report', productId: 'E69UADXUYY', deviceName: 'light1' });
    assert.deepEqual(parseOtaTopic('$ota/update/E69UADXUYY/light1'), { direction: 'update', productId: 'E69UADXUYY', deviceName: 'light1' });
  });

  const notOta = [
    'ota/report/E69UADXUYY/light1',
    '$OTA/report/E69UADXUYY/light1',
    '$ota/reports/E69UADXUYY/light1',
    '$ota/report_version/E69UADXUYY/light1',
    '$ota/report/E69UADXUYY',
    '$ota/report/E69UADXUYY/light1/extra',
    '$ota/report//light1',
    '$ota/report/E69UADXUYY/',
    'E69UADXUYY/light1/data',
    '',
  ];
  for (const topic of notOta) {
    it(`does not take ${JSON.stringify(topic)} for an OTA topic`, () => {
      assert.equal(parseOtaTopic(topic), undefined);
    });
  }
});

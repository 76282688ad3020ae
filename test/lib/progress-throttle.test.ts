import { strict as assert } from 'assert';
import { percentOf, ProgressThrottle } from '../../lib/progress-throttle';

describe('progress throttle', () => {
  let clock: number;
  let throttle: ProgressThrottle;

  beforeEach(() => {
    clock = 10_000;
    throttle = new ProgressThrottle({ intervalMs: 1000, now: () => clock });
  });

  it('reports 0 first, whatever the bytes already done', () => {
    assert.equal(throttle.next(500, 1000), 0);
  });

  it('reports nothing more within the interval, however much the percent moves', () => {
    throttle.next(0, 1000);
    clock += 999;
    assert.equal(throttle.next(900, 1000), undefined);
  });

  it('reports the floor percent once the interval has passed', () => {
    throttle.next(0, 1000);
    clock += 1000;
    assert.equal(throttle.next(139, 1000), 13);
  });

  it('reports nothing when the floor percent has not changed since the last report', () => {
    throttle.next(0, 1000);
    clock += 1000;
    assert.equal(throttle.next(130, 1000), 13);
    clock += 5000;
    assert.equal(throttle.next(139, 1000), undefined);
    assert.equal(throttle.next(140, 1000), 14);
  });

  it('measures the interval from the last report, not the last call', () => {
    throttle.next(0, 1000);
    clock += 600;
    assert.equal(throttle.next(100, 1000), undefined);
    clock += 600;
    assert.equal(throttle.next(200, 1000), 20);
    clock += 600;
    assert.equal(throttle.next(300, 1000), undefined);
  });

  it('always reports 100 at the end, even right after another report, and only once', () => {
    throttle.next(0, 1000);
    assert.equal(throttle.finish(), 100);
    assert.equal(throttle.finish(), undefined);
  });

  it('does not repeat 100 at the end when the last report already said 100', () => {
    throttle.next(0, 1000);
    clock += 1000;
    assert.equal(throttle.next(1000, 1000), 100);
    assert.equal(throttle.finish(), undefined);
  });

  it('uses one report a second by default', () => {
    const defaultThrottle = new ProgressThrottle({ now: () => clock });
    defaultThrottle.next(0, 100);
    clock += 999;
    assert.equal(defaultThrottle.next(50, 100), undefined);
    clock += 1;
    assert.equal(defaultThrottle.next(50, 100), 50);
  });

  it('computes percent as an integer floor from 0 to 100', () => {
    assert.equal(percentOf(0, 511774), 0);
    assert.equal(percentOf(511773, 511774), 99);
    assert.equal(percentOf(511774, 511774), 100);
    assert.equal(percentOf(2, 3), 66);
    assert.equal(percentOf(5, 0), 100);
  });
});

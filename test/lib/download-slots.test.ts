import { strict as assert } from 'assert';
import { DownloadSlots } from '../../lib/download-slots';

describe('DownloadSlots', function () {
  it('lets as many downloads run as the limit and the next one wait its turn, first come first served', async function () {
    const slots = new DownloadSlots(2);
    const first = await slots.acquire();
    const second = await slots.acquire();
    assert.equal(slots.full, true);
    const order: string[] = [];
    const third = slots.acquire().then((release) => (order.push('third'), release));
    const fourth = slots.acquire().then((release) => (order.push('fourth'), release));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, []);
    first();
    (await third)();
    second();
    (await fourth)();
    assert.deepEqual(order, ['third', 'fourth']);
    assert.equal(slots.full, false);
  });

  it('gives up a wait that is aborted, leaving the slot to the next in line', async function () {
    const slots = new DownloadSlots(1);
    const running = await slots.acquire();
    const cancelled = new AbortController();
    const waiting = slots.acquire(cancelled.signal);
    const next = slots.acquire();
    cancelled.abort(new Error('superseded'));
    await assert.rejects(waiting, /superseded/);
    running();
    const release = await next;
    release();
    release();
    assert.equal(slots.full, false, 'a slot given back twice counts once');
  });

  it('refuses a limit below 1', function () {
    assert.throws(() => new DownloadSlots(0), /at least 1/);
  });
});

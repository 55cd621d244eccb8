// Aborting a call (the browser went away) aborts the gateway request, which cancels the query.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { liveStack } from './harness.js';

const live = liveStack({ fakeArgs: ['--sql-delay', '30'] });

test('an AbortSignal cancels the statement on the warehouse', async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 500);
  await assert.rejects(live.client.query({ statement: 'SELECT 1' }, { signal: controller.signal }), { code: 'ABORTED' });
  const deadline = Date.now() + 8000;
  while (!live.stack.logs().includes('statement cancelled') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(live.stack.logs(), /statement cancelled/);
  assert.equal((await live.client.health()).status, 'ok');
});

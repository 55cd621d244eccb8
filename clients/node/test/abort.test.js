// Aborting a call (the browser went away) aborts the gateway request, which cancels the query.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createGatewayClient } from '../src/index.js';
import { startStack } from './harness.js';

let stack;
let client;

before(async () => {
  stack = await startStack({ fakeArgs: ['--sql-delay', '30'] });
  client = createGatewayClient({ url: stack.url, secret: stack.secret });
});

after(async () => {
  await client?.close();
  await stack?.stop();
});

test('an AbortSignal cancels the statement on the warehouse', async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 500);
  await assert.rejects(client.query({ statement: 'SELECT 1' }, { signal: controller.signal }), { code: 'ABORTED' });
  const deadline = Date.now() + 8000;
  while (!stack.logs().includes('statement cancelled') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(stack.logs(), /statement cancelled/);
  assert.equal((await client.health()).status, 'ok');
});

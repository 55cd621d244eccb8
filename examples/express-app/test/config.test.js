// GET /api/config: the page learns from it whether to show the local-mode banner.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { createApp } from '../server.js';

async function config(options) {
  const server = createApp(options).listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const response = await fetch(`http://127.0.0.1:${server.address().port}/api/config`);
    return { status: response.status, body: await response.json() };
  } finally {
    server.close();
  }
}

test('local follows GATEWAY_LOCAL=1 (what start.sh --local exports)', async (t) => {
  const saved = process.env.GATEWAY_LOCAL;
  t.after(() => {
    if (saved === undefined) delete process.env.GATEWAY_LOCAL;
    else process.env.GATEWAY_LOCAL = saved;
  });
  delete process.env.GATEWAY_LOCAL;
  assert.deepEqual(await config(), { status: 200, body: { local: false } });
  process.env.GATEWAY_LOCAL = '0';
  assert.deepEqual(await config(), { status: 200, body: { local: false } });
  process.env.GATEWAY_LOCAL = '1';
  assert.deepEqual(await config(), { status: 200, body: { local: true } });
});

// The client against a real gateway and the fake workspace: streaming, abort, errors.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { createGatewayClient } from '../src/index.js';
import { liveStack } from './harness.js';

// 100 ms per result link: a stream of 43 chunks (over 1 s) outlasts a caller who leaves after its
// first row, so the gateway has a statement left to cancel (with instant links it could send it
// all before it sees the caller leave).
const live = liveStack({
  gatewayEnv: { GATEWAY_AUTH_MODE: 'auto' },
  fakeArgs: ['--chunk-rows', '7', '--link-latency-ms', '100'],
});

test('health, readiness and identities', async () => {
  assert.equal((await live.client.health()).status, 'ok');
  assert.equal((await live.client.ready({ deep: true })).ready, true);
  assert.equal((await live.client.me()).user_name, 'gateway-service@example.com');
  assert.equal((await live.client.me({ userToken: 'dapi-local-alice' })).user_name, 'alice@example.com');
  const names = (await live.client.listCatalogs({ userToken: 'dapi-local-bob' })).map((c) => c.name);
  assert.ok(!names.includes('finance'));
});

test('a wrong secret is refused', async () => {
  const stranger = createGatewayClient({ url: live.stack.url, secret: 'wrong' });
  await assert.rejects(stranger.me(), { code: 'GATEWAY_UNAUTHORIZED', status: 401 });
  await stranger.close();
});

test('files stream both ways', async () => {
  const path = '/Volumes/main/app/files/node/stream.bin';
  const chunks = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
  const sent = createHash('sha256');
  chunks.forEach((c) => sent.update(c));
  const written = await live.client.writeFile(path, Readable.from(chunks), { overwrite: true });
  assert.equal(written.size, 40 * 64 * 1024);
  const stream = await live.client.readFile(path);
  assert.equal(stream.size, 40 * 64 * 1024);
  const received = createHash('sha256');
  for await (const chunk of stream) received.update(chunk);
  assert.equal(received.digest('hex'), sent.digest('hex'));
  await assert.rejects(live.client.writeFile(path, 'again'), { code: 'ALREADY_EXISTS', status: 409 });
  assert.equal((await live.client.readText('/Volumes/main/app/files/README.txt')).content.length > 0, true);
});

test('query returns typed rows; queryStream yields every row across chunks', async () => {
  const result = await live.client.query({
    statement: 'SELECT id, amount, paid FROM demo.shop.sales WHERE id <= :n ORDER BY id',
    parameters: { n: 2 },
  });
  assert.deepEqual(result.rows, [[1, '120.50', true], [2, '98.10', false]]);
  const rows = live.client.queryStream({ statement: 'SELECT pickup_zip FROM samples.nyctaxi.trips' });
  let count = 0;
  for await (const row of rows) {
    assert.equal(typeof row[0], 'number');
    count += 1;
  }
  assert.equal(count, 300);
  assert.equal(rows.meta.rowCount, 300);
  assert.equal(rows.meta.columns[0].name, 'pickup_zip');
});

test('breaking out of queryStream cancels the statement on the warehouse', async () => {
  const rows = live.client.queryStream({ statement: 'SELECT * FROM samples.nyctaxi.trips' });
  for await (const row of rows) {
    assert.ok(row);
    break;
  }
  const deadline = Date.now() + 5000;
  while (!live.stack.logs().includes('statement cancelled') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(live.stack.logs(), /statement cancelled/);
});

test('a query error is a GatewayError with the SQL state', async () => {
  await assert.rejects(live.client.query({ statement: 'SELECT * FROM nowhere' }), (err) => {
    assert.equal(err.code, 'SQL_ERROR');
    assert.equal(err.details.sql_state, '42P01');
    return true;
  });
});

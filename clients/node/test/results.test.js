// Reading results in bulk against a real gateway and the fake warehouse (7 rows a chunk):
// the Arrow stream through apache-arrow, and fetchResultStream resuming after cuts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DataType, RecordBatchReader } from 'apache-arrow';
import { createGatewayClient } from '../src/index.js';
import { cuttingProxy, liveStack } from './harness.js';

const ALICE = { userToken: 'dapi-local-alice' };
const NUMBERS = "SELECT i, 'row ' || i AS label FROM range(100) t(i) ORDER BY i"; // 15 chunks
const EXPECTED = Array.from({ length: 100 }, (_, i) => [i, `row ${i}`]);

const live = liveStack({ gatewayEnv: { GATEWAY_AUTH_MODE: 'auto' }, fakeArgs: ['--chunk-rows', '7'] });

async function finished(statement, call = ALICE) {
  const { statementId } = await live.client.submitQuery({ statement }, call);
  await live.client.waitForQuery(statementId, {}, call);
  return statementId;
}

/** Read every row through a proxy that applies `cuts`; returns the rows and the stream. */
async function throughProxy(statementId, cuts, opts = {}) {
  const proxy = await cuttingProxy(live.stack.url, cuts);
  const cut = createGatewayClient({ url: proxy.url, secret: live.stack.secret });
  try {
    const stream = cut.fetchResultStream(statementId, opts, ALICE);
    const rows = [];
    for await (const row of stream) rows.push(row);
    return { rows, meta: stream.meta, connections: proxy.connections };
  } finally {
    await cut.close();
    await proxy.close();
  }
}

/** A cut `n` bytes into the first NDJSON response on a connection. */
const intoNdjson = (n) => (sent) => {
  const at = sent.indexOf('application/x-ndjson');
  return at < 0 ? undefined : at + n;
};

test('queryArrow streams one Arrow IPC stream that apache-arrow reads, batch by batch', async () => {
  const stream = await live.client.queryArrow(
    { statement: "SELECT i, CAST(i AS DOUBLE) / 2 AS half, 'r' || i AS s, i % 2 = 0 AS even FROM range(50) t(i) ORDER BY i" },
    ALICE,
  );
  assert.equal(stream.contentType, 'application/vnd.apache.arrow.stream');
  assert.ok(stream.requestId);
  const reader = await RecordBatchReader.from(stream);
  const rows = [];
  let batches = 0;
  for await (const batch of reader) {
    batches += 1;
    if (batches === 1) {
      const [i, half, s, even] = batch.schema.fields.map((f) => f.type);
      assert.ok(DataType.isInt(i) && i.bitWidth === 64, `i is ${i}`);
      assert.ok(DataType.isFloat(half), `half is ${half}`);
      assert.ok(DataType.isUtf8(s), `s is ${s}`);
      assert.ok(DataType.isBool(even), `even is ${even}`);
    }
    for (const row of batch) rows.push(row.toJSON());
  }
  assert.ok(batches >= 8, `50 rows at 7 a chunk come in ${batches} batches`);
  assert.equal(rows.length, 50);
  assert.deepEqual(rows[7], { i: 7n, half: 3.5, s: 'r7', even: false });
  assert.deepEqual(rows.map((r) => Number(r.i)), Array.from({ length: 50 }, (_, i) => i));
});

test('fetchResultStream yields every row of a finished statement, from any chunk', async () => {
  const statementId = await finished(NUMBERS);
  const all = live.client.fetchResultStream(statementId, {}, ALICE);
  const rows = [];
  for await (const row of all) rows.push(row);
  assert.deepEqual(rows, EXPECTED);
  assert.deepEqual(all.meta.columns.map((c) => c.name), ['i', 'label']);
  assert.equal(all.meta.rowCount, 100);
  assert.equal(all.meta.truncated, false);
  const tail = [];
  for await (const row of live.client.fetchResultStream(statementId, { fromChunk: 14 }, ALICE)) tail.push(row);
  assert.deepEqual(tail, EXPECTED.slice(98));
});

test('a stream cut mid-chunk resumes from that chunk: every row once, in order', async () => {
  const statementId = await finished(NUMBERS);
  // Three cuts in a row, each inside a line, at different depths of the stream.
  const { rows, meta, connections } = await throughProxy(
    statementId, [intoNdjson(700), intoNdjson(333), intoNdjson(1201)],
  );
  assert.deepEqual(rows, EXPECTED);
  assert.equal(meta.resumes, 3);
  assert.equal(meta.rowCount, 100);
  assert.ok(connections >= 4);
});

test('a cut after the last chunk ends the stream without reopening past it', async () => {
  const statementId = await finished(NUMBERS);
  const last = Buffer.from('{"chunk_done":14}\n');
  const afterLast = (sent) => {
    const at = sent.indexOf(last);
    return at < 0 ? undefined : at + last.length;
  };
  const { rows, meta } = await throughProxy(statementId, [afterLast]);
  assert.deepEqual(rows, EXPECTED);
  assert.equal(meta.resumes, 1);
  assert.equal(meta.truncated, false);
});

test('cuts that let nothing through give up after maxResumes with a GatewayError', async () => {
  const statementId = await finished(NUMBERS);
  const early = Array.from({ length: 4 }, () => intoNdjson(10)); // inside the headers
  await assert.rejects(throughProxy(statementId, early, { maxResumes: 2 }), (err) => {
    assert.equal(err.name, 'GatewayError');
    assert.match(err.code, /^GATEWAY_/);
    return true;
  });
});

test('a reader can stop mid-chunk and go on later from meta.position', async () => {
  const statementId = await finished(NUMBERS);
  const rows = [];
  const first = live.client.fetchResultStream(statementId, {}, ALICE);
  for await (const row of first) {
    rows.push(row);
    if (rows.length === 10) break; // inside chunk 1 (7 rows a chunk)
  }
  assert.deepEqual(first.meta.position, { chunk: 1, row: 3 });
  const { chunk, row } = first.meta.position;
  for await (const r of live.client.fetchResultStream(statementId, { fromChunk: chunk, skipRows: row }, ALICE)) rows.push(r);
  assert.deepEqual(rows, EXPECTED);
});

// Statements that outlive a request, against a real gateway whose fake warehouse keeps each
// statement PENDING for 1 s, then RUNNING for 4 s: polling, cancelling, identity scoping.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { liveStack } from './harness.js';

const ALICE = { userToken: 'dapi-local-alice' };
const BOB = { userToken: 'dapi-local-bob' };

const live = liveStack({
    gatewayEnv: { GATEWAY_AUTH_MODE: 'auto' },
    fakeArgs: ['--chunk-rows', '7', '--sql-pending', '1', '--sql-delay', '4'],
  });

/** The statement's state on the warehouse itself, asked of the fake directly. */
async function warehouseState(statementId) {
  const response = await fetch(`${live.stack.fakeUrl}/api/2.0/sql/statements/${statementId}`, {
    headers: { authorization: 'Bearer dapi-local-service' },
  });
  return (await response.json()).status.state;
}

test('waitForQuery polls through PENDING and RUNNING to the SUCCEEDED status', async () => {
  const submitted = await live.client.submitQuery({ statement: 'SELECT i FROM range(20) t(i) ORDER BY i' }, ALICE);
  const states = [submitted.state];
  const done = await live.client.waitForQuery(submitted.statementId, { pollMs: 100, onStatus: (s) => states.push(s.state) }, ALICE);
  // In order, each seen once or more; RUNNING lasts 4 s, so polls at most 2.6 s apart see it.
  const seen = [...new Set(states)];
  assert.deepEqual(seen, ['PENDING', 'RUNNING', 'SUCCEEDED'].filter((s) => seen.includes(s)));
  assert.ok(seen.includes('RUNNING') && seen.at(-1) === 'SUCCEEDED', states.join());
  assert.equal(done.statementId, submitted.statementId);
  assert.equal(done.rowCount, 20);
  assert.equal(done.chunkCount, 3);
  assert.deepEqual(done.columns.map((c) => c.name), ['i']);
  const rows = [];
  for await (const row of live.client.fetchResultStream(submitted.statementId, {}, ALICE)) rows.push(row[0]);
  assert.deepEqual(rows, Array.from({ length: 20 }, (_, i) => i));
});

test('a statement is its submitter\'s alone: another identity gets STATEMENT_NOT_FOUND', async () => {
  const { statementId } = await live.client.submitQuery({ statement: 'SELECT 1' }, ALICE);
  const notFound = { code: 'STATEMENT_NOT_FOUND', status: 404 };
  await assert.rejects(live.client.queryStatus(statementId, BOB), notFound);
  await assert.rejects(live.client.waitForQuery(statementId, {}, BOB), notFound);
  await assert.rejects(live.client.fetchResultStream(statementId, {}, BOB).next(), notFound);
  await assert.rejects(live.client.cancelQuery(statementId, BOB), notFound);
  await assert.rejects(live.client.queryStatus(statementId), notFound); // the service identity too
  assert.equal((await live.client.queryStatus(statementId, ALICE)).statement_id, statementId);
  await live.client.cancelQuery(statementId, ALICE);
});

test('aborting waitForQuery cancels the statement on the warehouse', async () => {
  const { statementId } = await live.client.submitQuery({ statement: 'SELECT 1' }, ALICE);
  const controller = new AbortController();
  const onStatus = (status) => {
    if (status.state === 'RUNNING') controller.abort();
  };
  await assert.rejects(
    live.client.waitForQuery(statementId, { signal: controller.signal, pollMs: 100, onStatus }, ALICE),
    { name: 'GatewayError', code: 'ABORTED', status: 499 },
  );
  // The cancel is sent before waitForQuery rejects, so the warehouse already says so.
  assert.equal(await warehouseState(statementId), 'CANCELED');
  await assert.rejects(live.client.waitForQuery(statementId, {}, ALICE), { code: 'QUERY_CANCELED' });
});

test('waitForQuery gives up at timeoutMs with WAIT_TIMEOUT, leaving the statement running', async () => {
  const { statementId } = await live.client.submitQuery({ statement: 'SELECT 1' }, ALICE);
  await assert.rejects(live.client.waitForQuery(statementId, { timeoutMs: 1 }, ALICE), (err) => {
    assert.equal(err.code, 'WAIT_TIMEOUT');
    assert.equal(err.details.statement_id, statementId);
    return true;
  });
  assert.match(await warehouseState(statementId), /^(PENDING|RUNNING)$/);
  await assert.rejects(live.client.fetchResultStream(statementId, {}, ALICE).next(), { code: 'QUERY_RUNNING', status: 409 });
  assert.equal((await live.client.waitForQuery(statementId, {}, ALICE)).state, 'SUCCEEDED');
});

test('a statement that fails rejects waitForQuery with its SQL error', async () => {
  const { statementId } = await live.client.submitQuery({ statement: 'SELECT * FROM nowhere' }, ALICE);
  await assert.rejects(live.client.waitForQuery(statementId, {}, ALICE), (err) => {
    assert.equal(err.name, 'GatewayError');
    assert.equal(err.code, 'SQL_ERROR');
    assert.equal(err.details.sql_state, '42P01');
    return true;
  });
});

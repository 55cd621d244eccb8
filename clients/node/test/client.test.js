// Unit tests of the client's HTTP contract and error mapping, on undici's MockAgent.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, test } from 'node:test';
import { MockAgent } from 'undici';
import { createGatewayClient, GatewayError } from '../src/index.js';
import { freePort } from './harness.js';

const URL = 'http://127.0.0.1:8765';

function mocked() {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(URL);
  const client = createGatewayClient({ url: URL, secret: 's3cret', dispatcher: pool });
  return { agent, pool, client };
}

test('run posts the op with the secret, user token and request id, and returns the result', async () => {
  const { agent, pool, client } = mocked();
  pool.intercept({
    path: '/run',
    method: 'POST',
    headers: { 'x-gateway-secret': 's3cret', 'x-databricks-token': 'user-tok', 'x-request-id': 'r-1' },
    body: (body) => JSON.parse(body).op === 'list_schemas' && JSON.parse(body).catalog === 'main',
  }).reply(200, { result: [{ name: 'default' }] });
  const schemas = await client.listSchemas('main', { userToken: 'user-tok', requestId: 'r-1' });
  assert.deepEqual(schemas, [{ name: 'default' }]);
  agent.assertNoPendingInterceptors();
});

test('an error envelope becomes a GatewayError with code, status and request id', async () => {
  const { agent, pool, client } = mocked();
  pool.intercept({ path: '/run', method: 'POST' }).reply(404, {
    error: { code: 'NOT_FOUND', message: "Catalog 'x' does not exist.", status: 404, request_id: 'abc' },
  });
  await assert.rejects(client.listSchemas('x'), (err) => {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.status, 404);
    assert.equal(err.requestId, 'abc');
    assert.equal(err.message, "Catalog 'x' does not exist.");
    return true;
  });
  agent.assertNoPendingInterceptors();
});

test('a refused connection is GATEWAY_UNAVAILABLE / 503', async () => {
  const { agent, pool, client } = mocked();
  pool.intercept({ path: '/run', method: 'POST' })
    .replyWithError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8765'), { code: 'ECONNREFUSED' }));
  await assert.rejects(client.me(), { code: 'GATEWAY_UNAVAILABLE', status: 503 });
  agent.assertNoPendingInterceptors();
});

test('a non-envelope error body is still a GatewayError', async () => {
  const { agent, pool, client } = mocked();
  pool.intercept({ path: '/run', method: 'POST' }).reply(502, '<html>bad gateway</html>');
  await assert.rejects(client.me(), { code: 'GATEWAY_BAD_RESPONSE', status: 502 });
  agent.assertNoPendingInterceptors();
});

test('insane request ids are not sent', async () => {
  const { agent, pool, client } = mocked();
  pool.intercept({
    path: '/run',
    method: 'POST',
    headers: (headers) => !('x-request-id' in headers),
  }).reply(200, { result: {} });
  await client.me({ requestId: 'bad id\r\nx: y' });
  agent.assertNoPendingInterceptors();
});

test('nothing listens: GATEWAY_UNAVAILABLE from a real refused connection', async () => {
  const port = await freePort();
  const client = createGatewayClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 2000 });
  await assert.rejects(client.health(), { code: 'GATEWAY_UNAVAILABLE', status: 503 });
  await client.close();
});

test('a gateway that never answers: GATEWAY_TIMEOUT / 504 after timeoutMs', async () => {
  const server = createServer(() => {}); // accepts, never responds
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.closeAllConnections?.() || server.close());
  const client = createGatewayClient({ url: `http://127.0.0.1:${server.address().port}`, timeoutMs: 300 });
  await assert.rejects(client.me(), { code: 'GATEWAY_TIMEOUT', status: 504 });
  await client.close();
  server.closeAllConnections();
  server.close();
});

test("a call's own timeoutMs holds on the client's own pool, shorter than the client's", async () => {
  const server = createServer(() => {}); // accepts, never responds
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const client = createGatewayClient({ url: `http://127.0.0.1:${server.address().port}`, timeoutMs: 60_000 });
  await assert.rejects(client.me({ timeoutMs: 300 }), { code: 'GATEWAY_TIMEOUT', status: 504 });
  await client.close();
  server.closeAllConnections();
  server.close();
});

test('an aborted call is ABORTED', async () => {
  const server = createServer(() => {});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const client = createGatewayClient({ url: `http://127.0.0.1:${server.address().port}` });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(client.me({ signal: controller.signal }), { code: 'ABORTED' });
  await client.close();
  server.closeAllConnections();
  server.close();
});

test('traceparent and request id given per call are forwarded; a malformed traceparent is not', async () => {
  const { agent, pool, client } = mocked();
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  pool.intercept({ path: '/run', method: 'POST', headers: { traceparent, 'x-request-id': 'req-7' } })
    .reply(200, { result: { id: '1' } });
  pool.intercept({ path: '/run', method: 'POST', headers: (h) => !('traceparent' in h) })
    .reply(200, { result: { id: '1' } });
  await client.me({ traceparent, requestId: 'req-7' });
  await client.me({ traceparent: `${traceparent}\r\nx-gateway-secret: guess` });
  agent.assertNoPendingInterceptors();
});

test('queryArrow relays the bytes, and errors if they end without the end-of-stream marker', async () => {
  const { pool, client } = mocked();
  const END = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
  const ARROW = { 'content-type': 'application/vnd.apache.arrow.stream' };
  const accepts = { accept: 'application/vnd.apache.arrow.stream' };
  pool.intercept({ path: '/run', method: 'POST', headers: accepts }).reply(200, Buffer.concat([Buffer.from('batches'), END]), { headers: ARROW });
  const whole = await client.queryArrow({ statement: 'SELECT 1' });
  const received = [];
  for await (const chunk of whole) received.push(chunk);
  assert.deepEqual(Buffer.concat(received), Buffer.concat([Buffer.from('batches'), END]));
  assert.equal(whole.contentType, 'application/vnd.apache.arrow.stream');

  pool.intercept({ path: '/run', method: 'POST', headers: accepts }).reply(200, Buffer.from('batches, then nothing'), { headers: ARROW });
  const cut = await client.queryArrow({ statement: 'SELECT 1' });
  await assert.rejects(async () => {
    for await (const chunk of cut) assert.ok(chunk);
  }, { name: 'GatewayError', code: 'GATEWAY_BAD_RESPONSE' });
});

// The Express helpers: which identity is forwarded, and how errors become responses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callOptions, gatewayErrorHandler, GatewayError } from '../src/index.js';

const req = (headers) => ({ headers });

test('service mode never forwards the user token', () => {
  const call = callOptions(req({ 'x-forwarded-access-token': 'tok', 'x-request-id': 'r1' }), { authMode: 'service' });
  assert.deepEqual(call, { requestId: 'r1' });
});

test('user and auto modes forward x-forwarded-access-token, even empty (the gateway fails closed)', () => {
  for (const authMode of ['user', 'auto']) {
    assert.equal(callOptions(req({ 'x-forwarded-access-token': 'tok' }), { authMode }).userToken, 'tok');
    assert.equal(callOptions(req({ 'x-forwarded-access-token': '' }), { authMode }).userToken, '');
  }
  assert.equal(callOptions(req({}), { authMode: 'user' }).userToken, undefined);
});

test('client-supplied gateway headers are never forwarded', () => {
  const call = callOptions(req({ 'x-gateway-secret': 'guess', 'x-databricks-token': 'smuggled' }), { authMode: 'auto' });
  assert.deepEqual(call, {});
});

test('insane request ids are dropped', () => {
  assert.deepEqual(callOptions(req({ 'x-request-id': 'a b' }), { authMode: 'service' }), {});
});

test('the auth mode defaults to GATEWAY_AUTH_MODE and must be known', () => {
  const saved = process.env.GATEWAY_AUTH_MODE;
  process.env.GATEWAY_AUTH_MODE = 'user';
  try {
    assert.equal(callOptions(req({ 'x-forwarded-access-token': 't' })).userToken, 't');
  } finally {
    if (saved === undefined) delete process.env.GATEWAY_AUTH_MODE; else process.env.GATEWAY_AUTH_MODE = saved;
  }
  assert.throws(() => callOptions(req({}), { authMode: 'everyone' }));
});

function fakeResponse() {
  return {
    statusCode: 200, body: undefined, headers: {}, headersSent: false,
    status(code) { this.statusCode = code; return this; },
    json(body) { this.body = body; return this; },
    set(name, value) { this.headers[name] = value; return this; },
  };
}

test('gatewayErrorHandler keeps 4xx messages and explains an unreachable gateway', () => {
  const handler = gatewayErrorHandler({ log: {} });
  const res = fakeResponse();
  handler(new GatewayError({ code: 'NOT_FOUND', status: 404, message: 'gone', requestId: 'r' }), req({}), res, () => {});
  assert.equal(res.statusCode, 404);
  assert.deepEqual(res.body, { error: { code: 'NOT_FOUND', message: 'gone', status: 404, request_id: 'r' } });
  assert.equal(res.headers['x-request-id'], 'r');
  const down = fakeResponse();
  handler(new GatewayError({ code: 'GATEWAY_UNAVAILABLE', status: 503, message: 'x' }), req({}), down, () => {});
  assert.equal(down.statusCode, 503);
  assert.match(down.body.error.message, /not reachable/);
  assert.equal(down.body.error.status, 503);
});

test('every error body is the gateway envelope, spelled request_id, with an id that finds the log', () => {
  const logged = [];
  const handler = gatewayErrorHandler({ log: { error: (...args) => logged.push(args) } });
  const bug = fakeResponse();
  handler(new Error('secret detail'), req({ 'x-request-id': 'from-browser' }), bug, () => {});
  assert.equal(bug.statusCode, 500);
  assert.deepEqual(bug.body, {
    error: { code: 'INTERNAL_ERROR', message: 'Something went wrong.', status: 500, request_id: 'from-browser' },
  });
  assert.doesNotMatch(JSON.stringify(bug.body), /secret detail/);
  assert.match(logged[0][0], /from-browser/);
  const unnamed = fakeResponse();
  handler(new Error('x'), req({ 'x-request-id': 'bad id' }), unnamed, () => {});
  assert.match(unnamed.body.error.request_id, /^[0-9a-f-]{36}$/);
  assert.equal(unnamed.headers['x-request-id'], unnamed.body.error.request_id);
  const malformed = fakeResponse();
  const parseError = Object.assign(new SyntaxError('Unexpected token'), { status: 400, expose: true });
  handler(parseError, req({}), malformed, () => {});
  assert.equal(malformed.statusCode, 400);
  assert.equal(malformed.body.error.code, 'INVALID_JSON');
  assert.equal(logged.length, 2);
});

test('GatewayError keeps requestId in JS and serialises the gateway spelling', () => {
  const err = new GatewayError({
    code: 'SQL_ERROR', status: 400, message: 'bad', requestId: 'r9',
    details: { sql_state: '42P01' }, databricksErrorCode: 'BAD_REQUEST',
  });
  assert.equal(err.requestId, 'r9');
  assert.deepEqual(JSON.parse(JSON.stringify({ error: err })), {
    error: {
      code: 'SQL_ERROR', message: 'bad', status: 400, request_id: 'r9',
      details: { sql_state: '42P01' }, databricks_error_code: 'BAD_REQUEST',
    },
  });
});

test('traceparent and x-request-id from the Express request reach the gateway', async () => {
  const { MockAgent } = await import('undici');
  const { createGatewayClient } = await import('../src/index.js');
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get('http://127.0.0.1:8765');
  const client = createGatewayClient({ url: 'http://127.0.0.1:8765', secret: 's', dispatcher: pool });
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  pool.intercept({ path: '/run', method: 'POST', headers: { traceparent, 'x-request-id': 'from-express' } })
    .reply(200, { result: {} });
  const call = callOptions(req({ traceparent, 'x-request-id': 'from-express' }), { authMode: 'service' });
  assert.deepEqual(call, { requestId: 'from-express', traceparent });
  await client.me(call);
  agent.assertNoPendingInterceptors();
  assert.deepEqual(callOptions(req({ traceparent: 'not-a-trace' }), { authMode: 'service' }), {});
});

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
  handler(new GatewayError({ code: 'NOT_FOUND', status: 404, message: 'gone', requestId: 'r' }), {}, res, () => {});
  assert.equal(res.statusCode, 404);
  assert.deepEqual(res.body, { error: { code: 'NOT_FOUND', message: 'gone', requestId: 'r' } });
  const down = fakeResponse();
  handler(new GatewayError({ code: 'GATEWAY_UNAVAILABLE', status: 503, message: 'x' }), {}, down, () => {});
  assert.equal(down.statusCode, 503);
  assert.match(down.body.error.message, /not reachable/);
  const bug = fakeResponse();
  handler(new Error('secret detail'), {}, bug, () => {});
  assert.equal(bug.statusCode, 500);
  assert.doesNotMatch(JSON.stringify(bug.body), /secret detail/);
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

// Every error the example app sends is the gateway's envelope, spelled as the gateway spells it:
// `{ error: { code, message, status, request_id } }`, the id also in X-Request-Id.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { GatewayError } from 'databricks-gateway-client';
import { createApp } from '../server.js';

// A stand-in for the client (not the SDK): each method answers as the gateway would have.
const gateway = {
  async listSchemas(catalog) {
    if (catalog === 'boom') throw new TypeError('secret internals');
    throw new GatewayError({ code: 'NOT_FOUND', status: 404, message: `Catalog '${catalog}' does not exist.`, requestId: 'gw-7' });
  },
};

async function withApp(fn) {
  const server = createApp({ gateway, log: { error() {} } }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    return await fn(`http://127.0.0.1:${server.address().port}`);
  } finally {
    server.close();
  }
}

async function envelope(response) {
  const body = await response.json();
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'request_id', 'status']);
  assert.equal(body.error.status, response.status);
  assert.equal(body.error.request_id, response.headers.get('x-request-id'));
  return body.error;
}

test('the gateway\'s request id reaches the browser as request_id', () => withApp(async (base) => {
  const error = await envelope(await fetch(`${base}/api/schemas?catalog=nope`));
  assert.deepEqual(error, { code: 'NOT_FOUND', message: "Catalog 'nope' does not exist.", status: 404, request_id: 'gw-7' });
}));

test('errors raised in Express itself use the same envelope and the caller\'s request id', () => withApp(async (base) => {
  const missing = await envelope(await fetch(`${base}/api/schemas`, { headers: { 'x-request-id': 'page-1' } }));
  assert.deepEqual(missing, { code: 'INVALID_PARAMS', message: "Query parameter 'catalog' is required.", status: 400, request_id: 'page-1' });
  const route = await envelope(await fetch(`${base}/api/nowhere`));
  assert.equal(route.code, 'ROUTE_NOT_FOUND');
  assert.match(route.request_id, /^[0-9a-f-]{36}$/);
  const malformed = await envelope(await fetch(`${base}/api/query`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"statement":',
  }));
  assert.equal(malformed.code, 'INVALID_JSON');
  assert.equal(malformed.status, 400);
}));

test('an unexpected failure is a masked 500 with an id, not the exception text', () => withApp(async (base) => {
  const response = await fetch(`${base}/api/schemas?catalog=boom`);
  const error = await envelope(response);
  assert.equal(error.code, 'INTERNAL_ERROR');
  assert.doesNotMatch(JSON.stringify(error), /secret internals/);
}));

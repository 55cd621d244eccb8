// The Express path: the same Express route (list catalogs) served two ways, same fake, same run:
// through the reference app → Node client → gateway, versus the best a team could write without
// the gateway — the route calling the Databricks REST API itself through an undici keep-alive
// pool (the transport the gateway's own Node client uses; PAT, pagination). Both are measured
// from the same keep-alive undici pool in front of Express, in interleaved samples whose order
// rotates. Each route's inner call is also timed alone, without Express (node_client_gateway:
// the Node client → gateway; node_direct_client: undici → the fake), to split a route's time;
// and node_bare_relay, undici → the bare relay (relay.py: POST /run under the gateway's server
// stack, nothing else) → the fake: the floor of any Python hop of this shape.
// usage: node bench/express.mjs GATEWAY_URL FAKE_URL RELAY_URL SECRET TOKEN CALLS SAMPLES [FIRST]
// (FIRST: where the rotating order of the sides starts, 0 by default)
// prints: {"same_answer": bool, "express_gateway": [{p50_ms, p99_ms}…], "express_direct_client": […],
//          "node_client_gateway": […], "node_direct_client": […], "node_bare_relay": […]}
import { once } from 'node:events';
import { Pool } from '../clients/node/node_modules/undici/index.js';
import express from '../examples/express-app/node_modules/express/index.js';
import { createApp } from '../examples/express-app/server.js';
import { createGatewayClient } from '../clients/node/src/index.js';

const [gatewayUrl, fakeUrl, relayUrl, secret, token, callsArg, samplesArg, firstArg] = process.argv.slice(2);
const calls = Number(callsArg);
const samples = Number(samplesArg);
const first = Number(firstArg ?? 0);
const keepAlive = { connections: 16, keepAliveTimeout: 20_000, keepAliveMaxTimeout: 20_000 };

const databricks = new Pool(new URL(fakeUrl).origin, keepAlive);
async function listCatalogsDirect() {
  // The hand-written client's core: bearer token, follow next_page_token.
  const catalogs = [];
  let pageToken;
  do {
    const query = new URLSearchParams({ max_results: '0' });
    if (pageToken) query.set('page_token', pageToken);
    const response = await databricks.request({
      method: 'GET',
      path: `/api/2.1/unity-catalog/catalogs?${query}`,
      headers: { authorization: `Bearer ${token}` },
    });
    if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
    const body = await response.body.json();
    catalogs.push(...(body.catalogs ?? []));
    pageToken = body.next_page_token;
  } while (pageToken);
  return catalogs;
}

const relay = new Pool(new URL(relayUrl).origin, keepAlive);
async function listCatalogsRelay() {
  const response = await relay.request({
    method: 'POST',
    path: '/run',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ op: 'list_catalogs' }),
  });
  if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
  return (await response.body.json()).result;
}

const gateway = createGatewayClient({ url: gatewayUrl, secret });
const app = createApp({ gateway, authMode: 'service' });
const direct = express();
direct.get('/api/catalogs', async (req, res, next) => {
  try { res.json(await listCatalogsDirect()); } catch (err) { next(err); }
});
const servers = [app.listen(0, '127.0.0.1'), direct.listen(0, '127.0.0.1')];
await Promise.all(servers.map((s) => once(s, 'listening')));
const [appOrigin, directOrigin] = servers.map((s) => `http://127.0.0.1:${s.address().port}`);
const callers = [appOrigin, directOrigin].map((origin) => new Pool(origin, keepAlive));

async function get(pool) {
  const response = await pool.request({ method: 'GET', path: '/api/catalogs' });
  if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
  return response.body.json();
}
// The two calls each route makes, without Express around them: where a route's time goes.
const sides = {
  express_gateway: () => get(callers[0]),
  express_direct_client: () => get(callers[1]),
  node_client_gateway: () => gateway.listCatalogs(),
  node_direct_client: () => listCatalogsDirect(),
  node_bare_relay: () => listCatalogsRelay(),
};

async function block(fn) {
  const times = [];
  for (let i = 0; i < calls; i += 1) {
    const start = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return {
    p50_ms: times[Math.floor(times.length / 2)],
    p99_ms: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))],
  };
}

const names = Object.keys(sides);
const answers = await Promise.all(names.map((name) => sides[name]()));
const sameAnswer = JSON.stringify(answers[0].map((c) => c.name)) === JSON.stringify(answers[1].map((c) => c.name));
for (const name of names) for (let i = 0; i < 20; i += 1) await sides[name](); // warm-up
const results = Object.fromEntries(names.map((name) => [name, []]));
for (let i = 0; i < samples; i += 1) {
  const shift = (i + first) % names.length; // the order rotates: ABCD, BCDA, …
  const order = [...names.slice(shift), ...names.slice(0, shift)];
  for (const name of order) results[name].push(await block(sides[name]));
}
console.log(JSON.stringify({ same_answer: sameAnswer, ...results }));
servers.forEach((s) => s.close());
await Promise.all([...callers, databricks, relay].map((pool) => pool.close()));
await gateway.close();

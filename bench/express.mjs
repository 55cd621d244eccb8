// The Express path: the same Express route (list catalogs) served two ways, same fake, same run:
// through the reference app → Node client → gateway, versus the status quo a team would keep —
// the route calling the Databricks REST API itself with a hand-written fetch client (PAT,
// pagination). Both are measured from a keep-alive client in front of Express.
// usage: node bench/express.mjs GATEWAY_URL FAKE_URL SECRET TOKEN N
import { once } from 'node:events';
import express from '../examples/express-app/node_modules/express/index.js';
import { createApp } from '../examples/express-app/server.js';
import { createGatewayClient } from '../clients/node/src/index.js';

const [gatewayUrl, fakeUrl, secret, token, n] = process.argv.slice(2);
const samples = Number(n);

async function listCatalogsDirect() {
  // The ~380-line hand-written client's core: bearer token, follow next_page_token.
  const catalogs = [];
  let pageToken;
  do {
    const url = new URL('/api/2.1/unity-catalog/catalogs', fakeUrl);
    url.searchParams.set('max_results', '0');
    if (pageToken) url.searchParams.set('page_token', pageToken);
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    catalogs.push(...(body.catalogs ?? []));
    pageToken = body.next_page_token;
  } while (pageToken);
  return catalogs;
}

const gateway = createGatewayClient({ url: gatewayUrl, secret });
const app = createApp({ gateway, authMode: 'service' });
const statusQuo = express();
statusQuo.get('/api/catalogs', async (req, res, next) => {
  try { res.json(await listCatalogsDirect()); } catch (err) { next(err); }
});
const servers = [app.listen(0, '127.0.0.1'), statusQuo.listen(0, '127.0.0.1')];
await Promise.all(servers.map((s) => once(s, 'listening')));
const [appUrl, statusQuoUrl] = servers.map((s) => `http://127.0.0.1:${s.address().port}/api/catalogs`);

async function get(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}
const viaExpress = () => get(appUrl);
const viaStatusQuo = () => get(statusQuoUrl);

async function measure(fn) {
  for (let i = 0; i < 20; i += 1) await fn();
  const times = [];
  for (let i = 0; i < samples; i += 1) {
    const start = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const total = times.reduce((a, b) => a + b, 0);
  return {
    p50_ms: +times[Math.floor(times.length / 2)].toFixed(3),
    p99_ms: +times[Math.min(times.length - 1, Math.floor(times.length * 0.99))].toFixed(3),
    rps: +(times.length / (total / 1000)).toFixed(1),
  };
}

const sameAnswer = JSON.stringify((await viaExpress()).map((c) => c.name)) === JSON.stringify((await viaStatusQuo()).map((c) => c.name));
const viaGateway = await measure(viaExpress);
const direct = await measure(viaStatusQuo);
console.log(JSON.stringify({ same_answer: sameAnswer, express_gateway: viaGateway, express_direct_fetch: direct,
  p50_ratio: +(viaGateway.p50_ms / direct.p50_ms).toFixed(3) }));
servers.forEach((s) => s.close());
await gateway.close();

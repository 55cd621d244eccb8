// End to end: the very scripts/start.sh the container runs, in local mode, driven through
// every Express route, then stopped with SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../../clients/node/test/harness.js';
import { launch } from './browser.js';
import { findChromium, SKIP_MESSAGE } from './chromium.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let child;
let base;
let ports;
const output = [];

function processesMentioning(text) {
  const found = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(text) && Number(pid) !== process.pid) found.push(`${pid}: ${cmdline}`);
    } catch { /* gone meanwhile */ }
  }
  return found;
}

before(async () => {
  ports = { front: await freePort(), gateway: await freePort(), fake: await freePort() };
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('DATABRICKS_') || k.startsWith('GATEWAY_')) delete env[k];
  delete env.HOST;
  delete env.FRONT_HOST;
  Object.assign(env, {
    PORT: String(ports.front), GATEWAY_PORT: String(ports.gateway), GATEWAY_FAKE_PORT: String(ports.fake),
    GATEWAY_SKIP_INSTALL: '1', DATABRICKS_CONFIG_FILE: join(root, '.no-databrickscfg'),
  });
  child = spawn('bash', ['scripts/start.sh', '--local'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => output.push(d.toString()));
  child.stderr.on('data', (d) => output.push(d.toString()));
  base = `http://127.0.0.1:${ports.front}`;
  const deadline = Date.now() + 40_000;
  while (Date.now() < deadline) {
    assert.equal(child.exitCode, null, output.join(''));
    try {
      const response = await fetch(`${base}/api/health`);
      if (response.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`start.sh did not come up:\n${output.join('')}`);
});

after(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
});

async function get(path) {
  const response = await fetch(`${base}${path}`);
  return { status: response.status, body: await response.json() };
}

async function post(path, body) {
  const response = await fetch(`${base}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

test('health reports the gateway ready, and the banner says local mode', async () => {
  const { status, body } = await get('/api/health');
  assert.equal(status, 200);
  assert.equal(body.gateway.ready, true);
  assert.match(output.join(''), /LOCAL MODE/);
  assert.match(output.join(''), new RegExp(`"front server listening","host":"127\\.0\\.0\\.1","port":${ports.front}\\b`));
});

test('identity and catalog routes', async () => {
  assert.deepEqual((await get('/api/config')).body, { local: true });
  assert.equal((await get('/api/me')).body.user_name, 'gateway-service@example.com');
  assert.ok((await get('/api/catalogs')).body.some((c) => c.name === 'main'));
  assert.deepEqual((await get('/api/schemas?catalog=main')).body.map((s) => s.name), ['app', 'default', 'information_schema']);
  const missing = await get('/api/schemas');
  assert.equal(missing.status, 400);
  const denied = await get('/api/schemas?catalog=finance');
  assert.equal(denied.status, 403);
  assert.match(denied.body.error.message, /USE CATALOG/);
  const ensured = await post('/api/volumes/ensure', { catalog: 'main', schema: 'app', name: 'e2e' });
  assert.equal(ensured.status, 200);
  assert.equal(ensured.body.volume.path, '/Volumes/main/app/e2e');
});

test('files: list, streamed upload, streamed download', async () => {
  const listing = await get('/api/files?path=/Volumes/main/app/files');
  assert.ok(listing.body.entries.some((e) => e.name === 'README.txt'));
  const data = randomBytes(3 * 1024 * 1024);
  const path = encodeURIComponent('/Volumes/main/app/files/e2e/blob.bin');
  const put = await fetch(`${base}/api/files/content?path=${path}`, { method: 'PUT', body: data });
  assert.equal(put.status, 200);
  assert.equal((await put.json()).size, data.length);
  const again = await fetch(`${base}/api/files/content?path=${path}`, { method: 'PUT', body: 'x' });
  assert.equal(again.status, 409);
  const download = await fetch(`${base}/api/files/content?path=${path}`);
  assert.equal(download.status, 200);
  assert.equal(download.headers.get('x-content-type-options'), 'nosniff');
  assert.ok(Buffer.from(await download.arrayBuffer()).equals(data));
});

test('query as JSON and as a relayed NDJSON stream', async () => {
  const { status, body } = await post('/api/query', {
    statement: 'SELECT id FROM demo.shop.sales WHERE region = :r ORDER BY id', parameters: { r: 'north' },
  });
  assert.equal(status, 200);
  assert.deepEqual(body.rows, [[1], [3]]);
  const response = await fetch(`${base}/api/query/stream`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ statement: 'SELECT id FROM demo.shop.sales ORDER BY id' }),
  });
  assert.equal(response.headers.get('content-type'), 'application/x-ndjson');
  const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.slice(1, -1), [[1], [2], [3], [4], [5]]);
  assert.deepEqual(lines.at(-1), { row_count: 5, truncated: false });
  const bad = await post('/api/query', { statement: 'SELECT * FROM nowhere' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'SQL_ERROR');
  // The gateway's envelope, its request id included, reaches the browser under the same name.
  assert.equal(bad.body.error.status, 400);
  assert.match(bad.body.error.request_id, /^[\x21-\x7e]{1,128}$/);
  assert.equal(bad.body.error.requestId, undefined);
});

// No Chromium at all: a loud skip. A CHROMIUM_PATH / CHROME_PATH that points nowhere: a failure.
const browser = findChromium();
if (!browser.path && !browser.problem) console.error(SKIP_MESSAGE);

// In-page helpers for the browser test (each runs inside the page, so no closures).
const page$ = {
  items: () => [...document.querySelectorAll('#items a')].map((a) => [a.textContent, a.getAttribute('href')]),
  crumbs: () => [...document.querySelectorAll('#crumbs a, #crumbs [aria-current]')]
    .map((n) => [n.textContent, n.getAttribute('href') ?? 'current']),
  click: (selector, text) => {
    const link = [...document.querySelectorAll(selector)].find((a) => a.textContent === text);
    link?.click();
    return Boolean(link);
  },
  // The listing once the page shows `crumb` as the current place and has finished loading it.
  listed: (crumb) => {
    const current = document.querySelector('#crumbs [aria-current]')?.textContent;
    const done = document.querySelector('#items li, #browse-error .error, #items-empty:not([hidden])');
    return current === crumb && done ? [...document.querySelectorAll('#items a')].map((a) => a.textContent) : null;
  },
  error: (where) => {
    const box = document.querySelector(`${where} .error`);
    return box && {
      message: box.querySelector('strong').textContent,
      code: box.querySelector('.error-code code')?.textContent,
      requestId: box.querySelector('.error-request-id code')?.textContent,
    };
  },
  shown: (id) => (document.getElementById(id).hidden ? null : document.getElementById(id).textContent),
};

test('the page in headless Chromium: banner, clickable breadcrumbs, empty states, errors with code and request id', {
  skip: browser.path || browser.problem ? false : SKIP_MESSAGE,
}, async (t) => {
  assert.ok(browser.path, browser.problem);
  const chromium = await launch(browser.path);
  t.after(() => chromium.close());
  const page = await chromium.open(`${base}/`);

  assert.equal(await page.until(() => document.querySelector('.local-banner[role=alert]')?.textContent),
    'Local mode: fake Databricks workspace — data is not real');
  assert.equal(await page.until(() => /Signed in/.test(document.getElementById('who').textContent) && document.getElementById('who').textContent),
    'Signed in as Gateway Service (gateway-service@example.com)');
  const catalogs = await page.until(page$.listed, 'Catalogs');
  for (const name of ['main', 'samples', 'demo']) assert.ok(catalogs.includes(name), catalogs.join());
  assert.ok(!catalogs.includes('finance'));
  assert.ok((await page.evaluate(page$.items)).some(([name, href]) => name === 'main' && href === '#/Volumes/main'));

  // Down through the listing by clicking: catalog, schema, volume, folder.
  for (const [name, below] of [['main', 'app'], ['app', 'files'], ['files', 'e2e/'], ['e2e/', 'blob.bin']]) {
    assert.ok(await page.evaluate(page$.click, '#items a', name), `no link ${name}`);
    const listed = await page.until(page$.listed, name.replace(/\/$/, ''));
    assert.ok(listed.includes(below), `${name}: ${listed.join()}`);
  }
  assert.deepEqual(await page.evaluate(page$.crumbs), [
    ['Catalogs', '#/Volumes'], ['main', '#/Volumes/main'], ['app', '#/Volumes/main/app'],
    ['files', '#/Volumes/main/app/files'], ['e2e', 'current'],
  ]);
  assert.ok((await page.evaluate(page$.items)).some(([name, href]) => name === 'blob.bin'
    && href === `/api/files/content?path=${encodeURIComponent('/Volumes/main/app/files/e2e/blob.bin')}`));
  assert.equal(await page.evaluate(() => document.getElementById('upload-target').textContent), '/Volumes/main/app/files/e2e');

  // Back up by a breadcrumb.
  assert.ok(await page.evaluate(page$.click, '#crumbs a', 'app'));
  assert.ok((await page.until(page$.listed, 'app')).includes('e2e'));

  // An empty folder (the volume ensured above) says so, with a hint.
  await page.evaluate(() => { location.hash = '#/Volumes/main/app/e2e'; });
  assert.deepEqual(await page.until(page$.listed, 'e2e'), []);
  assert.match(await page.evaluate(page$.shown, 'items-empty'), /This folder is empty: upload a file/);

  // An error shows its message, its code and the request id to look up.
  await page.evaluate(() => { location.hash = '#/Volumes/finance'; });
  const denied = await page.until(page$.error, '#browse-error');
  assert.equal(denied.code, 'DATABRICKS_PERMISSION_DENIED');
  assert.match(denied.message, /USE CATALOG/);
  assert.match(denied.requestId, /^[\x21-\x7e]{8,128}$/);
  assert.equal(await page.evaluate(page$.shown, 'items-empty'), null);

  // Queries: no rows is a hint under the header, a failure an error with code and request id.
  const run = (sql) => page.evaluate((statement) => {
    document.getElementById('sql').value = statement;
    document.getElementById('run').click();
  }, sql);
  await run("SELECT id FROM demo.shop.sales WHERE region = 'nowhere'");
  assert.match(await page.until(page$.shown, 'result-empty'), /returned no rows/);
  assert.deepEqual(await page.evaluate(() => [...document.querySelectorAll('#result th')].map((th) => th.textContent)), ['id']);
  await run('SELECT region, count(*) AS n FROM demo.shop.sales GROUP BY region ORDER BY region');
  assert.equal(await page.until(() => document.querySelectorAll('#result tbody tr').length), 4);
  await run('SELECT * FROM nowhere');
  const failed = await page.until(page$.error, '#query-error');
  assert.equal(failed.code, 'SQL_ERROR');
  assert.match(failed.requestId, /^[\x21-\x7e]{8,128}$/);
  assert.equal(await page.evaluate(() => document.querySelectorAll('#result tr').length), 0);
});

test('SIGTERM stops everything within 15 s and leaves no process behind', async () => {
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const started = Date.now();
  child.kill('SIGTERM');
  const { code } = await exited;
  const seconds = (Date.now() - started) / 1000;
  assert.ok(seconds < 15, `took ${seconds} s`);
  assert.equal(code, 143);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(processesMentioning(`--port ${ports.fake}`), []);
  assert.deepEqual(processesMentioning('express-app/server.js').filter((p) => p.includes(String(ports.front))), []);
  await assert.rejects(fetch(`http://127.0.0.1:${ports.gateway}/health`));
  await assert.rejects(fetch(`${base}/api/health`));
});

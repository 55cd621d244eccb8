// The package as others get it: `npm pack`, installed into a scratch app, imported by name.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8'));

let scratch;
let packed;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'gateway-client-pack-'));
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: packageDir });
  [packed] = JSON.parse(stdout);
});

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('the tarball holds the code, the hand-written and generated types, and no tests', () => {
  const files = packed.files.map((f) => f.path);
  for (const file of ['package.json', 'src/index.js', 'src/express.js', 'src/ops.generated.js',
    'index.d.ts', 'express.d.ts', 'ops.generated.d.ts']) {
    assert.ok(files.includes(file), `${file} is not in the package`);
  }
  assert.ok(!files.some((f) => f.startsWith('test/')), 'tests are packed');
  const entries = Object.values(manifest.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e)));
  const targets = [manifest.main, manifest.types, ...entries];
  for (const target of targets) assert.ok(files.includes(target.replace(/^\.\//, '')), `${target} is missing`);
});

test('an ESM app installs the tarball and imports the package and its /express entry by name', { timeout: 180_000 }, async () => {
  const app = join(scratch, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  await install(app, join(scratch, packed.filename));
  await writeFile(join(app, 'main.js'), `
    import { createGatewayClient, GatewayError } from '${manifest.name}';
    import { callOptions, gatewayErrorHandler } from '${manifest.name}/express';
    const client = createGatewayClient({ url: 'http://127.0.0.1:9' });
    const methods = Object.keys(client).filter((k) => typeof client[k] === 'function').sort();
    const call = callOptions({ headers: { 'x-forwarded-access-token': 't' } }, { authMode: 'user' });
    const error = await client.me().catch((err) => err);
    await client.close();
    console.log(JSON.stringify({
      methods, call, handler: typeof gatewayErrorHandler(),
      error: error instanceof GatewayError ? error.code : String(error),
    }));
  `);
  const { stdout } = await run('node', ['main.js'], { cwd: app });
  const seen = JSON.parse(stdout);
  for (const name of ['run', 'me', 'listSchemas', 'query', 'readFile', 'writeFile', 'queryStream']) {
    assert.ok(seen.methods.includes(name), name);
  }
  assert.deepEqual(seen.call, { userToken: 't' });
  assert.equal(seen.handler, 'function');
  assert.equal(seen.error, 'GATEWAY_UNAVAILABLE'); // undici came along and made the call
});

/** `npm install` from the local cache when it can; the registry only when it must. */
async function install(app, tarball) {
  const quiet = ['--no-audit', '--no-fund', '--loglevel=error'];
  try {
    await run('npm', ['install', '--offline', ...quiet, tarball], { cwd: app });
  } catch {
    await run('npm', ['install', '--prefer-offline', ...quiet, tarball], { cwd: app });
  }
}

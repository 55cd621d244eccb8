// scripts/start.sh failure paths: a dying child takes the rest down; a bad config fails fast.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../../clients/node/test/harness.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

async function runStart(extraEnv, args = ['--local']) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('DATABRICKS_') || k.startsWith('GATEWAY_')) delete env[k];
  Object.assign(env, {
    PORT: String(await freePort()), GATEWAY_PORT: String(await freePort()),
    GATEWAY_FAKE_PORT: String(await freePort()), GATEWAY_SKIP_INSTALL: '1', ...extraEnv,
  });
  const child = spawn('bash', ['scripts/start.sh', ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  child.stdout.on('data', (d) => output.push(d.toString()));
  child.stderr.on('data', (d) => output.push(d.toString()));
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  return { code, output: output.join('') };
}

test('a front server that dies makes start.sh exit non-zero and stop the gateway', async () => {
  const { code, output } = await runStart({ FRONT_COMMAND: 'node -e "setTimeout(() => process.exit(3), 300)"' });
  assert.equal(code, 3, output);
  assert.match(output, /a child process exited/);
});

test('the gateway may not share the front server port', async () => {
  const port = String(await freePort());
  const { code, output } = await runStart({ PORT: port, GATEWAY_PORT: port });
  assert.notEqual(code, 0);
  assert.match(output, /both/);
});

test('a gateway that cannot start fails fast with a clear message', async () => {
  const { code, output } = await runStart({ GATEWAY_ALLOWED_ROOTS: '/etc' });
  assert.notEqual(code, 0);
  assert.match(output, /gateway exited during start-up/);
  assert.match(output, /GATEWAY_ALLOWED_ROOTS/);
});

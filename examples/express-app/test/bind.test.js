// The front server's default address: loopback, so a laptop run is not on the network.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const server = join(dirname(fileURLToPath(import.meta.url)), '..', 'server.js');

async function listening(env) {
  const child = spawn(process.execPath, [server], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  for await (const chunk of child.stdout) {
    text += chunk;
    const line = text.split('\n').find((l) => l.includes('front server listening'));
    if (line) return { child, ...JSON.parse(line) };
  }
  throw new Error(`server.js exited before listening: ${text}`);
}

function refused(host, port) {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2000 });
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(true));
    socket.once('timeout', () => { socket.destroy(); resolve(true); });
  });
}

test('server.js binds 127.0.0.1 when HOST is unset (and when it is empty)', async (t) => {
  for (const host of [undefined, '']) {
    const env = { ...process.env, PORT: '0' };
    delete env.HOST;
    if (host !== undefined) env.HOST = host;
    const { child, host: bound, port } = await listening(env);
    t.after(() => child.kill('SIGKILL'));
    assert.equal(bound, '127.0.0.1');
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
    const outside = Object.values(networkInterfaces()).flat().find((i) => i.family === 'IPv4' && !i.internal);
    if (outside) assert.ok(await refused(outside.address, port), `reachable on ${outside.address}:${port}`);
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
});

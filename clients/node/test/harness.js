// Starts the real fake workspace and a real gateway (Python processes) for live tests.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createGatewayClient } from '../src/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const python = process.env.GATEWAY_PYTHON ?? join(root, '.venv', 'bin', 'python');

function ephemeralFloor() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]) || 32768;
  } catch {
    return 32768; // Linux's default
  }
}

function canBind(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port for a child process to bind a moment later, chosen below the kernel's ephemeral range:
 * a port from listen(0) can go to another socket (a test running in parallel, an outgoing
 * connection) before the child binds it; one below the range never does, unless some process
 * asks for that very number.
 */
export async function freePort() {
  const floor = ephemeralFloor();
  for (let i = 0; i < 200; i += 1) {
    const port = 10_000 + Math.floor(Math.random() * (floor - 10_000));
    if (await canBind(port)) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

async function waitFor(url, child, logs, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited early:\n${logs.join('')}`);
    try {
      const response = await fetch(url);
      await response.arrayBuffer();
      if (response.ok) return; // anything else is not (yet) the server we started
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer:\n${logs.join('')}`);
}

function start(args, env) {
  const logs = [];
  const child = spawn(python, args, { cwd: root, env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => logs.push(d.toString()));
  child.stderr.on('data', (d) => logs.push(d.toString()));
  return { child, logs };
}

function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('DATABRICKS_') && !k.startsWith('GATEWAY_')) env[k] = v;
  }
  env.DATABRICKS_CONFIG_FILE = join(root, '.no-databrickscfg');
  return env;
}

/** Start fake + gateway; returns { url, secret, logs(), stop() }. */
export async function startStack({ gatewayEnv = {}, fakeArgs = [] } = {}) {
  const fakePort = await freePort();
  const fake = start(['-m', 'gateway.testing', '--port', String(fakePort), '--trips', '300', ...fakeArgs], {});
  await waitFor(`http://127.0.0.1:${fakePort}/.well-known/databricks-config`, fake.child, fake.logs);
  const port = await freePort();
  const secret = 'node-test-secret';
  const gateway = start(['-m', 'gateway'], {
    GATEWAY_PORT: String(port),
    GATEWAY_SECRET: secret,
    DATABRICKS_HOST: `http://127.0.0.1:${fakePort}`,
    DATABRICKS_TOKEN: 'dapi-local-service',
    DATABRICKS_WAREHOUSE_ID: 'fakewarehouse0001',
    GATEWAY_SDK_RETRY_TIMEOUT_SECONDS: '5',
    ...gatewayEnv,
  });
  await waitFor(`http://127.0.0.1:${port}/health`, gateway.child, gateway.logs);
  return {
    url: `http://127.0.0.1:${port}`,
    fakeUrl: `http://127.0.0.1:${fakePort}`,
    secret,
    logs: () => gateway.logs.join(''),
    async stop() {
      for (const { child } of [gateway, fake]) {
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          await new Promise((r) => child.once('exit', r));
        }
      }
    },
  };
}

/**
 * A stack (startStack's options) and a client for one test file: started before its tests,
 * stopped after them. The tests read `live.stack` and `live.client`.
 */
export function liveStack(options) {
  const live = { stack: undefined, client: undefined };
  before(async () => {
    live.stack = await startStack(options);
    live.client = createGatewayClient({ url: live.stack.url, secret: live.stack.secret });
  });
  after(async () => {
    await live.client?.close();
    await live.stack?.stop();
  });
  return live;
}

/**
 * A TCP proxy to `url` that cuts its first connections short: the i-th connection is closed
 * once `cuts[i](sent)` says so, given the response bytes relayed on it so far (a byte count,
 * or a decision on the text). Later connections pass untouched. `connections` counts them.
 */
export async function cuttingProxy(url, cuts) {
  const { hostname, port } = new URL(url);
  const proxy = { connections: 0, url: '', close: async () => {} };
  const sockets = new Set();
  const server = createServer((client) => {
    const cut = cuts[proxy.connections];
    proxy.connections += 1;
    const upstream = connect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.pipe(upstream);
    let sent = Buffer.alloc(0);
    upstream.on('data', (data) => {
      if (!cut) return void client.write(data);
      const room = cut(Buffer.concat([sent, data]));
      if (room === undefined || room >= sent.length + data.length) {
        sent = Buffer.concat([sent, data]);
        return void client.write(data);
      }
      // Relay up to the cut, then drop both sides: the client sees the connection break.
      client.end(data.subarray(0, Math.max(0, room - sent.length)), () => client.destroy());
      upstream.destroy();
    });
    upstream.on('end', () => client.end());
  });
  proxy.close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise((r) => server.close(r));
  };
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  return proxy;
}

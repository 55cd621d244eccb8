// The ablation section's caller: the same POST /run list_catalogs, sequential, from one undici
// keep-alive pool per server (the Node client's transport, without the client), to the gateway,
// the gateway with layers taken away (stripped.py) and the bare relay, in blocks whose order
// rotates from sample to sample.
// usage: node bench/ablation.mjs SECRET CALLS SAMPLES FIRST NAME=URL=PID...
// (FIRST: where the rotating order starts; PID: the server's, whose event-loop thread's CPU is
// read from /proc/PID/schedstat around each block, 0 for none)
// prints: {"NAME": [{p50_ms, p99_ms, loop_cpu_us}…], …}
import { readFileSync } from 'node:fs';
import { Pool } from '../clients/node/node_modules/undici/index.js';

const [secret, callsArg, samplesArg, firstArg, ...servers] = process.argv.slice(2);
const calls = Number(callsArg);
const samples = Number(samplesArg);
const first = Number(firstArg);
const keepAlive = { connections: 16, keepAliveTimeout: 20_000, keepAliveMaxTimeout: 20_000 };
const headers = { 'content-type': 'application/json', 'x-gateway-secret': secret };
const body = JSON.stringify({ op: 'list_catalogs' });

const pools = {};
const pids = {};
for (const server of servers) {
  const [name, url, pid] = server.split('=');
  pools[name] = new Pool(new URL(url).origin, keepAlive);
  pids[name] = Number(pid);
}

// Nanoseconds the main thread of `pid` has run on a CPU (Linux), or null.
function onCpuNs(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}

async function listCatalogs(pool) {
  const response = await pool.request({ method: 'POST', path: '/run', headers, body });
  if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
  return (await response.body.json()).result;
}

async function block(pool, pid) {
  const times = [];
  const cpuBefore = pid ? onCpuNs(pid) : null;
  for (let i = 0; i < calls; i += 1) {
    const start = process.hrtime.bigint();
    await listCatalogs(pool);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const cpuAfter = pid ? onCpuNs(pid) : null;
  times.sort((a, b) => a - b);
  return {
    p50_ms: times[Math.floor(times.length / 2)],
    p99_ms: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))],
    ...(cpuBefore !== null && cpuAfter !== null ? { loop_cpu_us: (cpuAfter - cpuBefore) / calls / 1000 } : {}),
  };
}

const names = Object.keys(pools);
for (const name of names) for (let i = 0; i < 20; i += 1) await listCatalogs(pools[name]); // warm-up
const results = Object.fromEntries(names.map((name) => [name, []]));
for (let i = 0; i < samples; i += 1) {
  const shift = (i + first) % names.length;
  const order = [...names.slice(shift), ...names.slice(0, shift)];
  for (const name of order) results[name].push(await block(pools[name], pids[name]));
}
console.log(JSON.stringify(results));
await Promise.all(Object.values(pools).map((pool) => pool.close()));

// Reference Express app: the backend a Databricks App would hand-write, done through the gateway.
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import {
  abortOnClose,
  callOptions,
  createGatewayClient,
  gatewayErrorHandler,
  GatewayError,
} from 'databricks-gateway-client';

const here = dirname(fileURLToPath(import.meta.url));
const RELAYED_FILE_HEADERS = [
  'content-type', 'content-length', 'last-modified', 'content-disposition',
  'content-security-policy', 'x-content-type-options',
];

export function createApp({
  gateway = createGatewayClient(),
  authMode = process.env.GATEWAY_AUTH_MODE ?? 'service',
  local = process.env.GATEWAY_LOCAL === '1',  // start.sh --local: the workspace is the fake one
  log = console,
} = {}) {
  const app = express();
  app.disable('x-powered-by');
  const json = express.json({ limit: '1mb' });
  const call = (req, res) => callOptions(req, { authMode, signal: abortOnClose(req, res) });
  const route = (handler) => (req, res, next) => handler(req, res).catch(next);
  const requireParam = (req, name) => {
    const value = req.query[name];
    if (typeof value !== 'string' || !value) {
      throw new GatewayError({ code: 'INVALID_PARAMS', status: 400, message: `Query parameter '${name}' is required.` });
    }
    return value;
  };

  app.get('/api/health', route(async (req, res) => {
    try {
      const ready = await gateway.ready({}, call(req, res));
      res.status(ready.ready ? 200 : 503).json({ status: ready.ready ? 'ok' : 'degraded', gateway: ready });
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      res.status(503).json({ status: 'degraded', gateway: { ready: false, reason: err.message } });
    }
  }));

  // What the page needs to know about this server (local: show the fake-workspace banner).
  app.get('/api/config', (req, res) => res.json({ local }));
  app.get('/api/me', route(async (req, res) => res.json(await gateway.me(call(req, res)))));
  app.get('/api/catalogs', route(async (req, res) => res.json(await gateway.listCatalogs(call(req, res)))));
  app.get('/api/schemas', route(async (req, res) => {
    res.json(await gateway.listSchemas(requireParam(req, 'catalog'), call(req, res)));
  }));
  app.get('/api/volumes', route(async (req, res) => {
    res.json(await gateway.listVolumes(requireParam(req, 'catalog'), requireParam(req, 'schema'), call(req, res)));
  }));
  app.post('/api/volumes/ensure', json, route(async (req, res) => {
    const { catalog, schema, name, comment } = req.body ?? {};
    res.json(await gateway.ensureVolume({ catalog, schema, name, comment }, call(req, res)));
  }));

  app.get('/api/files', route(async (req, res) => {
    res.json(await gateway.listDirectory(requireParam(req, 'path'), {}, call(req, res)));
  }));
  app.get('/api/files/content', route(async (req, res) => {
    const file = await gateway.readFile(requireParam(req, 'path'), {}, call(req, res));
    for (const name of RELAYED_FILE_HEADERS) {
      const value = file.gatewayHeaders[name];
      if (value) res.set(name, value);
    }
    await pipeline(file, res);
  }));
  // No body parser here: the upload streams from the browser through to Databricks.
  app.put('/api/files/content', route(async (req, res) => {
    const overwrite = req.query.overwrite === 'true';
    res.json(await gateway.writeFile(requireParam(req, 'path'), req, { overwrite }, call(req, res)));
  }));

  app.post('/api/query', json, route(async (req, res) => {
    res.json(await gateway.query(queryParams(req.body), call(req, res)));
  }));
  app.post('/api/query/stream', json, route(async (req, res) => {
    const stream = await gateway.queryNdjson(queryParams(req.body), call(req, res));
    res.type('application/x-ndjson');
    await pipeline(stream, res);
  }));

  app.use('/api', (req, res, next) => next(new GatewayError({ code: 'ROUTE_NOT_FOUND', status: 404, message: 'No such API route.' })));
  app.use(express.static(join(here, 'public')));
  app.use(gatewayErrorHandler({ log }));
  return app;
}

function queryParams(body) {
  const { statement, query, parameters, catalog, schema, row_limit: rowLimit, rows_as: rowsAs } = body ?? {};
  const params = { statement, query, parameters, catalog, schema, row_limit: rowLimit, rows_as: rowsAs };
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 3000);
  // Loopback unless told otherwise: the container and Databricks Apps set HOST=0.0.0.0 (via
  // start.sh's FRONT_HOST); a laptop run stays off the network.
  const host = process.env.HOST || '127.0.0.1';
  const server = createApp().listen(port, host, () => {
    const { address, port: bound } = server.address();
    console.log(JSON.stringify({ level: 'info', event: 'front server listening', host: address, port: bound }));
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

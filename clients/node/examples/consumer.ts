// A typed consumer of the client, checked by `npm run typecheck` (never run): it imports the
// package by its own name, through package.json "exports", exactly as an app would, so a
// declaration that drifts from the JS shows up here as a type error.
import { Readable } from 'node:stream';
import type { NextFunction, Request, Response } from 'express';

import {
  type CallOptions,
  type Catalog,
  type GatewayErrorBody,
  type QueryResult,
  type User,
  createGatewayClient,
  GatewayError,
} from 'databricks-gateway-client';
import { abortOnClose, callOptions, gatewayErrorHandler } from 'databricks-gateway-client/express';

const gateway = createGatewayClient({ url: 'http://127.0.0.1:8765', timeoutMs: 30_000 });

export async function tour(call: CallOptions): Promise<void> {
  const user: User = await gateway.me(call);
  const catalogs: Catalog[] = await gateway.listCatalogs(call);
  const schemas = await gateway.listSchemas(catalogs[0]?.name ?? 'main', call);
  console.log(user.user_name ?? user.id, catalogs.length, schemas.map((s) => s.full_name));

  // `run` ties each op name to its own params and result.
  const volumes = await gateway.run('list_volumes', { catalog: 'main', schema: 'default' }, call);
  const { volume, created } = await gateway.ensureVolume(
    { catalog: 'main', schema: 'default', name: 'uploads', volume_type: 'MANAGED' },
    call,
  );
  console.log(volumes.length, volume.full_name, created);

  const path = '/Volumes/main/default/uploads/hello.txt';
  const written: { path: string; size: number } = await gateway.writeFile(path, 'hello', { overwrite: true }, call);
  await gateway.writeFile(`${path}.copy`, Readable.from([new TextEncoder().encode('hi')]), {}, call);
  const { content, size } = await gateway.readText(path, { length: 5 }, call);
  console.log(written.size, content.length === size);

  const file = await gateway.readFile(path, {}, call);
  console.log(file.size, file.contentType, file.gatewayHeaders['content-disposition']);
  for await (const chunk of file) console.log((chunk as Uint8Array).byteLength);

  const info = await gateway.fileInfo(path, call);
  if (info.exists && !info.is_directory) {
    const { removed, kind } = await gateway.deleteFile(path, { recursive: false }, call);
    console.log(removed, kind satisfies 'file' | 'directory');
  }

  const result: QueryResult = await gateway.query(
    { statement: 'SELECT :n AS n', parameters: { n: 1 }, rows_as: 'objects', row_limit: 10 },
    call,
  );
  console.log(result.statement_id, result.columns.map((c) => c.name), result.row_count, result.truncated);

  const rows = gateway.queryStream({ query: 'top_customers', parameters: [{ name: 'limit', value: 5 }] }, call);
  for await (const row of rows) console.log(row.length);
  console.log(rows.meta.columns?.length, rows.meta.rowCount, rows.meta.truncated);

  const arrow = await gateway.queryArrow({ statement: 'SELECT 1 AS one' }, call);
  for await (const bytes of arrow) console.log((bytes as Uint8Array).byteLength, arrow.contentType);

  const ready = await gateway.ready({ deep: true }, call);
  console.log(ready.ready, ready.status, ready.reason);
  await gateway.close();
}

// An Express middleware: each request runs as its user (the Databricks Apps proxy's
// x-forwarded-access-token, forwarded per GATEWAY_AUTH_MODE), and is cancelled upstream if the
// browser leaves.
export async function catalogsRoute(req: Request, res: Response, next: NextFunction): Promise<void> {
  try {
    const call = callOptions(req, { authMode: 'user', signal: abortOnClose(req, res) });
    res.json(await gateway.listCatalogs(call));
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'USER_TOKEN_REQUIRED') {
      const body: GatewayErrorBody = { error: err.toJSON() };
      res.status(err.status).json(body);
      return;
    }
    next(err);
  }
}

// Longer than the Apps proxy lets a request last: submit, then let the browser poll. Each poll
// waits up to 60 s; the rows are read (resuming after any cut) once the statement SUCCEEDED.
export async function startReport(req: Request, res: Response): Promise<void> {
  const { statementId, state } = await gateway.submitQuery({ query: 'big_report' }, callOptions(req));
  res.status(202).json({ statementId, state });
}

export async function reportRows(req: Request, res: Response, next: NextFunction): Promise<void> {
  const statementId = String(req.params['id']);
  try {
    // No signal here: a browser that gives up on one poll must not cancel the statement.
    const done = await gateway.waitForQuery(statementId, { timeoutMs: 60_000 }, callOptions(req));
    res.type('application/x-ndjson');
    const call = callOptions(req, { signal: abortOnClose(req, res) }); // leaving stops the read
    const rows = gateway.fetchResultStream(statementId, { fromChunk: 0, maxResumes: 3 }, call);
    for await (const row of rows) res.write(`${JSON.stringify(row)}\n`);
    res.end(JSON.stringify({ rowCount: rows.meta.rowCount, of: done.rowCount, resumes: rows.meta.resumes }));
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'WAIT_TIMEOUT') {
      res.status(202).json({ statementId, state: err.details?.['state'] });
      return;
    }
    next(err);
  }
}

export const errors: (err: unknown, req: Request, res: Response, next: NextFunction) => void =
  gatewayErrorHandler({ log: console });

export function notFound(): GatewayError {
  return new GatewayError({ code: 'NOT_FOUND', status: 404, message: 'No such thing.' });
}

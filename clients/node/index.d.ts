import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

export type AuthMode = 'service' | 'user' | 'auto';

export interface GatewayClientOptions {
  /** Gateway base URL; default `http://127.0.0.1:${GATEWAY_PORT ?? 8765}` or GATEWAY_URL. */
  url?: string;
  /** Unix socket instead of TCP. */
  socketPath?: string;
  /** Shared secret sent as X-Gateway-Secret; default GATEWAY_SECRET. */
  secret?: string;
  /** Headers and idle-body timeout per call (ms); default 60000. */
  timeoutMs?: number;
  /** Keep-alive connections in the pool; default 16. */
  connections?: number;
  /** Injected undici dispatcher (tests: MockAgent). */
  dispatcher?: Dispatcher;
}

export interface CallOptions {
  /** The end user's Databricks token (forwarded as X-Databricks-Token). */
  userToken?: string;
  /** Request id to correlate logs (X-Request-Id). */
  requestId?: string;
  /** Abort the call (and the gateway's upstream work). */
  signal?: AbortSignal;
  timeoutMs?: number;
}

export declare class GatewayError extends Error {
  code: string;
  status: number;
  requestId?: string;
  details?: Record<string, unknown>;
  databricksErrorCode?: string;
}

// --- op params and results: keep in sync with GET /ops (a test checks the names) ----------

export interface User {
  id: string | null; user_name: string | null; display_name: string | null;
  emails: string[]; active: boolean | null; groups: string[];
}
export interface Catalog {
  name: string; comment?: string | null; owner?: string | null; catalog_type?: string | null; created_at?: number | null;
}
export interface Schema {
  name: string; full_name?: string | null; catalog_name?: string | null; comment?: string | null;
  owner?: string | null; created_at?: number | null;
}
export interface Volume {
  name: string; full_name?: string | null; catalog_name?: string | null; schema_name?: string | null;
  volume_type?: string | null; storage_location?: string | null; owner?: string | null;
  comment?: string | null; created_at?: number | null; path?: string | null;
}
export interface Entry { name: string; path: string; is_directory: boolean; size?: number | null; modified?: string | null }
export interface Listing { entries: Entry[]; next_page_token?: string | null }
export interface FileInfo {
  exists: boolean; path: string; is_directory: boolean; size?: number | null;
  modified?: string | null; content_type?: string | null;
}
export interface Column { name: string; type: string | null; type_text?: string | null; key?: string | null }
export type SqlValue = string | number | boolean | null;
export interface QueryParameter { name: string; value?: SqlValue; type?: string | null }
export interface QueryResult {
  statement_id: string; columns: Column[]; rows: unknown[][] | Record<string, unknown>[];
  row_count: number; truncated: boolean;
}

export interface Ops {
  me: { params: {}; result: User };
  list_catalogs: { params: {}; result: Catalog[] };
  list_schemas: { params: { catalog: string }; result: Schema[] };
  list_volumes: { params: { catalog: string; schema: string }; result: Volume[] };
  ensure_volume: {
    params: { catalog: string; schema: string; name: string; comment?: string | null;
      volume_type?: 'MANAGED' | 'EXTERNAL'; storage_location?: string | null };
    result: { volume: Volume; created: boolean };
  };
  list_directory: { params: { path: string; page_size?: number | null; page_token?: string | null }; result: Listing };
  create_directory: { params: { path: string }; result: { path: string } };
  file_info: { params: { path: string }; result: FileInfo };
  read_file: {
    params: { path: string; encoding?: 'utf-8' | null; offset?: number | null; length?: number | null };
    result: { content: string; size: number };
  };
  write_file: {
    params: { path: string; overwrite?: boolean; content?: string | null; content_base64?: string | null };
    result: { path: string; size: number };
  };
  delete_file: {
    params: { path: string; recursive?: boolean };
    result: { path: string; kind: 'file' | 'directory'; removed: number };
  };
  run_query: {
    params: {
      statement?: string | null; query?: string | null;
      parameters?: Record<string, SqlValue> | QueryParameter[] | null;
      warehouse_id?: string | null; catalog?: string | null; schema?: string | null;
      row_limit?: number | null; timeout_seconds?: number | null;
      rows_as?: 'arrays' | 'objects'; disposition?: 'INLINE' | 'EXTERNAL_LINKS';
    };
    result: QueryResult;
  };
}

export type OpName = keyof Ops;

export interface FileStream extends Readable {
  size: number; contentType?: string; lastModified?: string; requestId?: string;
  /** The gateway's response headers (content-disposition, nosniff, CSP for risky types). */
  gatewayHeaders: Record<string, string | string[] | undefined>;
}
export interface RowStream extends AsyncGenerator<unknown[], void, undefined> {
  meta: { columns?: Column[]; statementId?: string; rowCount?: number; truncated?: boolean };
}

export interface GatewayClient {
  run<K extends OpName>(op: K, params?: Ops[K]['params'], call?: CallOptions): Promise<Ops[K]['result']>;
  me(call?: CallOptions): Promise<User>;
  listCatalogs(call?: CallOptions): Promise<Catalog[]>;
  listSchemas(catalog: string, call?: CallOptions): Promise<Schema[]>;
  listVolumes(catalog: string, schema: string, call?: CallOptions): Promise<Volume[]>;
  ensureVolume(params: Ops['ensure_volume']['params'], call?: CallOptions): Promise<Ops['ensure_volume']['result']>;
  createDirectory(path: string, call?: CallOptions): Promise<{ path: string }>;
  listDirectory(path: string, opts?: { page_size?: number; page_token?: string }, call?: CallOptions): Promise<Listing>;
  fileInfo(path: string, call?: CallOptions): Promise<FileInfo>;
  deleteFile(path: string, opts?: { recursive?: boolean }, call?: CallOptions): Promise<Ops['delete_file']['result']>;
  readText(path: string, opts?: { offset?: number; length?: number }, call?: CallOptions): Promise<{ content: string; size: number }>;
  readFile(path: string, opts?: { offset?: number; length?: number }, call?: CallOptions): Promise<FileStream>;
  writeFile(
    path: string, data: Uint8Array | string | Readable | AsyncIterable<Uint8Array>,
    opts?: { overwrite?: boolean }, call?: CallOptions,
  ): Promise<{ path: string; size: number }>;
  query(params: Ops['run_query']['params'], call?: CallOptions): Promise<QueryResult>;
  queryStream(params: Ops['run_query']['params'], call?: CallOptions): RowStream;
  /** The raw NDJSON bytes of a streamed query, to relay without re-serialising. */
  queryNdjson(params: Ops['run_query']['params'], call?: CallOptions): Promise<Readable & { requestId?: string }>;
  health(call?: CallOptions): Promise<{ status: 'ok'; version: string }>;
  ready(opts?: { deep?: boolean }, call?: CallOptions): Promise<{ ready: boolean; status: string; reason?: string }>;
  listOps(call?: CallOptions): Promise<{ ops: Array<{ name: string; description: string; params: unknown; result: unknown }> }>;
  close(): Promise<void>;
}

export declare function createGatewayClient(options?: GatewayClientOptions): GatewayClient;

/** Call options (request id, user token per GATEWAY_AUTH_MODE, signal) from an Express request. */
export declare function callOptions(
  req: { get?(name: string): string | undefined; headers?: Record<string, string | string[] | undefined> },
  opts?: { authMode?: AuthMode; signal?: AbortSignal },
): CallOptions;
/** An AbortSignal that fires when the response closes before finishing. */
export declare function abortOnClose(req: unknown, res: { on(event: 'close', fn: () => void): unknown; writableFinished: boolean }): AbortSignal;
/** Express error middleware mapping GatewayError to an HTTP response. */
export declare function gatewayErrorHandler(opts?: { log?: { error?(e: unknown): void } }): (
  err: unknown, req: unknown, res: unknown, next: (err?: unknown) => void,
) => void;

// --- Hand-written (branch apps): tracing. Merges into CallOptions above; keep this block
// separate from generated declarations. ------------------------------------------------------
export interface CallOptions {
  /** W3C traceparent forwarded to the gateway (dropped unless well formed); its trace id is in
   * the gateway's log line. `callOptions(req)` takes it from the Express request. */
  traceparent?: string;
}

import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type {
  Column, OpMethods, OpName, OpParams, OpResult, QueryStatus, ReadFileParams, RunQueryParams,
  SubmitQueryParams, TextContent, WriteFileParams, WriteFileResult,
} from './ops.generated.js';

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

export interface GatewayErrorInit {
  code: string;
  status: number;
  /** Defaults to `code`. */
  message?: string;
  requestId?: string;
  details?: Record<string, unknown>;
  databricksErrorCode?: string;
  cause?: unknown;
}

export declare class GatewayError extends Error {
  constructor(init: GatewayErrorInit);
  name: 'GatewayError';
  code: string;
  status: number;
  requestId?: string;
  details?: Record<string, unknown>;
  databricksErrorCode?: string;
  /** The envelope's inside, spelled as the gateway spells it: `res.json({ error: err })`. */
  toJSON(): GatewayErrorFields;
}

/** What every error response carries, from the gateway and from `gatewayErrorHandler`. */
export interface GatewayErrorBody {
  error: GatewayErrorFields;
}
export interface GatewayErrorFields {
  code: string;
  message: string;
  status: number;
  /** Always set by the gateway and by `gatewayErrorHandler`; absent only on a GatewayError that never reached either. */
  request_id?: string;
  details?: Record<string, unknown>;
  databricks_error_code?: string;
}

// --- op params and results: generated from the op registry (python -m gateway.codegen) ----

export * from './ops.generated.js';

/** A SQL parameter's value (`parameters: { name: value }`). */
export type SqlValue = string | number | boolean | null;
/** Each op's params and result, keyed by op name (`Ops['list_schemas']['result']`). */
export type Ops = { [K in OpName]: { params: OpParams[K]; result: OpResult[K] } };

export interface FileStream extends Readable {
  size: number; contentType?: string; lastModified?: string; requestId?: string;
  /** The gateway's response headers (content-disposition, nosniff, CSP for risky types). */
  gatewayHeaders: Record<string, string | string[] | undefined>;
}
export interface RowStream extends AsyncGenerator<unknown[], void, undefined> {
  meta: { columns?: Column[]; statementId?: string; rowCount?: number; truncated?: boolean };
}

/** The Arrow IPC stream's bytes (for apache-arrow's `RecordBatchReader.from()`, or relayed). */
export interface ArrowStream extends Readable {
  requestId?: string;
  contentType?: string;
}

/** A submitted statement: what `waitForQuery` and `fetchResultStream` take. */
export interface SubmittedQuery {
  statementId: string;
  /** PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED or CLOSED */
  state: string;
}

/** A statement that SUCCEEDED, as `waitForQuery` resolves. */
export interface FinishedQuery {
  statementId: string;
  state: 'SUCCEEDED';
  columns: Column[];
  rowCount?: number;
  chunkCount: number;
  truncated: boolean;
}

export interface WaitOptions {
  /** Abort the wait: the statement is cancelled (best effort), then `ABORTED` is thrown. */
  signal?: AbortSignal;
  /** First poll interval (ms), growing 1.5x per poll up to 5 s; default 250. */
  pollMs?: number;
  /** Give up after this long with `WAIT_TIMEOUT` (the statement runs on); default no limit. */
  timeoutMs?: number;
  /** Every `query_status` answer, e.g. to report progress. */
  onStatus?: (status: QueryStatus) => void;
}

export interface FetchStreamOptions {
  /** The chunk to start at; default 0. */
  fromChunk?: number;
  /** Rows of `fromChunk` to skip (from an earlier stream's `meta.position.row`); default 0. */
  skipRows?: number;
  /** Reopenings in a row that yield nothing new before giving up; default 5. */
  maxResumes?: number;
}

export interface ResultRowStream extends AsyncGenerator<unknown[], void, undefined> {
  meta: {
    statementId: string; columns?: Column[]; rowCount: number; truncated?: boolean;
    /** How many times the stream was reopened after a cut. */
    resumes: number;
    /** Where the next row is: pass back as `{ fromChunk: chunk, skipRows: row }` to go on. */
    readonly position: { chunk: number; row: number };
  };
}

/** The client: one method per op (`OpMethods`, generated), the streaming helpers, health. */
export interface GatewayClient extends OpMethods {
  run<K extends OpName>(op: K, params?: OpParams[K], call?: CallOptions): Promise<OpResult[K]>;
  readText(path: string, opts?: Omit<ReadFileParams, 'path' | 'encoding'>, call?: CallOptions): Promise<TextContent>;
  readFile(path: string, opts?: Omit<ReadFileParams, 'path' | 'encoding'>, call?: CallOptions): Promise<FileStream>;
  writeFile(
    path: string, data: Uint8Array | string | Readable | AsyncIterable<Uint8Array>,
    opts?: Pick<WriteFileParams, 'overwrite'>, call?: CallOptions,
  ): Promise<WriteFileResult>;
  queryStream(params: RunQueryParams, call?: CallOptions): RowStream;
  /** The raw NDJSON bytes of a streamed query, to relay without re-serialising. */
  queryNdjson(params: RunQueryParams, call?: CallOptions): Promise<Readable & { requestId?: string }>;
  /** A query's rows as one Arrow IPC stream; errors (never ends quietly) if cut short. */
  queryArrow(params: RunQueryParams, call?: CallOptions): Promise<ArrowStream>;
  /** Start a statement that may outlive a request; only this identity can see it. */
  submitQuery(params: SubmitQueryParams, call?: CallOptions): Promise<SubmittedQuery>;
  /** Poll until the statement ends; rejects with its GatewayError if FAILED, CANCELED or CLOSED. */
  waitForQuery(statementId: string, opts?: WaitOptions, call?: CallOptions): Promise<FinishedQuery>;
  /** A finished statement's rows; reopens after a cut without skipping or repeating a row. */
  fetchResultStream(statementId: string, opts?: FetchStreamOptions, call?: CallOptions): ResultRowStream;
  health(call?: CallOptions): Promise<{ status: 'ok'; version: string }>;
  ready(opts?: { deep?: boolean }, call?: CallOptions): Promise<{ ready: boolean; status: string; reason?: string }>;
  listOps(call?: CallOptions): Promise<{ ops: Array<{ name: OpName; description: string; params: unknown; result: unknown }> }>;
  close(): Promise<void>;
}

export declare function createGatewayClient(options?: GatewayClientOptions): GatewayClient;

// The Express helpers, also importable alone from 'databricks-gateway-client/express'.
export { type AuthMode, abortOnClose, callOptions, gatewayErrorHandler } from './express.js';

// --- Hand-written: tracing. Merges into CallOptions above. ---------------------------------
export interface CallOptions {
  /** W3C traceparent forwarded to the gateway (dropped unless well formed); its trace id is in
   * the gateway's log line. `callOptions(req)` takes it from the Express request. */
  traceparent?: string;
}

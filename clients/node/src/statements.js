// Queries longer than a request may last: submit, wait (polling), read rows that resume.
//
// The Databricks Apps proxy cuts a request at ~120 s and a stream at ~5 minutes. A statement
// submitted with `submitQuery` lives on the warehouse regardless; `waitForQuery` polls it, and
// `fetchResultStream` reads its rows as NDJSON, reopening after a cut from the chunk it had
// reached (the gateway marks each finished chunk with a `{"chunk_done": n}` line).
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError, fromEnvelope, fromTransport } from './errors.js';
import { ndjsonValues } from './ndjson.js';

const NDJSON = 'application/x-ndjson';
const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELED', 'CLOSED']);
const MAX_POLL_MS = 5_000;
const CANCEL_TIMEOUT_MS = 10_000;
// A cut of the connection, not an answer: worth reopening. Any other GatewayError (an HTTP
// error envelope, or an `{"error"}` line for the statement itself) would only repeat.
const TRANSIENT = new Set(['GATEWAY_UNAVAILABLE', 'GATEWAY_TIMEOUT', 'GATEWAY_CLIENT_ERROR']);
// The one error line that is a cut too: the gateway ended the stream at its own deadline
// (GATEWAY_STREAM_TIMEOUT_SECONDS); the statement's result is still there to read on.
const RESUMABLE_LINES = new Set(['GATEWAY_TIMEOUT']);

/**
 * @param {{ run: Function, openStream: Function }} gateway the client's plumbing
 */
export function statementMethods({ run, openStream }) {
  /** Start a statement and return its handle at once. */
  async function submitQuery(params = {}, call = {}) {
    const { statement_id: statementId, state } = await run('submit_query', params, call);
    return { statementId, state };
  }

  /**
   * Poll `query_status` (backing off from `pollMs` to 5 s) until the statement ends. Resolves
   * with the SUCCEEDED status; rejects with the statement's GatewayError if it FAILED, was
   * CANCELED or CLOSED; with `WAIT_TIMEOUT` after `timeoutMs` (the statement keeps running:
   * wait again later); with `ABORTED` when `signal` fires, after cancelling the statement.
   */
  async function waitForQuery(statementId, opts = {}, call = {}) {
    const { pollMs = 250, timeoutMs = Infinity, onStatus } = opts;
    const signal = opts.signal ?? call.signal;
    const deadline = Date.now() + timeoutMs;
    let delay = pollMs;
    try {
      for (;;) {
        const status = await run('query_status', { statement_id: statementId }, { ...call, signal });
        onStatus?.(status);
        if (ENDED.has(status.state)) return settled(status, call.requestId);
        const left = deadline - Date.now();
        if (left <= 0) throw waitTimeout(statementId, status.state);
        await sleep(Math.min(delay, left), undefined, { signal });
        delay = Math.min(delay * 1.5, Math.max(pollMs, MAX_POLL_MS));
      }
    } catch (err) {
      if (!signal?.aborted) throw err;
      // Best effort: the caller is gone either way, so a failed cancel is not their error.
      await run('cancel_query', { statement_id: statementId }, { ...call, signal: undefined, timeoutMs: CANCEL_TIMEOUT_MS })
        .catch(() => undefined);
      throw aborted(signal, call.requestId);
    }
  }

  /**
   * Every row of a SUCCEEDED statement, from chunk `fromChunk` on, as an async iterator.
   *
   * Resuming after a cut (the connection breaks, or the stream ends without its final line):
   * rows are yielded as they arrive and counted per chunk; the stream is reopened at the chunk
   * being read and the rows of it already yielded are skipped. A finished statement's chunks
   * never change, so nothing is skipped or yielded twice, and nothing is buffered. After
   * `maxResumes` reopenings in a row that yield nothing new it gives up with the last error.
   * The same mechanism lets a caller stop and go on later: `meta.position` is where the next
   * row is, `{ chunk, row }`, to pass back as `{ fromChunk: chunk, skipRows: row }`.
   */
  function fetchResultStream(statementId, opts = {}, call = {}) {
    const { fromChunk = 0, skipRows = 0, maxResumes = 5 } = opts;
    const meta = {
      statementId, columns: undefined, rowCount: 0, truncated: undefined, resumes: 0,
      get position() {
        return { chunk, row: seen };
      },
    };
    let chunk = fromChunk; // the chunk being read
    let seen = skipRows; // rows of `chunk` already yielded (or skipped at the caller's word)

    async function* once() {
      const response = await openStream(
        { op: 'fetch_result', statement_id: statementId, chunk_index: chunk }, call, NDJSON,
      );
      try {
        let skip = seen;
        for await (const value of ndjsonValues(response.body)) {
          if (Array.isArray(value)) {
            if (skip > 0) {
              skip -= 1;
              continue;
            }
            seen += 1;
            meta.rowCount += 1;
            yield value;
          } else if (value.chunk_done !== undefined) {
            chunk = value.chunk_done + 1;
            seen = 0;
          } else if (value.error) {
            throw Object.assign(fromEnvelope(value, value.error.status ?? 502, response.requestId), { line: true });
          } else if (value.row_count !== undefined) {
            meta.truncated = value.truncated;
            return;
          } else {
            if (value.chunk_index !== chunk) throw badResponse(response.requestId);
            meta.columns = value.columns;
          }
        }
        throw new Error('The result stream ended before its last line.');
      } finally {
        if (!response.body.destroyed) response.body.destroy();
      }
    }

    async function* rows() {
      let idle = 0;
      for (;;) {
        const before = [chunk, seen];
        try {
          return yield* once();
        } catch (err) {
          if (!resumable(err) || call.signal?.aborted) throw asGatewayError(err);
          const progressed = chunk !== before[0] || seen !== before[1];
          idle = progressed ? 0 : idle + 1;
          if (idle > maxResumes) throw asGatewayError(err);
          meta.resumes += 1;
          try {
            if (!progressed) await sleep(100 * 2 ** idle, undefined, { signal: call.signal });
          } catch (abort) {
            throw asGatewayError(abort);
          }
          if (seen === 0 && chunk > fromChunk && (await pastLast())) return;
        }
      }
    }

    // Cut after the last chunk's `chunk_done`: reopening there would be refused as past the end.
    async function pastLast() {
      const status = await run('query_status', { statement_id: statementId }, call);
      if (chunk < (status.chunk_count ?? 0)) return false;
      meta.truncated = status.truncated ?? false;
      return true;
    }

    return Object.assign(rows(), { meta });
  }

  return { submitQuery, waitForQuery, fetchResultStream };
}

function settled(status, requestId) {
  if (status.state !== 'SUCCEEDED') {
    throw fromEnvelope({ error: status.error ?? { code: 'QUERY_CANCELED', status: 409 } }, 409, requestId);
  }
  return {
    statementId: status.statement_id,
    state: status.state,
    columns: status.columns ?? [],
    rowCount: status.row_count ?? undefined,
    chunkCount: status.chunk_count ?? 0,
    truncated: status.truncated ?? false,
  };
}

function resumable(err) {
  if (!(err instanceof GatewayError)) return true; // the body broke off, or ended early
  return err.line ? RESUMABLE_LINES.has(err.code) : TRANSIENT.has(err.code);
}

function asGatewayError(err) {
  return err instanceof GatewayError ? err : fromTransport(err);
}

function waitTimeout(statementId, state) {
  return new GatewayError({
    code: 'WAIT_TIMEOUT',
    status: 504,
    message: `The statement is still ${state}; wait for it again later.`,
    details: { statement_id: statementId, state },
  });
}

function aborted(signal, requestId) {
  return new GatewayError({ code: 'ABORTED', status: 499, message: 'The wait was aborted.', requestId, cause: signal.reason });
}

function badResponse(requestId) {
  return new GatewayError({
    code: 'GATEWAY_BAD_RESPONSE', status: 502, message: 'The result stream started at another chunk.', requestId,
  });
}

import { randomUUID } from 'node:crypto';
import { GatewayError } from './errors.js';
import { saneTraceparent } from './trace.js';

const SANE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const MODES = new Set(['service', 'user', 'auto']);

/**
 * Per-request call options for the gateway client, from an Express request.
 *
 * The user's token (`x-forwarded-access-token`, set by the Databricks Apps proxy) is forwarded
 * only when the auth mode is `user` or `auto` — the same GATEWAY_AUTH_MODE the gateway reads —
 * so a service-mode deployment never sends tokens the gateway would reject, and a user-mode one
 * never silently drops them. A well-formed `traceparent` and `x-request-id` are passed on for
 * correlation. Nothing else from the incoming request is forwarded: a client cannot smuggle an
 * X-Gateway-Secret or X-Databricks-Token header through.
 */
export function callOptions(req, { authMode = process.env.GATEWAY_AUTH_MODE ?? 'service', signal } = {}) {
  if (!MODES.has(authMode)) throw new Error(`Unknown GATEWAY_AUTH_MODE ${authMode}`);
  const call = {};
  const requestId = saneRequestId(header(req, 'x-request-id'));
  if (requestId) call.requestId = requestId;
  const traceparent = saneTraceparent(header(req, 'traceparent'));
  if (traceparent) call.traceparent = traceparent;
  if (authMode !== 'service') {
    const token = header(req, 'x-forwarded-access-token');
    if (token !== undefined) call.userToken = token;
  }
  if (signal) call.signal = signal;
  return call;
}

/** An AbortSignal that fires when the browser goes away before the response is done. */
export function abortOnClose(req, res) {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/**
 * Express error middleware: every error leaves as the gateway's envelope,
 * `{ error: { code, message, status, request_id } }`, the same id in `X-Request-Id`.
 *
 * A GatewayError keeps its status; a body-parser rejection (malformed JSON, too large) is the
 * caller's fault and says so; anything else is a 500 whose detail stays in the log, under the
 * request id the caller is shown — so a screenshot of the error finds the log line.
 */
export function gatewayErrorHandler({ log = console } = {}) {
  return (err, req, res, next) => {
    if (res.headersSent) {
      res.destroy(err);
      return;
    }
    const error = asGatewayError(err);
    const requestId = error.requestId ?? saneRequestId(header(req, 'x-request-id')) ?? randomUUID();
    if (!(err instanceof GatewayError) && error.code === 'INTERNAL_ERROR') log.error?.(`request ${requestId} failed:`, err);
    const status = error.status >= 400 && error.status < 600 ? error.status : 502;
    const message = error.code === 'GATEWAY_UNAVAILABLE'
      ? 'The Databricks gateway is not reachable; try again shortly.'
      : error.message;
    res.set('x-request-id', requestId);
    res.status(status).json({ error: { ...error.toJSON(), message, status, request_id: requestId } });
  };
}

// http-errors (body-parser's) that mark themselves safe to show, by the gateway's own codes.
const EXPOSED_CODES = { 413: 'BODY_TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE' };

function asGatewayError(err) {
  if (err instanceof GatewayError) return err;
  if (err?.expose === true && err.status >= 400 && err.status < 500) {
    return new GatewayError({ code: EXPOSED_CODES[err.status] ?? 'INVALID_JSON', status: err.status, message: err.message });
  }
  return new GatewayError({ code: 'INTERNAL_ERROR', status: 500, message: 'Something went wrong.' });
}

function saneRequestId(value) {
  return value && SANE_REQUEST_ID.test(value) ? value : undefined;
}

function header(req, name) {
  const value = typeof req.get === 'function' ? req.get(name) : req.headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}

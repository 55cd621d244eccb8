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
  const requestId = header(req, 'x-request-id');
  if (requestId && SANE_REQUEST_ID.test(requestId)) call.requestId = requestId;
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

/** Express error middleware: GatewayError → its status and a JSON body; anything else → 500. */
export function gatewayErrorHandler({ log = console } = {}) {
  return (err, req, res, next) => {
    if (res.headersSent) {
      res.destroy(err);
      return;
    }
    if (!(err instanceof GatewayError)) {
      log.error?.(err);
      res.status(500).json({ error: { code: 'INTERNAL_ERROR', message: 'Something went wrong.' } });
      return;
    }
    const message = err.code === 'GATEWAY_UNAVAILABLE'
      ? 'The Databricks gateway is not reachable; try again shortly.'
      : err.message;
    if (err.requestId) res.set('x-request-id', err.requestId);
    res.status(err.status >= 400 && err.status < 600 ? err.status : 502).json({
      error: { code: err.code, message, requestId: err.requestId },
    });
  };
}

function header(req, name) {
  const value = typeof req.get === 'function' ? req.get(name) : req.headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}

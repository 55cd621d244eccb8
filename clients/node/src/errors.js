/**
 * GatewayError: every failure the client reports, with a stable `code`, an HTTP `status`,
 * a `message` and the gateway's `requestId` when one was assigned.
 *
 * The property is `requestId` (JS naming); serialised it is the gateway's own envelope
 * spelling, so `res.json({ error: err })` sends what the gateway would have sent.
 */
export class GatewayError extends Error {
  constructor({ code, status, message, requestId, details, databricksErrorCode, cause } = {}) {
    super(message ?? code, cause ? { cause } : undefined);
    this.name = 'GatewayError';
    this.code = code;
    this.status = status;
    this.requestId = requestId;
    if (details !== undefined) this.details = details;
    if (databricksErrorCode !== undefined) this.databricksErrorCode = databricksErrorCode;
  }

  /** The inside of the error envelope, spelled as the gateway spells it (`request_id`). */
  toJSON() {
    const body = { code: this.code, message: this.message, status: this.status, request_id: this.requestId };
    if (this.details !== undefined) body.details = this.details;
    if (this.databricksErrorCode !== undefined) body.databricks_error_code = this.databricksErrorCode;
    return body;
  }
}

/** Build a GatewayError from the gateway's error envelope. */
export function fromEnvelope(body, status, requestId) {
  const error = body && typeof body === 'object' ? body.error : undefined;
  if (!error || typeof error !== 'object') {
    return new GatewayError({
      code: 'GATEWAY_BAD_RESPONSE',
      status: status >= 400 ? status : 502,
      message: `The gateway answered ${status} without an error body.`,
      requestId,
    });
  }
  return new GatewayError({
    code: error.code,
    status: error.status ?? status,
    message: error.message,
    requestId: error.request_id ?? requestId,
    details: error.details,
    databricksErrorCode: error.databricks_error_code,
  });
}

const UNAVAILABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED',
]);
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Translate a transport failure (undici or abort) into a GatewayError. */
export function fromTransport(err, requestId) {
  if (err instanceof GatewayError) return err;
  const code = err?.code ?? err?.cause?.code;
  if (err?.name === 'AbortError' || code === 'UND_ERR_ABORTED') {
    return new GatewayError({ code: 'ABORTED', status: 499, message: 'The request was aborted.', requestId, cause: err });
  }
  if (TIMEOUTS.has(code) || err?.name === 'TimeoutError') {
    return new GatewayError({ code: 'GATEWAY_TIMEOUT', status: 504, message: 'The gateway did not answer in time.', requestId, cause: err });
  }
  if (UNAVAILABLE.has(code)) {
    return new GatewayError({ code: 'GATEWAY_UNAVAILABLE', status: 503, message: 'The gateway is not reachable.', requestId, cause: err });
  }
  return new GatewayError({ code: 'GATEWAY_CLIENT_ERROR', status: 502, message: 'The gateway call failed.', requestId, cause: err });
}

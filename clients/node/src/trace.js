// W3C Trace Context: a traceparent is forwarded only when it is well formed (the gateway checks
// the rest), so a caller's header can never carry anything else onto the gateway request.
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[\x21-\x7e]*)?$/;

export function saneTraceparent(value) {
  return typeof value === 'string' && TRACEPARENT.test(value) ? value : undefined;
}

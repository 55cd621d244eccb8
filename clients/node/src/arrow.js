import { Transform, pipeline } from 'node:stream';
import { GatewayError } from './errors.js';

// An Arrow IPC stream ends with this marker (continuation token, zero length). A gateway that
// stops at its stream deadline, or a proxy that closes cleanly, ends the bytes early without
// it; readers may take such a stream for a complete, shorter one, so its absence is an error.
const END_OF_STREAM = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** The body's bytes as they come, erroring at the end unless the last 8 are the end marker. */
export function arrowChecked(body, requestId) {
  let tail = Buffer.alloc(0);
  const check = new Transform({
    transform(chunk, _encoding, done) {
      tail = Buffer.concat([tail, chunk]).subarray(-END_OF_STREAM.length);
      done(null, chunk);
    },
    flush(done) {
      done(tail.equals(END_OF_STREAM) ? null : truncated(requestId));
    },
  });
  // pipeline: an error of either side reaches whoever reads `check`, and destroying `check`
  // (the caller stops reading) destroys the body, closing the connection: the gateway then
  // cancels the statement.
  pipeline(body, check, () => {});
  return check;
}

function truncated(requestId) {
  return new GatewayError({
    code: 'GATEWAY_BAD_RESPONSE',
    status: 502,
    message: 'The Arrow stream ended without its end-of-stream marker: it was cut short.',
    requestId,
  });
}

// The `databricks-gateway-client/express` entry point: the Express helpers alone.
export { abortOnClose, callOptions, gatewayErrorHandler } from './index.js';
export type { AuthMode, CallOptions } from './index.js';

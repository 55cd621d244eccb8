export { createGatewayClient } from './client.js';
export { GatewayError } from './errors.js';
export { abortOnClose, callOptions, gatewayErrorHandler } from './express.js';

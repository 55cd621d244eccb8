import type { CallOptions } from './index.js';

export type AuthMode = 'service' | 'user' | 'auto';

/** Call options (request id, user token per GATEWAY_AUTH_MODE, signal) from an Express request. */
export declare function callOptions(
  req: { get?(name: string): string | undefined; headers?: Record<string, string | string[] | undefined> },
  opts?: { authMode?: AuthMode; signal?: AbortSignal },
): CallOptions;
/** An AbortSignal that fires when the response closes before finishing. */
export declare function abortOnClose(req: unknown, res: { on(event: 'close', fn: () => void): unknown; writableFinished: boolean }): AbortSignal;
/**
 * Express error middleware: every error answers `{ error: { code, message, status, request_id } }`
 * (`GatewayErrorBody`) with the same id in X-Request-Id; a GatewayError keeps its status, anything
 * unexpected is a 500 logged under that id.
 */
export declare function gatewayErrorHandler(opts?: { log?: { error?(e: unknown): void } }): (
  err: unknown, req: unknown, res: unknown, next: (err?: unknown) => void,
) => void;

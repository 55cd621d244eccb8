// Just enough of the Chrome DevTools Protocol to drive a page in the browser test: headless
// Chromium over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON), one tab,
// `evaluate` a function in it and `until` a function in it returns something truthy.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CALL_BOUND_MS = 30_000; // a hang guard, not a timing assertion

export async function launch(chromium) {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  const child = spawn(chromium, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (d) => stderr.push(d.toString()));
  const pending = new Map();
  let nextId = 0;
  let buffered = '';
  child.stdio[4].on('data', (data) => {
    buffered += data.toString();
    for (let end = buffered.indexOf('\0'); end >= 0; end = buffered.indexOf('\0')) {
      const message = JSON.parse(buffered.slice(0, end));
      buffered = buffered.slice(end + 1);
      pending.get(message.id)?.(message);
      pending.delete(message.id);
    }
  });
  child.once('exit', () => {
    for (const settle of pending.values()) settle({ error: { message: `chromium exited:\n${stderr.join('')}` } });
    pending.clear();
  });

  function send(method, params = {}, sessionId = undefined) {
    return new Promise((resolve, reject) => {
      const id = ++nextId;
      const guard = setTimeout(() => reject(new Error(`${method}: no answer from chromium`)), CALL_BOUND_MS);
      pending.set(id, (message) => {
        clearTimeout(guard);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result);
      });
      child.stdio[3].write(`${JSON.stringify({ id, method, params, sessionId })}\0`);
    });
  }

  async function open(url) {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    const run = async (expression) => {
      const { result, exceptionDetails } = await send('Runtime.evaluate', {
        expression, awaitPromise: true, returnByValue: true,
      }, sessionId);
      if (exceptionDetails) throw new Error(exceptionDetails.exception?.description ?? exceptionDetails.text);
      return result.value;
    };
    const page = {
      /** fn(...args) in the page; its (awaited) value, which must be JSON. */
      evaluate: (fn, ...args) => run(`(${fn})(...${JSON.stringify(args)})`),
      /** Wait for fn(...args) in the page to return something truthy, and return it. */
      until: (fn, ...args) => run(`(async () => {
        const deadline = Date.now() + ${CALL_BOUND_MS - 5_000};
        for (;;) {
          const value = await (${fn})(...${JSON.stringify(args)});
          if (value) return value;
          if (Date.now() > deadline) throw new Error('gave up waiting for: ' + ${JSON.stringify(String(fn))});
          await new Promise((r) => setTimeout(r, 50));
        }
      })()`),
    };
    // Page.navigate answers once the new document is committed, so what runs next runs in it.
    const { errorText } = await send('Page.navigate', { url }, sessionId);
    if (errorText) throw new Error(`navigating to ${url}: ${errorText}`);
    await page.until(() => document.readyState !== 'loading');
    return page;
  }

  async function close() {
    const exited = new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    // Ask Chromium to quit, so its helper processes end too; SIGKILL only if it will not.
    await Promise.race([send('Browser.close').catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    const force = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(force);
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
    } catch {
      // Best effort: a helper still writing leaves a temporary profile behind, not a failure.
    }
  }

  return { open, close };
}

// Find a Chromium for the browser test: CHROMIUM_PATH / CHROME_PATH, then the usual names on
// PATH, then the usual install paths. scripts/test.sh asks the same function before the suites.
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
export const COMMON_PATHS = [
  '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium', '/snap/bin/chromium',
  '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable', '/opt/google/chrome/chrome',
  '/Applications/Chromium.app/Contents/MacOS/Chromium',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
];
export const SKIP_MESSAGE = '!! browser test SKIPPED: no Chromium found (set CHROMIUM_PATH or apt-get install chromium)';

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

// { path } when found; { path: null, problem } when an explicit override is unusable;
// { path: null } when there is simply none.
export function findChromium(env = process.env) {
  for (const name of ['CHROMIUM_PATH', 'CHROME_PATH']) {
    const override = env[name];
    if (!override) continue;
    if (executable(override)) return { path: override };
    return { path: null, problem: `${name}=${override} is not an executable file` };
  }
  const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const name of NAMES) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (executable(candidate)) return { path: candidate };
    }
  }
  const path = COMMON_PATHS.find(executable);
  return { path: path ?? null };
}

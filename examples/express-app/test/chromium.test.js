// How the browser test finds its Chromium (the lookup scripts/test.sh shares).
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { findChromium } from './chromium.js';

function fakeBrowser(dir, name) {
  const path = join(dir, name);
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  return path;
}

test('CHROMIUM_PATH wins, then CHROME_PATH, then names on PATH', () => {
  const dir = mkdtempSync(join(tmpdir(), 'find-chromium-'));
  const override = fakeBrowser(dir, 'my-chrome');
  const onPath = fakeBrowser(dir, 'google-chrome-stable');
  assert.deepEqual(findChromium({ CHROMIUM_PATH: override, PATH: dir }), { path: override });
  assert.deepEqual(findChromium({ CHROME_PATH: override, PATH: dir }), { path: override });
  assert.deepEqual(findChromium({ PATH: dir }), { path: onPath });
});

test('an override that points nowhere is a problem, not a silent fallback', () => {
  const found = findChromium({ CHROMIUM_PATH: '/nonexistent/chromium', PATH: '' });
  assert.equal(found.path, null);
  assert.match(found.problem, /CHROMIUM_PATH=\/nonexistent\/chromium is not an executable file/);
});

test('a non-executable file on PATH does not count', () => {
  const dir = mkdtempSync(join(tmpdir(), 'find-chromium-'));
  writeFileSync(join(dir, 'chromium'), '');
  assert.notEqual(findChromium({ PATH: dir }).path, join(dir, 'chromium'));
});

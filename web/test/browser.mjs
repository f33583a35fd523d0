// The page's end-to-end test: headless Chromium through Playwright, on WebGPU (SwiftShader, the
// CPU, where there is no GPU). `bash scripts/web.sh test` builds, serves and runs this;
// by hand, against a page already served:
//
//   node web/test/browser.mjs http://127.0.0.1:8000/      (or QKV_WEB_URL=... node web/test/browser.mjs)
//
// Environment: QKV_CHROMIUM (the browser, default /usr/bin/chromium), QKV_WEB_TOKENS (tokens
// for the gpt2 run, default 16), QKV_WEB_RUN_TIMEOUT_S (that run's limit, default 300),
// QKV_WEB_SCREENSHOT (where the full-page screenshot goes, default web/screenshot.png).
//
// No WebGPU adapter is a failure, not a skip. Each check prints PASS or FAIL; the exit status
// is 0 only when every check passed. On a failure a screenshot goes to web/test-output/.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const webDir = join(here, '..');
const url = process.argv[2] || process.env.QKV_WEB_URL;
const executablePath = process.env.QKV_CHROMIUM || '/usr/bin/chromium';
const tokens = String(process.env.QKV_WEB_TOKENS || 16);
const runTimeoutMs = Number(process.env.QKV_WEB_RUN_TIMEOUT_S || 300) * 1000;
const screenshotPath = process.env.QKV_WEB_SCREENSHOT || join(webDir, 'screenshot.png');
const failureDir = join(webDir, 'test-output');
const shown = (p) => { const r = relative(process.cwd(), p); return r && !r.startsWith('..') ? r : p; };

// --enable-unsafe-webgpu is the one that matters: without it Linux Chromium's
// requestAdapter() returns null. The rest keep a test browser quiet and offline.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

if (!url) {
  console.error('usage: node web/test/browser.mjs URL   (or set QKV_WEB_URL); bash scripts/web.sh test serves and runs it');
  process.exit(2);
}
if (!existsSync(executablePath)) {
  console.error(`browser test: no Chromium at ${executablePath} (Debian: apt-get install chromium; or set QKV_CHROMIUM)`);
  process.exit(1);
}

const results = [];
function record(name, ok, detail) {
  results.push({ name, ok });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}
// Runs one check: fn returns a detail string (pass) or throws (fail).
async function check(name, fn) {
  try {
    return record(name, true, await fn());
  } catch (e) {
    return record(name, false, e && e.message ? e.message.split('\n')[0] : String(e));
  }
}
class CheckError extends Error {}
function fail(msg) { throw new CheckError(msg); }

const collapse = (s) => (s ?? '').replace(/\s+/g, ' ').trim();
const text = (page, sel) => page.locator(sel).first().textContent({ timeout: 5000 }).then((t) => (t ?? '').trim());

// Polls fn (a page function) until it returns a truthy value; the value is returned.
async function poll(page, fn, arg, timeout, what) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 100 })).jsonValue();
  } catch (e) {
    if (e.name === 'TimeoutError') fail(`timed out after ${timeout / 1000} s waiting for ${what}`);
    throw e;
  }
}

// Waits for an element's data-state to be one of `states`, or "error"; an error fails with the
// element's text.
async function waitState(page, sel, states, timeout, extra) {
  const got = await poll(page, ({ sel, states, extra }) => {
    const el = document.querySelector(sel);
    if (!el) return null;
    const state = el.getAttribute('data-state');
    if (state === 'error') return { state, text: el.textContent };
    if (!states.includes(state)) return null;
    if (extra) {
      const other = document.querySelector(extra.sel);
      if (!other || other.textContent.trim() !== extra.text) return null;
    }
    return { state, text: el.textContent };
  }, { sel, states, extra }, timeout, `${sel} data-state=${states.join('|')}${extra ? ` with ${extra.sel} = "${extra.text}"` : ''}`);
  if (got.state === 'error') fail(`${sel} data-state="error": ${collapse(got.text)}`);
  return got;
}

async function setInput(page, sel, value) {
  const input = page.locator(sel).first();
  await input.fill(String(value), { timeout: 5000 });
  await input.dispatchEvent('input');
  await input.dispatchEvent('change');
}

// Runs the "Run on this GPU" form on `p` and waits for the verdict to be done: its text and
// the report's, whitespace collapsed (an error state fails the check with its text).
async function runForm(p, { shape = 'gpt2', tokens: n, chunk = 'auto' }) {
  await p.selectOption('#shape', shape, { timeout: 5000 });
  await setInput(p, '#tokens', n);
  await setInput(p, '#chunk-tokens', chunk);
  await p.locator('#run').first().click({ timeout: 30000 }); // waits for it to be enabled
  const verdict = (await waitState(p, '#run-verdict', ['done'], runTimeoutMs)).text.trim();
  return { verdict, report: collapse(await p.locator('#run-result').first().textContent()) };
}

const profile = mkdtempSync(join(tmpdir(), 'qkv-web-chromium-'));
// Also when Playwright's own SIGINT/SIGTERM handler kills the browser and exits.
process.on('exit', () => rmSync(profile, { recursive: true, force: true }));
let context;
let page;
let exitCode = 1;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => console.log(`[page] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page] uncaught: ${e.stack || e.message}`));
  page.on('crash', () => console.log('[page] the page crashed'));
  page.on('response', (r) => { if (r.status() >= 400) console.log(`[page] HTTP ${r.status()} for ${r.url()}`); });
  page.on('requestfailed', (r) => console.log(`[page] request failed: ${r.url()} (${r.failure()?.errorText})`));
  const wasmResponses = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('.wasm')) wasmResponses.push(r);
  });

  console.log(`browser test: ${url} in ${executablePath} (${await page.evaluate(() => navigator.userAgent)})`);
  console.log(`browser test: flags ${FLAGS.join(' ')}`);

  const loaded = await check('page loads', async () => {
    const resp = await page.goto(url, { waitUntil: 'load', timeout: 30000 });
    if (!resp) fail('no response');
    if (!resp.ok()) fail(`HTTP ${resp.status()} for ${url}`);
    return `HTTP ${resp.status()}`;
  });

  // The browser must give a WebGPU adapter: nothing else on the page can work without one.
  const gpu = loaded && await check('WebGPU adapter', async () => {
    const r = await page.evaluate(async () => {
      if (!navigator.gpu) return { error: 'navigator.gpu is undefined (WebGPU is off in this browser, or this is not a secure context)' };
      const a = await navigator.gpu.requestAdapter();
      if (!a) return { error: 'navigator.gpu.requestAdapter() returned null' };
      const i = a.info || {};
      return {
        info: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, fallback: i.isFallbackAdapter },
        timestamp: a.features.has('timestamp-query'),
        f16: a.features.has('shader-f16'),
        subgroups: a.features.has('subgroups'),
      };
    });
    if (r.error) fail(`${r.error}; Chromium on Linux needs --enable-unsafe-webgpu (flags used: ${FLAGS.join(' ')})`);
    const i = r.info;
    return `${[i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ')}` +
      `${i.fallback ? ' (fallback adapter)' : ''}; timestamp-query ${r.timestamp ? 'yes' : 'no'}, shader-f16 ${r.f16 ? 'yes' : 'no'}, subgroups ${r.subgroups ? 'yes' : 'no'}`;
  });

  const example = gpu && await check('worked example computed (#example-status done)', async () => {
    await waitState(page, '#example-status', ['done'], 60000);
    return collapse(await text(page, '#example-status'));
  });

  if (example) {
    await check('.wasm served as application/wasm', async () => {
      if (wasmResponses.length === 0) fail('the page fetched no .wasm file');
      const bad = wasmResponses.filter((r) => (r.headers()['content-type'] || '').split(';')[0].trim() !== 'application/wasm');
      if (bad.length) fail(bad.map((r) => `${r.url()}: "${r.headers()['content-type']}"`).join(', '));
      return wasmResponses.map((r) => new URL(r.url()).pathname).join(', ');
    });

    await check('#y-0 = "2" and #y-1 = "17"', async () => {
      const y0 = await text(page, '#y-0');
      const y1 = await text(page, '#y-1');
      if (y0 !== '2' || y1 !== '17') fail(`#y-0 = "${y0}", #y-1 = "${y1}"`);
      return `y = (${y0}, ${y1})`;
    });

    for (const [id, want] of [['#y-1', '2·10 + 3·(−1) = 17'], ['#y-0', '2·1 + 3·0 = 2']]) {
      await check(`hover ${id}: #y-explain shows "${want}"`, async () => {
        await page.locator(id).first().hover({ timeout: 5000 });
        try {
          await poll(page, (want) => (document.querySelector('#y-explain')?.textContent ?? '').replace(/\s+/g, ' ').includes(want), want, 5000, '#y-explain');
        } catch (e) {
          fail(`#y-explain is "${collapse(await page.locator('#y-explain').first().textContent().catch(() => ''))}"`);
        }
        return collapse(await text(page, '#y-explain'));
      });
    }

    await check('edit #x-0 to 1: #y-1 becomes "7", then back to 2: "17"', async () => {
      await setInput(page, '#x-0', 1);
      await waitState(page, '#example-status', ['done'], 60000, { sel: '#y-1', text: '7' });
      await setInput(page, '#x-0', 2);
      await waitState(page, '#example-status', ['done'], 60000, { sel: '#y-1', text: '17' });
      return 'x = (1, 3) gives y1 = 7; x = (2, 3) gives 17 again';
    });
  }

  if (gpu) {
    await check('#q-0, #k-0, #v-0 are numbers', async () => {
      const got = await poll(page, () => {
        const vals = ['#q-0', '#k-0', '#v-0'].map((s) => (document.querySelector(s)?.textContent ?? '').trim());
        const num = (t) => t !== '' && Number.isFinite(Number(t.replace(/\u2212/g, '-')));
        return vals.every(num) ? vals : null;
      }, null, 60000, '#q-0, #k-0 and #v-0 to hold numbers').catch(async (e) => {
        const vals = await page.evaluate(() => ['#q-0', '#k-0', '#v-0'].map((s) => {
          const el = document.querySelector(s);
          return el ? JSON.stringify(el.textContent.trim()) : 'missing';
        }));
        fail(`${e.message}; q-0 ${vals[0]}, k-0 ${vals[1]}, v-0 ${vals[2]}`);
      });
      return `q0 = ${got[0]}, k0 = ${got[1]}, v0 = ${got[2]}`;
    });

    await check('#arrows is an SVG with at least two lines or paths', async () => {
      const n = await poll(page, () => {
        const el = document.querySelector('#arrows');
        if (!el || !(el instanceof SVGSVGElement)) return null;
        const n = el.querySelectorAll('line, path').length;
        return n >= 2 ? n : null;
      }, null, 10000, '#arrows').catch(async (e) => {
        const d = await page.evaluate(() => {
          const el = document.querySelector('#arrows');
          return el ? `<${el.tagName.toLowerCase()}> with ${el.querySelectorAll('line, path').length} line/path elements` : 'missing';
        });
        fail(`#arrows is ${d}`);
      });
      return `${n} line/path elements`;
    });

    await check('#adapter describes the adapter', async () => {
      const t = await poll(page, () => {
        const t = (document.querySelector('#adapter')?.innerText ?? '').replace(/\s+/g, ' ').trim();
        return t && !/^waiting\b/i.test(t) ? t : null;
      }, null, 30000, '#adapter to have text other than its placeholder');
      return t.length > 160 ? `${t.slice(0, 160)}…` : t;
    });

    const ran = await check(`gpt2 run, ${tokens} tokens: #run-verdict = "PASS"`, async () => {
      await page.locator('#shape option[value="gpt2"]').first().waitFor({ state: 'attached', timeout: 60000 })
        .catch(() => fail('#shape has no option "gpt2"'));
      await page.selectOption('#shape', 'gpt2', { timeout: 5000 });
      await setInput(page, '#tokens', tokens);
      await page.locator('#run').first().click({ timeout: 30000 }); // waits for it to be enabled
      const started = Date.now();
      let verdict = null;
      try {
        verdict = (await waitState(page, '#run-verdict', ['done'], runTimeoutMs)).text.trim();
      } finally {
        const result = await page.locator('#run-result').first().textContent().catch(() => null);
        console.log(`#run-result (${((Date.now() - started) / 1000).toFixed(1)} s after the click):`);
        console.log(result && result.trim() ? result.replace(/\s+$/, '') : '(empty)');
        if (verdict !== 'PASS') {
          const log = await page.locator('#run-log').first().textContent().catch(() => '');
          if (log && log.trim()) console.log(`#run-log:\n${log.replace(/\s+$/, '')}`);
        }
      }
      if (verdict !== 'PASS') fail(`#run-verdict is "${collapse(verdict)}", not "PASS"`);
      // Every candidate the tuner offers must compile here: a kernel the browser's WGSL
      // compiler rejects (naga's dialect) must be kept out by its requirements, not tried.
      if (/could not run/.test(collapse(await text(page, '#run-result')))) {
        fail('a tuning candidate could not run in the browser (a requirement missing?)');
      }
      return 'PASS';
    });

    if (ran) {
      await check(`full-page screenshot -> ${shown(screenshotPath)}`, async () => {
        await page.mouse.move(0, 0); // no hover left over from the checks above
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: screenshotPath, fullPage: true, animations: 'disabled' });
        return 'written';
      });
    }

    // The same shape in chunks: 50 tokens in chunks of 16 (3 full, 1 ragged), streamed
    // through two buffer sets: the chunked path, awaited chunk by chunk, in the browser.
    await check('gpt2, 50 tokens in chunks of 16 (streamed): PASS', async () => {
      const { verdict, report: t } = await runForm(page, { tokens: 50, chunk: 16 });
      if (!t.includes('chunks 4 of up to 16 tokens') || !t.includes('streamed')) {
        fail(`the report does not show 4 streamed chunks: ${t.slice(0, 300)}`);
      }
      if (verdict !== 'PASS') fail(`#run-verdict is "${verdict}", not "PASS"`);
      return t.match(/chunks [^;]*; streamed/)[0];
    });

    // ?timer=host: the same run timed by the page's clock, and labelled so (the path a
    // browser without timestamp-query takes).
    await check('?timer=host: gpt2, 16 tokens, PASS, labelled host-timed', async () => {
      const p3 = await context.newPage();
      try {
        p3.on('pageerror', (e) => console.log(`[page ?timer=host] error: ${e}`));
        await p3.goto(`${url}${url.includes('?') ? '&' : '?'}timer=host`, { waitUntil: 'load', timeout: 60000 });
        await waitState(p3, '#example-status', ['done'], 60000);
        const card = collapse(await text(p3, '#adapter'));
        if (!card.includes('host-timed')) fail(`the adapter card does not say host-timed: ${card.slice(0, 200)}`);
        const { verdict, report: t } = await runForm(p3, { tokens });
        if (verdict !== 'PASS') fail(`#run-verdict is "${verdict}", not "PASS"`);
        const line = t.match(/kernel \(host\)\s+[\d.]+ ms[^)]*host-timed[^)]*\)\s+[\d.]+ GFLOP\/s/);
        if (!line) fail(`the report does not label the kernel time host-timed: ${t.slice(0, 400)}`);
        return line[0];
      } finally {
        await p3.close().catch(() => {});
      }
    });

    // The kernel editor: the example kernel passes every check (7 in f32, the column-block
    // case of #32 among them) and is timed; a planted fault
    // (its bias never added) fails the checks with a bias, shows the wrong elements and the
    // tile map, and is not timed.
    await check('kernel editor: the example kernel passes and is timed', async () => {
      const src = await page.locator('#kernel-source').first().inputValue({ timeout: 5000 });
      if (!src.includes('TILE_COLS')) fail(`#kernel-source does not hold the example: ${src.slice(0, 120)}`);
      await setInput(page, '#kernel-tokens', 16);
      await page.locator('#kernel-run').first().click({ timeout: 30000 });
      const verdict = (await waitState(page, '#kernel-verdict', ['done'], runTimeoutMs)).text.trim();
      const t = collapse(await page.locator('#kernel-result').first().textContent());
      if (verdict !== 'PASS') fail(`#kernel-verdict is "${verdict}": ${t.slice(0, 400)}`);
      const passes = (t.match(/PASS f32/g) || []).length;
      if (passes !== 7) fail(`${passes} checks passed, not 7: ${t.slice(0, 400)}`);
      const timed = t.match(/timed on gpt2 x 16 tokens in f32: kernel [\d.]+ ms \([^)]*\), [\d.]+ GFLOP\/s/);
      if (!timed) fail(`no timing line: ${t.slice(-300)}`);
      return timed[0];
    });
    await check('kernel editor: a planted fault (no bias) is shown, with its tile map', async () => {
      const src = await page.locator('#kernel-source').first().inputValue({ timeout: 5000 });
      await page.locator('#kernel-source').first().fill(src.replace('acc += bias[c];', ''), { timeout: 5000 });
      await page.locator('#kernel-run').first().click({ timeout: 30000 });
      const verdict = (await waitState(page, '#kernel-verdict', ['done'], runTimeoutMs)).text.trim();
      const t = collapse(await page.locator('#kernel-result').first().textContent());
      if (verdict !== 'FAIL') fail(`#kernel-verdict is "${verdict}", not "FAIL": ${t.slice(0, 300)}`);
      if (!t.includes('FAIL f32 1 x 3 -> 8 + 2 x 8 one token, with bias')) fail(`the bias case did not fail: ${t.slice(0, 300)}`);
      if (!t.includes('PASS f32 35 x 37 -> 48 + 2 x 48 35 tokens (2 tiles + 3), no bias')) fail(`the no-bias case did not pass: ${t.slice(0, 600)}`);
      if (!t.includes('not timed')) fail('a failing kernel was timed');
      const rects = await page.evaluate(() => document.querySelectorAll('#kernel-map svg rect').length);
      if (rects < 10) fail(`#kernel-map has ${rects} rects: no tile map`);
      await page.locator('#kernel-reset').first().click({ timeout: 5000 });
      return `FAIL shown, ${rects} tile cells in the map`;
    });

    // A batch past what the page can hold is refused by name, and the page stays usable.
    // (After the screenshot, which shows the PASS.)
    await check('llama3-8b, 10,000,000 tokens: refused with a message, not a crash', async () => {
      await page.selectOption('#shape', 'llama3-8b', { timeout: 5000 });
      await setInput(page, '#tokens', 10000000);
      await page.locator('#run').first().click({ timeout: 30000 });
      const got = await poll(page, () => {
        const el = document.querySelector('#run-verdict');
        const s = el && el.getAttribute('data-state');
        return s === 'done' || s === 'error' ? { s, result: document.querySelector('#run-result')?.textContent ?? '' } : null;
      }, null, 60000, '#run-verdict done|error');
      if (got.s !== 'error') fail(`the run was not refused (verdict state "${got.s}")`);
      const t = collapse(got.result);
      if (!/at most \d+ tokens/.test(t)) fail(`the refusal does not say what fits: ${t.slice(0, 200)}`);
      await page.selectOption('#shape', 'gpt2', { timeout: 5000 });
      await setInput(page, '#tokens', tokens);
      return t.length > 140 ? `${t.slice(0, 140)}…` : t;
    });

  }

  // The same page in a browser whose WebGPU gives no adapter (Chromium on Linux without
  // --enable-unsafe-webgpu): it must say so and how to turn it on, with no uncaught error.
  await check('without --enable-unsafe-webgpu: #webgpu-status explains the missing adapter', async () => {
    const bare = mkdtempSync(join(tmpdir(), 'qkv-web-chromium-'));
    let ctx2;
    try {
      ctx2 = await chromium.launchPersistentContext(bare, {
        executablePath,
        headless: true,
        args: FLAGS.filter((f) => f !== '--enable-unsafe-webgpu'),
      });
      const p2 = ctx2.pages()[0] ?? await ctx2.newPage();
      const errors = [];
      p2.on('pageerror', (e) => errors.push(String(e)));
      await p2.goto(url, { waitUntil: 'load', timeout: 60000 });
      const status = await poll(p2, () => {
        const el = document.querySelector('#webgpu-status');
        return el && el.getAttribute('data-state') === 'error' ? el.textContent : null;
      }, null, 60000, '#webgpu-status data-state=error');
      const example = await p2.locator('#example-status').first().getAttribute('data-state');
      const t = collapse(status);
      if (!/no adapter|no WebGPU/i.test(t) || !t.includes('enable-unsafe-webgpu')) {
        fail(`the banner does not say what is missing and how to enable it: ${t.slice(0, 200)}`);
      }
      if (example !== 'error') fail(`#example-status is "${example}", not "error"`);
      if (errors.length) fail(`uncaught page errors: ${errors.join('; ')}`);
      return t.length > 120 ? `${t.slice(0, 120)}…` : t;
    } finally {
      await ctx2?.close().catch(() => {});
      rmSync(bare, { recursive: true, force: true });
    }
  });

  const failed = results.filter((r) => !r.ok);
  rmSync(join(failureDir, 'failure.png'), { force: true }); // none left from an earlier run
  if (failed.length) {
    try {
      mkdirSync(failureDir, { recursive: true });
      const shot = join(failureDir, 'failure.png');
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`browser test: failure screenshot in ${shown(shot)}`);
    } catch { /* the page may be gone */ }
  }
  console.log(`browser test: ${results.length - failed.length} of ${results.length} checks passed` +
    (failed.length ? `; FAILED: ${failed.map((r) => r.name).join('; ')}` : ''));
  exitCode = failed.length === 0 && results.length > 0 ? 0 : 1;
} catch (e) {
  console.log(`browser test: FAIL: ${e && e.stack ? e.stack : e}`);
  exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);

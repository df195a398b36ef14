#!/usr/bin/env node
// Browser check of Tandem's dashboard in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core from web/node_modules; nothing is downloaded).
//
//   node web/tests/dashboard_check.mjs --url http://127.0.0.1:9900/ --servers app/a,app/b,app/c \
//        [--down app/b --down-within-ms 3000] [--token T --act-on app/c] [--min-points N]
//        [--screenshot out.png]
//
// Steps, each bounded:
//  1. open the page; wait until every server of --servers is listed and the --down server shows "up";
//     then print "READY" on stdout.
//  2. with --down: wait for a line "KILLED" on stdin (the caller kills that server's process and
//     then writes it), then wait for the server's row to show "down"; print "DOWN <ms>" (from the
//     moment the line was read) and fail if it took longer than --down-within-ms. Also wait for the
//     live events list to show that server's server_down event.
//  3. with --token and --act-on: a wrong token must be refused (401 shown as an error), the right
//     one must drain the server (admin "draining") and enable it again.
//  4. with --min-points: wait until the charts hold that many points (the timeseries grows by one
//     every 2 s); then write a full-page screenshot (--screenshot), print "SCREENSHOT <path>".
// Throughout: every console error, page error, failed request and HTTP error response is collected;
// any of them fails the check (except the one 401 that step 3 provokes on purpose). Prints "OK" and
// exits 0 on success; otherwise prints "FAIL: <reason>" on stderr and exits 1.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function parseArgs(argv) {
  const o = {
    url: null, servers: [], down: null, downWithinMs: 3000, screenshot: null, token: null, actOn: null,
    minPoints: 0, listTimeoutMs: 15000, killTimeoutMs: 20000, overallTimeoutMs: 90000,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) die(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--url': o.url = v(); break;
      case '--servers': o.servers = v().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--down': o.down = v(); break;
      case '--down-within-ms': o.downWithinMs = Number(v()); break;
      case '--screenshot': o.screenshot = v(); break;
      case '--token': o.token = v(); break;
      case '--act-on': o.actOn = v(); break;
      case '--min-points': o.minPoints = Number(v()); break;
      case '--list-timeout-ms': o.listTimeoutMs = Number(v()); break;
      case '--kill-timeout-ms': o.killTimeoutMs = Number(v()); break;
      case '--overall-timeout-ms': o.overallTimeoutMs = Number(v()); break;
      default: die(`unknown argument ${k}`);
    }
  }
  if (!o.url) die('--url is required');
  if (o.servers.length === 0) die('--servers is required (backend/server,...)');
  for (const s of [...o.servers, o.down, o.actOn].filter(Boolean)) {
    if (!/^[^/]+\/[^/]+$/.test(s)) die(`server "${s}" must be written backend/server`);
  }
  if (o.down && !o.servers.includes(o.down)) die(`--down ${o.down} is not one of --servers`);
  if (o.actOn && !o.token) die('--act-on needs --token');
  return o;
}

function die(msg) {
  process.stderr.write(`FAIL: ${msg}\n`);
  process.exit(1);
}

const say = (line) => process.stdout.write(line + '\n');
const sleepless = (ms) => new Promise((resolve) => setTimeout(resolve, ms)); // only for timeouts

// The first stdin line equal to `word`, or an error after `ms` (or when stdin closes first).
function waitForLine(rl, word, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no "${word}" on stdin within ${ms} ms`)); }, ms);
    const onLine = (line) => { if (line.trim() === word) { cleanup(); resolve(); } };
    const onClose = () => { cleanup(); reject(new Error(`stdin closed before "${word}"`)); };
    const cleanup = () => { clearTimeout(timer); rl.off('line', onLine); rl.off('close', onClose); };
    rl.on('line', onLine);
    rl.on('close', onClose);
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} not found (apt-get install chromium)`);

  const problems = [];  // console errors, page errors, failed requests
  let expectedErrors = null; // while set: {urlPart, status} of an error we provoke on purpose
  const isExpected = (url, text) => expectedErrors !== null &&
    (url.includes(expectedErrors.urlPart) || text.includes(String(expectedErrors.status)));

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-dashboard-chromium-'));
  let context = null;
  const watchdog = setTimeout(() => {
    process.stderr.write(`FAIL: the whole check took longer than ${o.overallTimeoutMs} ms\n`);
    process.exit(1);
  }, o.overallTimeoutMs);

  let ok = false;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 900 }, timeout: 30000,
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
      if (isExpected(where, m.text())) return;
      problems.push(`console error: ${m.text()}${where}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => {
      problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure() ? r.failure().errorText : '?'}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && !isExpected(r.url(), String(r.status()))) {
        problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
      }
    });
    const failIfProblems = (when) => {
      if (problems.length) throw new Error(`${when}:\n  ${problems.join('\n  ')}`);
    };

    const resp = await page.goto(o.url, { waitUntil: 'load', timeout: 15000 });
    if (!resp || !resp.ok()) throw new Error(`GET ${o.url} answered ${resp ? resp.status() : 'nothing'}`);

    // 1. every server listed, the victim up
    try {
      await page.waitForFunction(({ servers, down }) => {
        const row = (k) => document.querySelector(`tr[data-server="${CSS.escape(k)}"]`);
        if (!servers.every((k) => row(k))) return false;
        return !down || row(down).dataset.state === 'up';
      }, { servers: o.servers, down: o.down }, { timeout: o.listTimeoutMs, polling: 50 });
    } catch (e) {
      const listed = await page.$$eval('tr[data-server]', (rs) => rs.map((r) => `${r.dataset.server}=${r.dataset.state}`));
      throw new Error(`within ${o.listTimeoutMs} ms the page did not list every server of ` +
        `${o.servers.join(', ')}${o.down ? ` with ${o.down} up` : ''}; listed: [${listed.join(', ')}]`);
    }
    const charts = await page.$$eval('.uplot canvas', (cs) => cs.length);
    if (charts < 6) throw new Error(`expected 6 uPlot charts, found ${charts}`);
    failIfProblems('problems while loading the page');
    say('READY');

    // 2. the caller kills the server; it must show as down in time
    if (o.down) {
      const rl = readline.createInterface({ input: process.stdin });
      await waitForLine(rl, 'KILLED', o.killTimeoutMs);
      rl.close();
      const t0 = performance.now();
      const bound = o.downWithinMs + 5000; // wait longer than the limit to report how late it was
      try {
        await page.waitForFunction((k) => {
          const row = document.querySelector(`tr[data-server="${CSS.escape(k)}"]`);
          const st = row && row.querySelector('.st');
          return row && row.dataset.state === 'down' && st && st.textContent.trim() === 'down' &&
            st.offsetParent !== null; // visible
        }, o.down, { timeout: bound, polling: 20 });
      } catch (e) {
        const state = await page.$eval(`tr[data-server="${o.down}"]`, (r) => r.dataset.state).catch(() => 'not listed');
        throw new Error(`${o.down} did not show as down within ${bound} ms (state shown: ${state})`);
      }
      const ms = Math.round(performance.now() - t0);
      say(`DOWN ${ms}`);
      if (ms > o.downWithinMs) throw new Error(`${o.down} showed as down after ${ms} ms (limit ${o.downWithinMs} ms)`);

      const [b, s] = o.down.split('/');
      try {
        await page.waitForFunction(({ b, s }) => [...document.querySelectorAll('#events li[data-kind="server_down"] .subj')]
          .some((e) => e.textContent.trim() === `${b}/${s}`), { b, s }, { timeout: 5000, polling: 50 });
      } catch (e) {
        throw new Error(`the live events list shows no server_down event for ${o.down} within 5000 ms`);
      }
      failIfProblems(`problems after ${o.down} went down`);
    }

    // 3. admin actions behind the token
    if (o.token && o.actOn) {
      const row = `tr[data-server="${o.actOn}"]`;
      const setToken = async (t) => {
        await page.fill('#token', t);
        await page.click('#token-set');
      };
      const adminIs = (state) => page.waitForFunction(({ sel, state }) => {
        const r = document.querySelector(sel);
        return r && r.dataset.admin === state && r.querySelector('.adm').textContent.trim() === state;
      }, { sel: row, state }, { timeout: 5000, polling: 50 });
      const [b, s] = o.actOn.split('/');

      expectedErrors = { urlPart: `/backends/${b}/servers/${s}/drain`, status: 401 };
      await setToken(`wrong-${process.pid}`);
      await page.click(`${row} button[data-action="drain"]`);
      try {
        await page.waitForFunction(() => {
          const n = document.querySelector('#notice');
          return n && !n.hidden && n.classList.contains('error') && n.textContent.includes('401');
        }, null, { timeout: 5000, polling: 50 });
      } catch (e) {
        throw new Error('a wrong token was not shown as a 401 error');
      }
      const adminNow = await page.$eval(row, (r) => r.dataset.admin);
      if (adminNow !== 'enabled') throw new Error(`a refused drain changed ${o.actOn} to ${adminNow}`);
      expectedErrors = null;

      await setToken(o.token);
      await page.click(`${row} button[data-action="drain"]`);
      try { await adminIs('draining'); } catch (e) { throw new Error(`Drain did not make ${o.actOn} "draining" within 5000 ms`); }
      await page.click(`${row} button[data-action="enable"]`);
      try { await adminIs('enabled'); } catch (e) { throw new Error(`Enable did not make ${o.actOn} "enabled" within 5000 ms`); }
      failIfProblems('problems while using the admin buttons');
    }

    // 4. screenshot, once the charts have --min-points points (one every 2 s: a fresh process has few)
    if (o.minPoints > 0) {
      const bound = 2000 * o.minPoints + 5000;
      try {
        await page.waitForFunction((n) => Number(document.querySelector('.charts').dataset.points || 0) >= n,
          o.minPoints, { timeout: bound, polling: 100 });
      } catch (e) {
        const have = await page.$eval('.charts', (c) => c.dataset.points || 0);
        throw new Error(`the charts did not reach ${o.minPoints} points within ${bound} ms (have ${have})`);
      }
    }
    if (o.screenshot) {
      fs.mkdirSync(path.dirname(path.resolve(o.screenshot)), { recursive: true });
      await page.screenshot({ path: o.screenshot, fullPage: true, timeout: 15000 });
      say(`SCREENSHOT ${path.resolve(o.screenshot)}`);
    }
    failIfProblems('problems during the check');
    ok = true;
  } catch (e) {
    process.stderr.write(`FAIL: ${e.message}\n`);
  } finally {
    if (context) {
      await Promise.race([context.close().catch(() => {}), sleepless(10000)]);
    }
    fs.rmSync(profile, { recursive: true, force: true });
    clearTimeout(watchdog);
  }
  if (ok) say('OK');
  process.exit(ok ? 0 : 1);
}

main();

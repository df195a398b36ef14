// Tandem dashboard: polls the admin API (/api/v1), follows /api/v1/events (server-sent events)
// and draws the last 15 minutes with uPlot. Plain script, no framework, no build step.
(function () {
  'use strict';

  const API = '/api/v1';
  const STATUS_EVERY_MS = 2000;     // status, timeseries, alerts
  const BACKENDS_EVERY_MS = 1000;   // servers' state (also refreshed on every health event)
  const REQUEST_TIMEOUT_MS = 5000;
  const WINDOW_S = 15 * 60;
  const MIN_SPAN_S = 10;
  const CHART_HEIGHT = 130;
  const MAX_EVENTS = 300;
  const TOKEN_KEY = 'tandem.adminToken';

  // ------------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(e, text) {
    const s = String(text);
    if (e.textContent !== s) e.textContent = s;
  }

  const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const num = (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : intFmt.format(v));

  function fixed(v, digits) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    return v.toFixed(digits);
  }

  function bytes(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + ' ' + units[i];
  }

  function duration(s) {
    if (!Number.isFinite(s) || s < 0) return '–';
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    const p2 = (x) => String(x).padStart(2, '0');
    if (d > 0) return `${d}d ${h}h ${p2(m)}m`;
    if (h > 0) return `${h}h ${p2(m)}m`;
    if (m > 0) return `${m}m ${p2(sec)}s`;
    return `${sec}s`;
  }

  function clock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso || '');
    const p = (x, n = 2) => String(x).padStart(n, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  function lastValue(arr) {
    if (!Array.isArray(arr)) return null;
    for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i];
    return null;
  }

  async function fetchJSON(path, options) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    try {
      const res = await fetch(API + path, Object.assign({ cache: 'no-store', signal: ctl.signal }, options));
      let body = null;
      const text = await res.text();
      if (text) {
        try { body = JSON.parse(text); } catch (_) { body = { error: text.trim() }; }
      }
      return { ok: res.ok, status: res.status, statusText: res.statusText, body };
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ connection indicator

  const conn = { api: null, events: null };

  function renderConn() {
    const dot = $('conn-dot'), text = $('conn-text');
    let cls = 'dot', msg;
    if (conn.api === false) { cls += ' bad'; msg = 'admin API unreachable'; }
    else if (conn.api === null) { msg = 'connecting…'; }
    else if (conn.events === true) { cls += ' good'; msg = 'live'; }
    else { cls += ' warn'; msg = 'polling (event stream reconnecting)'; }
    dot.className = cls;
    setText(text, msg);
  }

  // ------------------------------------------------------------------ notices

  let noticeTimer = null;
  function notice(message, kind) {
    const n = $('notice');
    n.className = 'notice ' + (kind || 'info');
    n.textContent = message;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, kind === 'error' ? 10000 : 5000);
  }

  // ------------------------------------------------------------------ header + process tiles

  let uptimeBase = null; // {seconds, at: performance.now()}
  let lastCpu = null;    // {seconds, at} from status, for CPU % when the timeseries has none
  let cpuFromStatus = null;

  function renderStatus(s) {
    setText($('h-node'), s.node ?? '–');
    setText($('h-version'), s.version ?? '–');
    const role = $('h-role');
    setText(role, s.role ?? '–');
    role.className = 'badge role-' + String(s.role || 'unknown').replace(/[^a-z_]/gi, '');
    if (Number.isFinite(s.uptime_seconds)) uptimeBase = { seconds: s.uptime_seconds, at: performance.now() };
    tickUptime();
    const c = s.config || {};
    const cfg = $('h-config');
    setText(cfg, c.revision !== undefined ? `rev ${c.revision} · ${c.source || '?'}` : '–');
    cfg.title = [c.path, c.loaded_at ? 'loaded ' + c.loaded_at : null].filter(Boolean).join('\n');
    setText($('h-workers'), s.workers ?? '–');
    document.title = `Tandem · ${s.node ?? ''}`;

    const listeners = Array.isArray(s.listeners) ? s.listeners : [];
    const conns = listeners.reduce((a, l) => a + (l.active_connections || 0), 0);
    setText($('t-conns'), num(conns));
    const p = s.process || {};
    setText($('t-rss'), bytes(p.resident_bytes));
    setText($('t-fds'), Number.isFinite(p.max_fds) ? `${num(p.open_fds)} / ${num(p.max_fds)}` : num(p.open_fds));
    setText($('t-threads'), num(p.threads));
    const firing = s.alerts_firing ?? 0;
    const ta = $('t-alerts');
    setText(ta, num(firing));
    ta.classList.toggle('hot', firing > 0);

    if (Number.isFinite(p.cpu_seconds)) {
      const now = performance.now();
      if (lastCpu && now > lastCpu.at) {
        cpuFromStatus = Math.max(0, (p.cpu_seconds - lastCpu.seconds) / ((now - lastCpu.at) / 1000) * 100);
      }
      lastCpu = { seconds: p.cpu_seconds, at: now };
    }
    renderListeners(listeners);
  }

  function tickUptime() {
    if (!uptimeBase) return;
    setText($('h-uptime'), duration(uptimeBase.seconds + (performance.now() - uptimeBase.at) / 1000));
  }

  function renderListeners(listeners) {
    const tbody = $('listeners').tBodies[0];
    const rows = listeners.length === 0
      ? [el('tr', null, el('td', { colspan: 9, class: 'empty', text: 'no listeners' }))]
      : listeners.map((l) => el('tr', { dataset: { listener: l.name } },
          el('td', { class: 'name', text: l.name }),
          el('td', { class: 'mono', text: l.listen }),
          el('td', null, el('span', { class: 'tag', text: l.mode })),
          el('td', { text: l.backend }),
          el('td', { class: 'num', text: num(l.active_connections) }),
          el('td', { class: 'num', text: num(l.connections_total) }),
          el('td', { class: 'num', text: num(l.requests_total) }),
          el('td', { class: 'num', text: bytes(l.bytes_in) }),
          el('td', { class: 'num', text: bytes(l.bytes_out) })));
    tbody.replaceChildren(...rows);
  }

  // ------------------------------------------------------------------ backends and servers

  const ACTIONS = [
    { action: 'drain', label: 'Drain', title: 'finish in-flight requests, send no new ones', unless: 'draining' },
    { action: 'enable', label: 'Enable', title: 'take traffic again', unless: 'enabled' },
    { action: 'disable', label: 'Disable', title: 'take no traffic at all', unless: 'disabled' },
  ];

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  function backendCard(name) {
    const card = el('article', { class: 'backend', dataset: { backend: name } },
      el('header', null,
        el('h3', { text: name }),
        el('span', { class: 'meta balance' }),
        el('span', { class: 'meta health' }),
        el('span', { class: 'badge panic', text: 'PANIC', hidden: true }),
        el('span', { class: 'meta traffic' })),
      el('table', { class: 'grid servers' },
        el('thead', null, el('tr', null,
          el('th', { text: 'server' }), el('th', { text: 'address' }), el('th', { text: 'state' }),
          el('th', { text: 'admin' }), el('th', { class: 'num', text: 'weight' }),
          el('th', { class: 'num', text: 'active' }), el('th', { class: 'num', text: 'requests' }),
          el('th', { class: 'num', text: '5xx' }), el('th', { class: 'num', text: 'checks ✓/✗' }),
          el('th', { class: 'num', text: 'ejections' }), el('th', { class: 'actions', text: 'actions' }))),
        el('tbody')));
    return card;
  }

  function serverRow(backend, name) {
    const row = el('tr', { dataset: { server: `${backend}/${name}` } });
    const cells = ['name', 'addr mono', 'state', 'admin', 'num weight', 'num active', 'num requests',
      'num errors', 'num checks', 'num ejections', 'actions'];
    for (const c of cells) row.append(el('td', { class: c }));
    row.querySelector('.state').append(el('span', { class: 'st' }));
    row.querySelector('.admin').append(el('span', { class: 'adm' }));
    const actions = row.querySelector('.actions');
    for (const a of ACTIONS) {
      actions.append(el('button', {
        type: 'button', class: 'act', title: a.title, dataset: { action: a.action },
        onclick: () => act(backend, name, a.action),
      }, a.label));
    }
    return row;
  }

  function updateServerRow(row, s) {
    const cells = row.cells;
    const nameCell = cells[0];
    if (nameCell.dataset.v !== `${s.name}|${s.backup}`) {
      nameCell.replaceChildren(el('span', { text: s.name }));
      if (s.backup) nameCell.append(el('span', { class: 'tag', text: 'backup' }));
      nameCell.dataset.v = `${s.name}|${s.backup}`;
    }
    setText(cells[1], s.address ?? '');
    const state = String(s.state || 'unknown');
    row.dataset.state = state;
    const st = cells[2].firstChild;
    st.className = 'st st-' + state.replace(/[^a-z_]/gi, '');
    setText(st, state);
    const admin = String(s.admin || 'enabled');
    row.dataset.admin = admin;
    const adm = cells[3].firstChild;
    adm.className = 'adm adm-' + admin.replace(/[^a-z_]/gi, '');
    setText(adm, admin);
    let w = num(s.weight);
    if (s.configured_weight !== undefined && s.configured_weight !== s.weight) w += ` / ${num(s.configured_weight)}`;
    if (Number.isFinite(s.effective_weight_percent) && s.effective_weight_percent < 100) w += ` · ${s.effective_weight_percent}%`;
    setText(cells[4], w);
    setText(cells[5], num(s.active_requests));
    setText(cells[6], num(s.requests_total));
    const e5 = (s.responses && s.responses['5xx']) || 0;
    setText(cells[7], num(e5));
    cells[7].classList.toggle('hot', e5 > 0);
    const ch = s.checks || {};
    setText(cells[8], ch.passed === undefined ? '–' : `${num(ch.passed)} / ${num(ch.failed)}`);
    setText(cells[9], num(s.ejections));
    const haveToken = token() !== '';
    for (const b of cells[10].querySelectorAll('button')) {
      const a = ACTIONS.find((x) => x.action === b.dataset.action);
      const current = a.unless === admin;
      b.disabled = !haveToken || current || b.classList.contains('busy');
      b.title = !haveToken ? 'enter the admin token (top right) to use this' : current ? `already ${admin}` : a.title;
    }
  }

  function renderBackends(data) {
    const host = $('backends');
    const list = Array.isArray(data.backends) ? data.backends : [];
    const empty = host.querySelector(':scope > .empty');
    if (list.length === 0) {
      host.replaceChildren(el('p', { class: 'empty', text: 'no backends configured' }));
      return;
    }
    if (empty) empty.remove();
    const seen = new Set();
    for (const b of list) {
      seen.add(b.name);
      let card = [...host.children].find((c) => c.dataset.backend === b.name);
      if (!card) { card = backendCard(b.name); host.append(card); }
      const hdr = card.querySelector('header');
      setText(hdr.querySelector('.balance'), b.balance || '');
      const healthy = b.servers_healthy ?? 0, total = b.servers_total ?? (b.servers || []).length;
      const health = hdr.querySelector('.health');
      setText(health, `${healthy}/${total} healthy`);
      health.className = 'meta health ' + (healthy === 0 ? 'bad' : healthy < total ? 'warn' : 'good');
      hdr.querySelector('.panic').hidden = !b.panic;
      const r = b.responses || {};
      const lat = Number.isFinite(b.p50_ms) || Number.isFinite(b.p99_ms)
        ? ` · p50 ${fixed(b.p50_ms, 1)} ms · p99 ${fixed(b.p99_ms, 1)} ms` : '';
      setText(hdr.querySelector('.traffic'),
        `${num(b.active_requests)} active · ${num(b.requests_total)} requests · ${num(r['5xx'] || 0)} 5xx · ` +
        `${num(b.retries)} retries · ${num(b.connect_failures)} connect failures${lat}`);

      const tbody = card.querySelector('tbody');
      const rows = new Map([...tbody.rows].map((row) => [row.dataset.server, row]));
      const keep = new Set();
      let prev = null;
      for (const s of b.servers || []) {
        const key = `${b.name}/${s.name}`;
        keep.add(key);
        let row = rows.get(key);
        if (!row) row = serverRow(b.name, s.name);
        // keep the API's order without re-inserting rows that are already in place
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== row) tbody.insertBefore(row, want);
        updateServerRow(row, s);
        prev = row;
      }
      for (const [key, row] of rows) if (!keep.has(key)) row.remove();
    }
    for (const card of [...host.children]) if (!seen.has(card.dataset.backend)) card.remove();
  }

  async function act(backend, server, action) {
    const t = token();
    if (!t) { notice('Enter the admin token first.', 'error'); return; }
    const row = document.querySelector(`tr[data-server="${CSS.escape(backend + '/' + server)}"]`);
    const buttons = row ? [...row.querySelectorAll('button')] : [];
    buttons.forEach((b) => { b.classList.add('busy'); b.disabled = true; });
    const what = `${action} ${backend}/${server}`;
    try {
      const res = await fetchJSON(
        `/backends/${encodeURIComponent(backend)}/servers/${encodeURIComponent(server)}/${action}`,
        { method: 'POST', headers: { Authorization: 'Bearer ' + t } });
      if (res.ok) {
        notice(`${what}: ${(res.body && res.body.admin) || 'ok'}`, 'ok');
      } else {
        const why = (res.body && res.body.error) || res.statusText || 'failed';
        notice(`${what}: ${res.status} ${res.status === 401 ? 'Unauthorized — ' : ''}${why}`, 'error');
      }
    } catch (e) {
      notice(`${what}: request failed (${e.name === 'AbortError' ? 'timed out' : e.message})`, 'error');
    } finally {
      buttons.forEach((b) => b.classList.remove('busy'));
      refreshBackends();
    }
  }

  // ------------------------------------------------------------------ alerts

  function renderAlerts(data) {
    const ul = $('alerts');
    const active = Array.isArray(data.active) ? data.active : [];
    if (active.length === 0) {
      ul.replaceChildren(el('li', { class: 'empty ok', text: 'No active alerts' }));
      return;
    }
    ul.replaceChildren(...active.map((a) => el('li', { class: 'alert sev-' + String(a.severity || 'warning').replace(/[^a-z]/gi, '') },
      el('div', null,
        el('span', { class: 'badge sev', text: a.severity || 'alert' }),
        el('b', { text: a.rule || '' }), ' ',
        el('span', { class: 'mono', text: a.subject || '' })),
      el('div', { class: 'msg', text: a.message || '' }),
      el('div', { class: 'when', text: a.fired_at ? 'since ' + clock(a.fired_at) : '' }))));
  }

  // ------------------------------------------------------------------ charts

  const css = getComputedStyle(document.documentElement);
  const cssVar = (name, fallback) => (css.getPropertyValue(name) || fallback).trim();
  const COLORS = {
    axis: cssVar('--muted', '#8b949e'),
    grid: cssVar('--grid', 'rgba(255,255,255,0.07)'),
    blue: cssVar('--blue', '#58a6ff'),
    red: cssVar('--red', '#f85149'),
    amber: cssVar('--amber', '#d29922'),
    green: cssVar('--green', '#3fb950'),
    purple: cssVar('--purple', '#bc8cff'),
    cyan: cssVar('--cyan', '#39c5cf'),
  };

  function fromZero(u, min, max) {
    if (max === null || !Number.isFinite(max) || max <= 0) return [0, 1];
    return [0, max * 1.15];
  }

  // x ticks as local HH:MM (HH:MM:SS when ticks are less than a minute apart)
  function timeTicks(u, splits, axisIdx, space, incr) {
    const p = (x) => String(x).padStart(2, '0');
    return splits.map((t) => {
      const d = new Date(t * 1000);
      const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
      return incr < 60 ? `${hm}:${p(d.getSeconds())}` : hm;
    });
  }

  function makeChart(id, series, digits) {
    const host = $(id);
    const axis = {
      stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 },
      font: '11px system-ui, sans-serif',
    };
    const opts = {
      width: Math.max(200, host.clientWidth), height: CHART_HEIGHT,
      padding: [8, 26, 0, 0], // room for the last time label
      cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      legend: { show: false },
      scales: { x: { time: true, range: () => xWindow }, y: { range: fromZero } },
      axes: [
        Object.assign({ space: 70, size: 30, values: timeTicks }, axis),
        Object.assign({ size: 46 }, axis),
      ],
      series: [{}].concat(series.map((s) => ({
        label: s.label, stroke: s.color, width: 1.5, spanGaps: false,
        fill: series.length === 1 ? s.color + '22' : undefined,
        points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '–' : fixed(v, digits)),
      }))),
    };
    const data = [[]].concat(series.map(() => []));
    if (series.length > 1) {
      const cap = host.parentElement.querySelector('figcaption');
      for (const s of series) {
        cap.append(el('span', { class: 'key' }, el('i', { style: `background:${s.color}` }), s.label));
      }
    }
    const plot = new uPlot(opts, data, host);
    let lastWidth = host.clientWidth;
    new ResizeObserver(() => {
      const w = host.clientWidth;
      if (w > 0 && w !== lastWidth) {
        lastWidth = w;
        requestAnimationFrame(() => plot.setSize({ width: w, height: CHART_HEIGHT }));
      }
    }).observe(host);
    return plot;
  }

  let charts = null;
  let xWindow = [Date.now() / 1000 - WINDOW_S, Date.now() / 1000]; // the last 15 minutes, server time
  function initCharts() {
    if (typeof uPlot !== 'function') throw new Error('uPlot did not load');
    charts = {
      rps: makeChart('c-rps', [{ label: 'req/s', color: COLORS.blue }], 1),
      err: makeChart('c-err', [{ label: 'errors %', color: COLORS.red }], 2),
      lat: makeChart('c-lat', [{ label: 'p50', color: COLORS.green }, { label: 'p99', color: COLORS.amber }], 1),
      conns: makeChart('c-conns', [{ label: 'connections', color: COLORS.cyan }], 0),
      cpu: makeChart('c-cpu', [{ label: 'CPU %', color: COLORS.purple }], 1),
      rss: makeChart('c-rss', [{ label: 'MiB', color: COLORS.blue }], 1),
    };
  }

  function series(ts, key, scale) {
    const a = Array.isArray(ts[key]) ? ts[key] : [];
    return a.map((v) => (v === null || v === undefined ? null : v * scale));
  }

  function renderTimeseries(ts) {
    const t = Array.isArray(ts.t) ? ts.t : [];
    const end = t.length ? t[t.length - 1] : Date.now() / 1000;
    // the last 15 minutes; a young process shows what it has (at least MIN_SPAN_S)
    const start = t.length ? Math.max(end - WINDOW_S, Math.min(t[0], end - MIN_SPAN_S)) : end - WINDOW_S;
    xWindow = [start, end];
    document.querySelector('.charts').dataset.points = String(t.length); // for tests and curious eyes
    const setData = (plot, ys) => plot.setData([t].concat(ys));
    setData(charts.rps, [series(ts, 'requests_per_second', 1)]);
    setData(charts.err, [series(ts, 'error_rate', 100)]);
    setData(charts.lat, [series(ts, 'p50_ms', 1), series(ts, 'p99_ms', 1)]);
    setData(charts.conns, [series(ts, 'active_connections', 1)]);
    setData(charts.cpu, [series(ts, 'cpu_percent', 1)]);
    setData(charts.rss, [series(ts, 'resident_bytes', 1 / 1048576)]);

    const rps = lastValue(ts.requests_per_second);
    setText($('t-rps'), rps === null ? '–' : fixed(rps, rps < 10 ? 1 : 0));
    const er = lastValue(ts.error_rate);
    const terr = $('t-err');
    setText(terr, er === null ? '–' : fixed(er * 100, 2) + ' %');
    terr.classList.toggle('hot', er !== null && er > 0.01);
    const p50 = lastValue(ts.p50_ms), p99 = lastValue(ts.p99_ms);
    setText($('t-lat'), p50 === null && p99 === null ? '–' : `${fixed(p50, 1)} / ${fixed(p99, 1)} ms`);
    const cpu = lastValue(ts.cpu_percent);
    const c = cpu !== null ? cpu : cpuFromStatus;
    setText($('t-cpu'), c === null ? '–' : fixed(c, 1) + ' %');
  }

  // ------------------------------------------------------------------ polling

  function loop(fn, everyMs) {
    let timer = null, running = false;
    const run = async () => {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try { await fn(); } finally {
        running = false;
        timer = setTimeout(run, everyMs);
      }
    };
    return run;
  }

  async function pollStatus() {
    const [status, ts, alerts] = await Promise.allSettled([
      fetchJSON('/status'), fetchJSON('/timeseries'), fetchJSON('/alerts')]);
    const okv = (r) => r.status === 'fulfilled' && r.value.ok && r.value.body;
    conn.api = okv(status) ? true : (status.status === 'rejected' ? false : conn.api);
    if (okv(status)) renderStatus(status.value.body);
    if (okv(ts)) renderTimeseries(ts.value.body);
    if (okv(alerts)) renderAlerts(alerts.value.body);
    renderConn();
  }

  async function pollBackends() {
    try {
      const res = await fetchJSON('/backends');
      if (res.ok && res.body) renderBackends(res.body);
      conn.api = true;
    } catch (_) {
      conn.api = false;
    }
    renderConn();
  }

  const refreshStatus = loop(pollStatus, STATUS_EVERY_MS);
  const refreshBackends = loop(pollBackends, BACKENDS_EVERY_MS);

  // ------------------------------------------------------------------ events (SSE)

  const seenEvents = new Set();

  function addEvent(type, ev) {
    // health events have unique ids; an alert keeps its id from firing to resolved
    const key = type === 'alert' ? `alert:${ev.id}:${ev.state}` : `${type}:${ev.id}`;
    if (ev.id !== undefined && ev.id !== null) {
      if (seenEvents.has(key)) return;
      seenEvents.add(key);
    }
    const list = $('events');
    const placeholder = list.querySelector('.empty');
    if (placeholder) placeholder.remove();
    let item;
    if (type === 'alert') {
      const firing = ev.state === 'firing';
      item = el('li', { class: 'ev ev-alert ' + (firing ? 'bad' : 'good'), dataset: { kind: 'alert_' + ev.state } },
        el('time', { text: clock(firing ? ev.fired_at : (ev.resolved_at || ev.fired_at)) }),
        el('span', { class: 'kind', text: firing ? 'alert firing' : 'alert resolved' }),
        el('span', { class: 'subj', text: `${ev.rule || ''} ${ev.subject || ''}`.trim() }),
        ev.message ? el('span', { class: 'detail', text: ev.message }) : null);
    } else {
      const kind = String(ev.kind || 'event');
      const tone = { server_down: 'bad', ejected: 'bad', panic_on: 'bad', server_up: 'good', returned: 'good',
        enabled: 'good', panic_off: 'good', draining: 'warn', disabled: 'warn' }[kind] || '';
      const subj = [ev.backend, ev.server].filter(Boolean).join('/');
      item = el('li', { class: 'ev ' + tone, dataset: { kind } },
        el('time', { text: clock(ev.time) }),
        el('span', { class: 'kind', text: kind.replace(/_/g, ' ') }),
        el('span', { class: 'subj mono', text: subj }),
        ev.detail ? el('span', { class: 'detail', text: ev.detail }) : null);
    }
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  let source = null;
  let reconnectTimer = null;
  function connectEvents() {
    clearTimeout(reconnectTimer);
    if (source) source.close();
    source = new EventSource(API + '/events');
    source.onopen = () => { conn.events = true; setText($('events-state'), ''); renderConn(); };
    source.onerror = () => {
      conn.events = false;
      renderConn();
      if (source.readyState === EventSource.CLOSED) {
        setText($('events-state'), '(stream closed, retrying)');
        reconnectTimer = setTimeout(connectEvents, 5000);
      } else {
        setText($('events-state'), '(reconnecting)');
      }
    };
    const handle = (type) => (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch (_) { return; }
      addEvent(type, ev);
      if (type === 'health') refreshBackends();
      else if (type === 'alert') refreshStatus();
    };
    source.addEventListener('health', handle('health'));
    source.addEventListener('alert', handle('alert'));
    source.onmessage = handle('health'); // unnamed events: treated as health events
  }

  // ------------------------------------------------------------------ token

  function renderToken() {
    const has = token() !== '';
    const input = $('token');
    input.placeholder = has ? 'token set ✓' : 'admin token';
    input.classList.toggle('set', has);
    $('token-clear').hidden = !has;
    document.body.classList.toggle('can-act', has);
  }

  function initToken() {
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('token').value.trim();
      if (!v) return;
      try { sessionStorage.setItem(TOKEN_KEY, v); } catch (_) { /* private mode: not kept */ }
      $('token').value = '';
      renderToken();
      notice('Token set for this tab: Drain / Enable / Disable are enabled.', 'ok');
      refreshBackends();
    });
    $('token-clear').addEventListener('click', () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
      renderToken();
      refreshBackends();
    });
    renderToken();
  }

  // ------------------------------------------------------------------ start

  function start() {
    initToken();
    initCharts();
    renderConn();
    refreshStatus();
    refreshBackends();
    connectEvents();
    setInterval(tickUptime, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

// Pacesetter supervisor dashboard: plain JavaScript, no framework, no network beyond this server.
// Loads rooms, live state and the last 24 h of intervals over REST, then follows /api/v1/stream.
'use strict';

const TZ = 'Europe/London';
const fmtClock = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const fmtHM = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, hour: '2-digit', minute: '2-digit', hour12: false });
const fmtDate = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
const fmtZone = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, timeZoneName: 'short' });

const QUARTER = 15 * 60 * 1000;
const DAY = 24 * 60 * 60 * 1000;
const STALE_SECONDS = 15;
const HANDLER_STATES = [
  ['available', 'Available', '#46e08a'], ['on_call', 'On call', '#5b8def'],
  ['wrap_up', 'Wrap-up', '#d9a6ff'], ['unavailable', 'Unavailable', '#ffc233'],
  ['logged_out', 'Logged out', '#56606e'],
];
const GRADES = [
  ['immediate', 'Immediate', 15 * 60], ['priority', 'Priority', 60 * 60],
  ['scheduled', 'Scheduled', 48 * 3600], ['resolution', 'Resolution', null],
];
const LINE_NAMES = { '999': 'Emergency', '101': 'Non-emergency', online: 'Digital desk' };

const params = new URLSearchParams(window.location.search);
const PROFILES = readProfiles();

const state = {
  rooms: [],            // [{room, lines}]
  room: null,           // the room on screen
  live: {},             // room -> live state
  intervals: {},        // room -> Map(line|start -> record)
  alerts: {},           // room -> Map(id -> firing alert)
  forecasts: {},        // room|line -> rows
  accuracy: {},         // room|line -> the forecast's backtest (forecast accuracy)
  lastLiveAt: 0,        // Date.now() of the last live message
  source: null,
  chartsDue: false,
  session: null,        // GET /api/v1/session: signed_in, role, name, csrf
  alertsShown: '',      // what the alert list shows, so that it changes only when alerts do
  ackOpen: null,        // the alert id whose acknowledge form is open
};
const ROLE_RANK = { viewer: 0, supervisor: 1, scheduler: 2, admin: 3 };

function readProfiles() {
  try {
    return JSON.parse(document.getElementById('profiles').textContent);
  } catch (err) {
    return { lines: {}, default: { threshold_seconds: 60, service_level_target: 0.8, abandonment_standard: 0.05, longest_wait_alert_seconds: 600 } };
  }
}

function profile(line) {
  return (PROFILES.lines && PROFILES.lines[line]) || PROFILES.default;
}

// -- formatting ------------------------------------------------------------------------------

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function isNum(x) { return typeof x === 'number' && Number.isFinite(x); }

function pct(x, digits = 1) { return isNum(x) ? `${(x * 100).toFixed(digits)} %` : '—'; }

function seconds(x) { return isNum(x) ? `${x < 10 ? x.toFixed(1) : Math.round(x)} s` : '—'; }

function clockDuration(s) {
  if (!isNum(s)) return '—';
  const total = Math.max(0, Math.round(s));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function words(s) {
  if (!isNum(s)) return '—';
  const total = Math.max(0, Math.round(s));
  if (total < 60) return `${total} s`;
  if (total < 3600) {
    const m = Math.floor(total / 60);
    const r = total % 60;
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

function localHM(iso) { const t = Date.parse(iso); return Number.isNaN(t) ? '—' : fmtHM.format(t); }

// -- data ---------------------------------------------------------------------------------------

async function api(path, options = {}) {
  // The session cookie goes with every same-origin request; writes carry its CSRF token.
  const headers = { Accept: 'application/json' };
  const method = options.method || 'GET';
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.session && state.session.csrf) headers['X-CSRF-Token'] = state.session.csrf;
  const response = await fetch(path, {
    method, headers, cache: 'no-store', credentials: 'same-origin',
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) throw new AccessError('Please sign in.');
  if (response.status === 403 && method === 'GET') throw new AccessError('Your role cannot see this dashboard: sign in with a viewer token.');
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch (err) { /* not JSON */ }
    throw new RequestError(typeof detail === 'string' ? detail : JSON.stringify(detail), response.status);
  }
  return response.status === 204 ? null : response.json();
}

class AccessError extends Error {}

class RequestError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// -- session -------------------------------------------------------------------------------------

async function loadSession() {
  state.session = await api('/api/v1/session');
  renderAccount();
  return state.session;
}

function canAcknowledge() {
  const role = state.session && state.session.role;
  return role != null && ROLE_RANK[role] >= ROLE_RANK.supervisor;
}

function renderAccount() {
  const host = document.getElementById('account');
  const s = state.session;
  if (!s || !s.signed_in) { host.innerHTML = ''; return; }
  host.innerHTML = `<span class="who">${esc(s.name || s.role)} <small>(${esc(s.role)})</small></span>
    <button type="button" id="signout">Sign out</button>`;
  document.getElementById('signout').onclick = signOut;
}

function showSignIn(message) {
  if (state.source) { state.source.close(); state.source = null; }
  setConnection('bad');
  const form = document.getElementById('signin');
  form.hidden = false;
  document.getElementById('signin-error').textContent = message || '';
  document.getElementById('signin-token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById('signin-token');
  const error = document.getElementById('signin-error');
  error.textContent = '';
  try {
    state.session = await api('/api/v1/session', { method: 'POST', body: { token: input.value } });
  } catch (err) {
    error.textContent = err instanceof AccessError ? 'That token is not accepted.' : `Sign-in failed: ${err.message}`;
    return;
  }
  input.value = '';
  document.getElementById('signin').hidden = true;
  renderAccount();
  start();
}

async function signOut() {
  try { await api('/api/v1/session', { method: 'DELETE' }); } catch (err) { report(err); }
  state.session = null;
  state.alerts = {};
  state.alertsShown = '';
  renderAccount();
  notice('');
  showSignIn('Signed out.');
}

function notice(text) {
  const el = document.getElementById('notice');
  el.hidden = !text;
  el.textContent = text || '';
}

async function loadRooms() {
  state.rooms = await api('/api/v1/rooms');
  const wanted = decodeURIComponent(window.location.hash.slice(1)) || params.get('room');
  const names = state.rooms.map((r) => r.room);
  if (!state.room || !names.includes(state.room)) {
    state.room = names.includes(wanted) ? wanted : (names[0] || null);
  }
  await Promise.all(names.map(async (room) => {
    try {
      state.live[room] = await api(`/api/v1/rooms/${encodeURIComponent(room)}/live`);
    } catch (err) {
      if (err instanceof AccessError) throw err;
      // A room can exist before its first live state: the cards wait for it.
    }
  }));
}

async function loadRoom(room) {
  if (!room) return;
  const end = Date.now() + QUARTER;
  const start = new Date(floorQuarter(Date.now()) - DAY - QUARTER).toISOString();
  const [records, alerts] = await Promise.all([
    api(`/api/v1/rooms/${encodeURIComponent(room)}/intervals?start=${encodeURIComponent(start)}`),
    api(`/api/v1/alerts?room=${encodeURIComponent(room)}&state=firing`),
  ]);
  const map = new Map();
  for (const record of records) map.set(`${record.line}|${record.interval_start}`, record);
  // Replayed rooms live in event time: fetch the day before their "now" instead.
  const live = state.live[room];
  if (live && live.now && Date.parse(live.now) < end - DAY) {
    const ref = floorQuarter(Date.parse(live.now));
    const older = await api(`/api/v1/rooms/${encodeURIComponent(room)}/intervals?start=${encodeURIComponent(new Date(ref - DAY).toISOString())}&end=${encodeURIComponent(new Date(ref + QUARTER).toISOString())}`);
    for (const record of older) map.set(`${record.line}|${record.interval_start}`, record);
  }
  state.intervals[room] = map;
  state.alerts[room] = new Map(alerts.map((a) => [a.id, a]));
  await loadForecasts(room);
}

async function loadForecasts(room) {
  const live = state.live[room];
  if (!live) return;
  for (const [line, figures] of Object.entries(live.lines || {})) {
    const key = `${room}|${line}`;
    if (!figures || !figures.staffing || state.forecasts[key]) continue;
    // Forecasts exist once a staffing plan does: yesterday and today, local days.
    const now = live.now ? Date.parse(live.now) : Date.now();
    const start = localMidnight(now - DAY);
    try {
      state.forecasts[key] = await api(`/api/v1/rooms/${encodeURIComponent(room)}/forecast?line=${encodeURIComponent(line)}&start=${encodeURIComponent(start)}&days=2`);
    } catch (err) {
      state.forecasts[key] = [];
    }
    try {
      state.accuracy[key] = await api(`/api/v1/rooms/${encodeURIComponent(room)}/forecast/accuracy?line=${encodeURIComponent(line)}`);
    } catch (err) {
      state.accuracy[key] = null;
    }
  }
}

function floorQuarter(ms) { return Math.floor(ms / QUARTER) * QUARTER; }

function localMidnight(ms) {
  // The UTC instant of local (Europe/London) midnight on the day containing ms.
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false })
    .formatToParts(ms).map((p) => [p.type, p.value]));
  const sinceMidnight = ((Number(parts.hour) % 24) * 60 + Number(parts.minute)) * 60000;
  return new Date(floorQuarter(ms - sinceMidnight)).toISOString().replace('.000Z', 'Z');
}

// -- live stream ---------------------------------------------------------------------------------

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource('/api/v1/stream');  // same origin: the session cookie goes too
  state.source = source;
  let dropped = false;
  source.onopen = () => {
    setConnection('ok');
    if (dropped) {
      dropped = false;
      refresh();  // fill what was missed while away
    }
  };
  source.onerror = () => { dropped = true; setConnection('wait'); };
  source.addEventListener('live', (ev) => onLive(JSON.parse(ev.data)));
  source.addEventListener('interval', (ev) => onInterval(JSON.parse(ev.data)));
  source.addEventListener('alert', (ev) => onAlert(JSON.parse(ev.data)));
}

function setConnection(kind) {
  const el = document.getElementById('connection');
  el.className = `pill pill-${kind}`;
  el.textContent = kind === 'ok' ? '● LIVE' : kind === 'wait' ? '○ RECONNECTING' : '✕ NOT SIGNED IN';
}

function onLive(live) {
  const room = live.room;
  const known = state.rooms.find((r) => r.room === room);
  if (!known) {
    state.rooms.push({ room, lines: Object.keys(live.lines || {}).sort() });
    state.rooms.sort((a, b) => a.room.localeCompare(b.room));
    if (!state.room) { state.room = room; loadRoom(room).then(render).catch(report); }
  }
  state.live[room] = live;
  state.lastLiveAt = Date.now();
  const alerts = state.alerts[room] || (state.alerts[room] = new Map());
  for (const alert of live.alerts || []) {
    if (alert.state !== 'firing') continue;
    const known = alerts.get(alert.id);
    // The live state can lag an acknowledgement sent as an alert event: keep the newer news.
    if (known && known.started_at === alert.started_at && known.acknowledged_at && !alert.acknowledged_at) continue;
    alerts.set(alert.id, alert);
  }
  if (room === state.room) {
    renderRoom();
    loadForecasts(room).catch(report);
  }
  renderTabs();
}

function onInterval(change) {
  if (change.kind !== 'interval') return;
  const record = change.record;
  const map = state.intervals[record.room];
  if (!map) return;
  map.set(`${record.line}|${record.interval_start}`, record);
  if (record.room === state.room) scheduleCharts();
}

function onAlert(alert) {
  const alerts = state.alerts[alert.room] || (state.alerts[alert.room] = new Map());
  if (alert.state === 'firing') alerts.set(alert.id, alert); else alerts.delete(alert.id);
  if (alert.room === state.room) { renderAlerts(); loadHistory(); }
  renderTabs();
}

function scheduleCharts() {
  if (state.chartsDue) return;
  state.chartsDue = true;
  setTimeout(() => { state.chartsDue = false; renderCharts(); }, 1000);
}

// -- rendering ----------------------------------------------------------------------------------

function render() {
  renderTabs();
  renderRoom();
  renderCharts();
}

function renderRoom() {
  const live = state.live[state.room];
  if (!state.room) {
    notice('Waiting for the first figures from the stream worker…');
  } else if (!live) {
    notice(`No live state for ${state.room} yet: is a stream worker running?`);
  } else {
    notice(live.mode === 'replay' ? `REPLAY: figures are as of ${fmtClock.format(Date.parse(live.now))} (event time), not now.` : '');
  }
  renderLines(live);
  renderHandlers(live);
  renderIncidents(live);
  renderAlerts();
  const mode = document.getElementById('mode');
  mode.textContent = live ? `${live.mode === 'replay' ? 'Replay' : 'Live'} · watermark ${live.watermark ? fmtClock.format(Date.parse(live.watermark)) : '—'} · lag ${seconds(live.lag_seconds)}` : '';
}

function renderTabs() {
  const nav = document.getElementById('rooms');
  nav.innerHTML = state.rooms.map(({ room }) => {
    const alerts = state.alerts[room] ? [...state.alerts[room].values()] : [];
    const open = alerts.filter((a) => !a.acknowledged_at).length;
    const mark = open ? ` <span class="dot bad" aria-label="${open} alerts not acknowledged">⚠ ${open}</span>`
      : alerts.length ? ` <span class="dot" aria-label="${alerts.length} alerts, all acknowledged">✓ ${alerts.length}</span>` : '';
    return `<button type="button" data-room="${esc(room)}" aria-pressed="${room === state.room}">${esc(room)}${mark}</button>`;
  }).join('');
  for (const button of nav.querySelectorAll('button')) {
    button.onclick = () => selectRoom(button.dataset.room);
  }
}

async function selectRoom(room) {
  state.room = room;
  window.location.hash = encodeURIComponent(room);
  render();
  try { await loadRoom(room); } catch (err) { report(err); }
  render();
}

function status(kind, text) { return `<span class="note ${kind}">${esc(text)}</span>`; }

function lineVerdicts(line, figures) {
  const p = profile(line);
  const iv = figures.interval || {};
  const sl = iv.service_level ? iv.service_level.answered : null;
  const out = { worst: 'ok' };
  const worse = (kind) => { if (kind === 'bad' || (kind === 'warn' && out.worst === 'ok')) out.worst = kind; };

  const wait = figures.longest_wait_seconds;
  if (!isNum(wait) || !figures.in_queue) out.wait = status('ok', '✓ nobody waiting');
  else if (wait > p.longest_wait_alert_seconds) { out.wait = status('bad', `▲ OVER ${words(p.longest_wait_alert_seconds)} LIMIT`); worse('bad'); }
  else if (wait > p.longest_wait_alert_seconds / 2) { out.wait = status('warn', `● NEAR ${words(p.longest_wait_alert_seconds)} LIMIT`); worse('warn'); }
  else out.wait = status('ok', `✓ within ${words(p.longest_wait_alert_seconds)} limit`);

  const target = p.service_level_target;
  if (!isNum(sl)) out.sl = status('muted', 'no calls answered yet');
  else if (sl < target) { out.sl = status('bad', `▼ BELOW ${pct(target, 0)} TARGET`); worse('bad'); }
  else out.sl = status('ok', `✓ meets ${pct(target, 0)} target`);

  const ab = iv.abandonment_rate;
  if (p.abandonment_standard == null) out.ab = status('muted', 'no standard');
  else if (!isNum(ab)) out.ab = status('muted', 'no calls yet');
  else if (ab > p.abandonment_standard) { out.ab = status('bad', `▲ ABOVE ${pct(p.abandonment_standard, 0)}`); worse('warn'); }
  else out.ab = status('ok', `✓ within ${pct(p.abandonment_standard, 0)}`);

  const fd = figures.rolling_24h ? figures.rolling_24h.failure_demand_rate : null;
  if (!isNum(fd)) out.fd = status('muted', 'no calls in 24 h');
  else if (fd > 0.2) { out.fd = status('warn', '▲ 24 h, over 20 %'); worse('warn'); }
  else out.fd = status('ok', '✓ 24 h, ≤ 20 %');
  return out;
}

function sortLines(lines) {
  return [...lines].sort((a, b) => (a === '999' ? -1 : b === '999' ? 1 : a.localeCompare(b)));
}

function roomLines(room) {
  const live = state.live[room];
  const lines = new Set(Object.keys((live && live.lines) || {}));
  for (const record of (state.intervals[room] || new Map()).values()) lines.add(record.line);
  return sortLines(lines);
}

function lineCard(line) {
  // One card per line, built once: figures and charts are re-rendered inside it separately.
  const host = document.getElementById('lines');
  let card = host.querySelector(`article[data-line="${CSS.escape(line)}"]`);
  if (!card) {
    card = document.createElement('article');
    card.className = 'line';
    card.dataset.line = line;
    card.setAttribute('aria-label', `Line ${line}`);
    card.innerHTML = '<div class="line-head"></div><div class="line-body"><div class="line-top"></div><div class="line-charts"></div></div>';
    host.appendChild(card);
  }
  return card;
}

function renderLines(live) {
  const host = document.getElementById('lines');
  const lines = state.room ? roomLines(state.room) : [];
  host.dataset.count = String(lines.length);
  for (const card of [...host.children]) if (!lines.includes(card.dataset.line)) card.remove();
  lines.forEach((line) => host.appendChild(lineCard(line)));  // keeps the order
  for (const line of lines) {
    const card = lineCard(line);
    const f = (live && live.lines && live.lines[line]) || {};
    const iv = f.interval || {};
    const p = profile(line);
    const v = lineVerdicts(line, f);
    const sl = iv.service_level ? iv.service_level.answered : null;
    const label = { ok: '✓ OK', warn: '● WATCH', bad: '▲ ACTION' }[v.worst];
    card.className = `line state-${v.worst}`;
    card.querySelector('.line-head').innerHTML = `
      <div class="line-name">${esc(line)}<small>${esc(LINE_NAMES[line] || 'Line')}</small></div>
      <div><span class="line-verdict ${v.worst}">${label}</span><span class="line-interval">${iv.interval_start ? `this interval from ${localHM(iv.interval_start)}` : 'no calls this interval yet'}</span></div>`;
    const fifth = f.staffing && isNum(f.staffing.required_handlers)
      ? `<div class="figure"><span class="label">Handlers needed (plan)</span><span class="value">${f.staffing.required_handlers}</span><span class="note muted">forecast ${isNum(f.staffing.forecast_calls) ? Math.round(f.staffing.forecast_calls) : '—'} calls</span></div>`
      : '';
    card.querySelector('.line-top').innerHTML = `
      <div class="bigs">
        <div class="big"><span class="label">Calls waiting</span>
          <span class="value" data-figure="in_queue-${esc(line)}">${isNum(f.in_queue) ? f.in_queue : '—'}</span>
          ${f.in_queue ? status('muted', f.in_queue === 1 ? 'caller in queue' : 'callers in queue') : status('ok', '✓ queue empty')}</div>
        <div class="big"><span class="label">Longest wait</span>
          <span class="value" data-figure="longest-${esc(line)}">${f.in_queue ? clockDuration(f.longest_wait_seconds) : '0:00'}</span>${v.wait}</div>
        <div class="big"><span class="label">Service level now</span>
          <span class="value" data-figure="sl-${esc(line)}">${pct(sl)}</span>${v.sl}</div>
      </div>
      <div class="figures">
        <div class="figure"><span class="label">Abandoned</span><span class="value">${pct(iv.abandonment_rate)}</span>${v.ab}</div>
        <div class="figure"><span class="label">ASA</span><span class="value">${seconds(iv.asa_seconds)}</span><span class="note muted">answer wait</span></div>
        <div class="figure"><span class="label">Failure demand</span><span class="value">${pct(f.rolling_24h ? f.rolling_24h.failure_demand_rate : null)}</span>${v.fd}</div>
        <div class="figure"><span class="label">This interval</span><span class="value" data-figure="offered-${esc(line)}">${iv.offered ?? 0} / ${iv.answered ?? 0}</span><span class="note muted">offered / answered</span></div>
        ${fifth}
      </div>`;
  }
}

function renderHandlers(live) {
  const host = document.getElementById('handlers');
  const h = (live && live.handlers) || {};
  const total = HANDLER_STATES.reduce((s, [k]) => s + (h[k] || 0), 0);
  const busy = (h.on_call || 0) + (h.wrap_up || 0);
  const loggedIn = busy + (h.available || 0);
  host.innerHTML = `<div class="handlers-grid">${HANDLER_STATES.map(([k, label, colour]) =>
    `<div><div class="n" style="color:${colour}" data-figure="handlers-${k}">${h[k] ?? 0}</div><div class="s">${label}</div></div>`).join('')}</div>
    <div class="stack" role="img" aria-label="handler states">${total ? HANDLER_STATES.map(([k, , colour]) =>
    `<span style="width:${(100 * (h[k] || 0)) / total}%;background:${colour}"></span>`).join('') : ''}</div>
    <div class="occupancy">Logged in <b>${loggedIn}</b> · occupancy now <b>${loggedIn ? pct(busy / loggedIn, 0) : '—'}</b></div>`;
}

function renderIncidents(live) {
  const host = document.getElementById('incidents');
  const waiting = (live && live.incidents_awaiting_dispatch) || {};
  const rows = GRADES.map(([grade, label, target]) => {
    const w = waiting[grade] || { count: 0, oldest_age_seconds: null };
    const over = target != null && isNum(w.oldest_age_seconds) && w.oldest_age_seconds > target;
    const verdict = !w.count ? status('ok', '✓ none')
      : over ? status('bad', '▲ LATE') : status('ok', '✓ in time');
    const aim = target != null ? `dispatch within ${words(target)}` : 'no target';
    return `<tr><td>${label}<span class="target">${aim}</span></td><td class="n" data-figure="awaiting-${grade}">${w.count || 0}</td>
      <td class="age">${w.count ? words(w.oldest_age_seconds) : '—'}</td><td>${verdict}</td></tr>`;
  }).join('');
  host.innerHTML = `<table><thead><tr><th>Grade</th><th>Waiting</th><th>Oldest</th><th>Status</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function alertKey(a) {
  return `${a.id}|${a.started_at}|${a.acknowledged_at || ''}|${a.message}|${a.severity}`;
}

function renderAlerts() {
  const host = document.getElementById('alerts');
  const alerts = [...(state.alerts[state.room] || new Map()).values()]
    .sort((a, b) => (a.acknowledged_at ? 1 : 0) - (b.acknowledged_at ? 1 : 0)
      || (a.severity === 'critical' ? 0 : 1) - (b.severity === 'critical' ? 0 : 1)
      || Date.parse(b.started_at) - Date.parse(a.started_at));
  const open = alerts.filter((a) => !a.acknowledged_at).length;
  document.getElementById('alert-count').textContent = alerts.length
    ? `(${alerts.length}${open ? `, ${open} not acknowledged` : ''})` : '';
  // The list is a live region: rebuild it only when alerts change, so that a screen reader
  // announces news, not the same list again; never while a supervisor types a note.
  const shown = `${state.room}#${canAcknowledge()}#${alerts.map(alertKey).join(',')}#${host.clientHeight}`;
  if (shown === state.alertsShown) return;
  if (state.ackOpen && host.contains(document.activeElement)) return;
  state.alertsShown = shown;
  state.ackOpen = null;
  if (!alerts.length) {
    host.innerHTML = '<li class="none">✓ No alerts firing</li>';
    return;
  }
  const mayAck = canAcknowledge();
  host.innerHTML = alerts.map((a) => {
    const critical = a.severity === 'critical';
    const acked = a.acknowledged_at
      ? `<span class="acked">✓ Acknowledged by ${esc(a.acknowledged_by || 'someone')} at ${localHM(a.acknowledged_at)}${a.note ? `: “${esc(a.note)}”` : ''}</span>`
      : (mayAck ? `<button type="button" class="ack" data-ack="${esc(a.id)}" aria-label="Acknowledge: ${esc(a.message || a.rule)}">Acknowledge</button>` : '<span class="unacked">not acknowledged</span>');
    return `<li class="${critical ? 'critical' : 'warning'}${a.acknowledged_at ? ' is-acked' : ''}" data-alert="${esc(a.id)}">
      <span class="sev ${critical ? 'bad' : 'warn'}">${critical ? '✖ CRITICAL' : '⚠ WARNING'}</span><span class="since">since ${localHM(a.started_at)}</span>
      <span class="msg">${esc(a.message || a.rule)}</span>${acked}</li>`;
  }).join('');
  for (const button of host.querySelectorAll('button.ack')) {
    button.onclick = () => openAck(button.dataset.ack);
  }
  // Show what fits the panel, then say how many more there are (no scrolling on a wall).
  const bottom = host.getBoundingClientRect().bottom;
  const overflows = () => host.lastElementChild
    && host.lastElementChild.getBoundingClientRect().bottom > bottom + 1;
  if (!overflows()) return;
  const more = document.createElement('li');
  more.className = 'more';
  host.appendChild(more);
  let count = alerts.length;
  do {
    more.previousElementSibling.remove();
    count -= 1;
    more.textContent = `+ ${alerts.length - count} more alert${alerts.length - count === 1 ? '' : 's'}`;
  } while (count > 1 && overflows());
}

function openAck(id) {
  const host = document.getElementById('alerts');
  const item = [...host.querySelectorAll('li[data-alert]')].find((li) => li.dataset.alert === id);
  const alert = (state.alerts[state.room] || new Map()).get(id);
  if (!item || !alert) return;
  state.ackOpen = id;
  const button = item.querySelector('button.ack');
  const form = document.createElement('form');
  form.className = 'ack-form';
  form.innerHTML = `<label for="ack-note">Note (optional)</label>
    <input id="ack-note" name="note" maxlength="500" placeholder="e.g. seen, calling in two more handlers">
    <button type="submit">Confirm acknowledge</button> <button type="button" class="cancel">Cancel</button>
    <span class="ack-error" role="alert"></span>`;
  button.replaceWith(form);
  form.querySelector('input').focus();
  const close = () => { state.ackOpen = null; state.alertsShown = ''; renderAlerts(); };
  form.querySelector('.cancel').onclick = close;
  form.onkeydown = (ev) => { if (ev.key === 'Escape') close(); };
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const note = form.querySelector('input').value.trim();
    try {
      const acked = await api(`/api/v1/rooms/${encodeURIComponent(alert.room)}/alerts/${encodeURIComponent(id)}/acknowledge`,
        { method: 'POST', body: { started_at: alert.started_at, note: note || null } });
      (state.alerts[acked.room] || new Map()).set(acked.id, acked);
      renderTabs();
    } catch (err) {
      if (err instanceof AccessError) { report(err); return; }
      form.querySelector('.ack-error').textContent = err.message;
      if (!(err instanceof RequestError) || err.status !== 409) return;
    }
    close();
    loadHistory();
  };
}

async function loadHistory() {
  const details = document.getElementById('history');
  if (!details.open || !state.room) return;
  const body = document.getElementById('history-body');
  const live = state.live[state.room];
  const end = Math.max(Date.now(), live && live.now ? Date.parse(live.now) : 0) + 60000;
  let rows;
  try {
    rows = await api(`/api/v1/rooms/${encodeURIComponent(state.room)}/alerts/history?start=${encodeURIComponent(new Date(end - DAY).toISOString())}&end=${encodeURIComponent(new Date(end).toISOString())}`);
  } catch (err) {
    body.textContent = err instanceof RequestError && err.status === 503 ? 'No history store on this server.' : `Could not load the history: ${err.message}`;
    return;
  }
  if (!rows.length) { body.innerHTML = '<p class="none">No alerts in the last 24 hours.</p>'; return; }
  body.innerHTML = `<table class="history-table"><caption class="sr-only">Alert episodes of ${esc(state.room)}, newest first</caption>
    <thead><tr><th scope="col">Started</th><th scope="col">Alert</th><th scope="col">Acknowledged</th><th scope="col">Resolved</th></tr></thead><tbody>${
    rows.slice().reverse().map((e) => `<tr><td>${localHM(e.started_at)}</td><td>${esc(e.message || e.rule)}</td>
      <td>${e.acknowledged_at ? `${esc(e.acknowledged_by || '')} ${localHM(e.acknowledged_at)}${e.note ? `: ${esc(e.note)}` : ''}` : '—'}</td>
      <td>${e.resolved_at ? localHM(e.resolved_at) : 'firing'}</td></tr>`).join('')}</tbody></table>`;
}

// -- charts (hand-drawn SVG) --------------------------------------------------------------------

// Charts are drawn at their on-screen pixel size, so that labels stay readable on a wall.
let W = 720;
let H = 185;
const PAD = { left: 42, right: 8, top: 6, bottom: 20 };

function renderCharts() {
  const room = state.room;
  const live = state.live[room];
  const map = state.intervals[room];
  if (!room || !map) return;
  const nowMs = live && live.now ? Date.parse(live.now) : Date.now();
  const end = floorQuarter(nowMs) + QUARTER;
  const start = end - DAY;
  const byLine = {};
  for (const record of map.values()) {
    const t = Date.parse(record.interval_start);
    if (t < start || t >= end) continue;
    (byLine[record.line] || (byLine[record.line] = [])).push(record);
  }
  const lines = roomLines(room);
  for (const line of lines) {
    const box = lineCard(line).querySelector('.line-charts');
    W = Math.max(280, box.clientWidth);
    H = lines.length >= 3 ? 96 : 132;
    const records = (byLine[line] || []).sort((a, b) => a.interval_start.localeCompare(b.interval_start));
    const forecast = state.forecasts[`${room}|${line}`] || [];
    const target = profile(line).service_level_target;
    const opened = [...box.querySelectorAll('details')].map((d) => d.open);
    box.innerHTML = `
      <figure class="chart"><h3>Calls offered per 15 min, last 24 h<span class="key">▮ actual${forecast.length ? ' &nbsp;╌ forecast (band: range)' : ''}</span></h3>${offeredChart(records, forecast, start, end)}${chartTable(`Calls offered per 15 minutes on line ${line}`, ['Interval', 'Offered', 'Forecast'], records.map((r) => {
    const f = forecast.find((x) => x.interval_start === r.interval_start);
    return [localHM(r.interval_start), String(r.offered ?? 0), f && isNum(f.calls) ? String(Math.round(f.calls)) : '—'];
  }))}</figure>
      <figure class="chart"><h3>Service level per 15 min<span class="key">● met &nbsp;▼ missed &nbsp;╌ target ${pct(target, 0)}</span></h3>${serviceChart(records, target, start, end)}${chartTable(`Service level per 15 minutes on line ${line} (target ${pct(target, 0)})`, ['Interval', 'Service level', 'Target'], records.filter((r) => r.service_level && isNum(r.service_level.answered)).map((r) => [localHM(r.interval_start), pct(r.service_level.answered), r.service_level.answered < target ? 'missed' : 'met']))}</figure>${accuracyNote(state.accuracy[`${room}|${line}`])}`;
    box.querySelectorAll('details').forEach((d, i) => { d.open = Boolean(opened[i]); });
  }
}

function chartTable(caption, heads, rows) {
  // The chart as a table, for screen readers and anyone who wants the numbers.
  return `<details class="chart-table"><summary>Table<span class="sr-only">: ${esc(caption)}</span></summary>
    <table><caption class="sr-only">${esc(caption)}</caption><thead><tr>${heads.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr></thead>
    <tbody>${rows.slice().reverse().map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table></details>`;
}

function accuracyNote(acc) {
  // Forecast accuracy: the chosen method's backtest WAPE against what a scheduler would do by hand.
  if (!acc || !Array.isArray(acc.methods)) return '';
  const wape = (name) => (acc.methods.find((m) => m.method === name) || {}).wape;
  const describe = (name) => esc((acc.methods.find((m) => m.method === name) || {}).description || name);
  const chosen = wape(acc.chosen);
  const parts = [`<strong>${describe(acc.chosen)}</strong> WAPE ${pct(chosen, 1)}`];
  if (acc.best_simple && acc.best_simple !== acc.chosen) parts.push(`best simple (${describe(acc.best_simple)}) ${pct(wape(acc.best_simple), 1)}`);
  if (acc.chosen !== 'seasonal_naive' && acc.best_simple !== 'seasonal_naive') parts.push(`seasonal naive ${pct(wape('seasonal_naive'), 1)}`);
  if (isNum(acc.noise_floor)) parts.push(`noise floor ${pct(acc.noise_floor, 1)}`);
  return `<p class="forecast-accuracy muted">Forecast accuracy (${acc.weeks}-week backtest): ${parts.join(' · ')}</p>`;
}

function xOf(t, start, end) { return PAD.left + ((t - start) / (end - start)) * (W - PAD.left - PAD.right); }

function yOf(v, max, min = 0) { return H - PAD.bottom - ((v - min) / (max - min)) * (H - PAD.top - PAD.bottom); }

function axes(start, end, max, format, min = 0) {
  const parts = [];
  for (let i = 0; i <= 2; i += 1) {
    const v = min + ((max - min) * i) / 2;
    const y = yOf(v, max, min);
    parts.push(`<line class="axis" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}"/>`,
      `<text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end">${format(v)}</text>`);
  }
  const firstTick = Math.ceil(start / (3 * 3600000)) * 3 * 3600000;
  for (let t = firstTick; t <= end; t += 3 * 3600000) {
    const x = xOf(t, start, end);
    parts.push(`<line class="axis" x1="${x}" x2="${x}" y1="${H - PAD.bottom}" y2="${H - PAD.bottom + 5}"/>`,
      `<text x="${x}" y="${H - 5}" text-anchor="middle">${fmtHM.format(t)}</text>`);
  }
  return parts.join('');
}

function niceMax(v) {
  // A round maximum whose half is a whole number too (the middle grid line).
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function offeredChart(records, forecast, start, end) {
  const inRange = forecast.filter((f) => { const t = Date.parse(f.interval_start); return t >= start && t < end; });
  const max = niceMax(Math.max(1, ...records.map((r) => r.offered || 0), ...inRange.map((f) => f.calls_upper || f.calls || 0)));
  const slot = (W - PAD.left - PAD.right) / 96;
  const bars = records.map((r) => {
    const x = xOf(Date.parse(r.interval_start), start, end);
    const y = yOf(r.offered || 0, max);
    return `<rect class="bar${r.final ? '' : ' open'}" x="${(x + 0.6).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, slot - 1.2).toFixed(1)}" height="${(H - PAD.bottom - y).toFixed(1)}"><title>${localHM(r.interval_start)}: ${r.offered} offered</title></rect>`;
  }).join('');
  let overlay = '';
  if (inRange.length) {
    const mid = (f) => xOf(Date.parse(f.interval_start), start, end) + slot / 2;
    const upper = inRange.map((f) => `${mid(f).toFixed(1)},${yOf(f.calls_upper ?? f.calls, max).toFixed(1)}`);
    const lower = inRange.map((f) => `${mid(f).toFixed(1)},${yOf(f.calls_lower ?? f.calls, max).toFixed(1)}`).reverse();
    overlay = `<polygon class="band" points="${upper.concat(lower).join(' ')}"/>
      <polyline class="forecast" points="${inRange.map((f) => `${mid(f).toFixed(1)},${yOf(f.calls, max).toFixed(1)}`).join(' ')}"/>`;
  }
  const empty = records.length ? '' : `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">No intervals in the last 24 hours yet</text>`;
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="calls offered per 15 minutes">${axes(start, end, max, (v) => String(Math.round(v)))}${bars}${overlay}${empty}</svg>`;
}

function serviceChart(records, target, start, end) {
  const slot = (W - PAD.left - PAD.right) / 96;
  const points = records.filter((r) => r.service_level && isNum(r.service_level.answered))
    .map((r) => ({ x: xOf(Date.parse(r.interval_start), start, end) + slot / 2, v: r.service_level.answered, r }));
  // The axis starts at the nearest 10 % below the lowest value (or the target): dips stay visible.
  const low = Math.min(target, ...points.map((p) => p.v));
  const min = Math.max(0, Math.floor((low - 0.05) * 10) / 10);
  const y = (v) => yOf(v, 1, min);
  const ty = y(target);
  const path = points.length > 1 ? `<polyline class="sl" points="${points.map((p) => `${p.x.toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')}"/>` : '';
  const marks = points.map((p) => {
    const py = y(p.v);
    const tip = `<title>${localHM(p.r.interval_start)}: ${pct(p.v)} (${p.v < target ? 'missed' : 'met'} target)</title>`;
    return p.v < target
      ? `<path class="miss" d="M${(p.x - 4).toFixed(1)},${(py - 3).toFixed(1)} L${(p.x + 4).toFixed(1)},${(py - 3).toFixed(1)} L${p.x.toFixed(1)},${(py + 4).toFixed(1)} Z">${tip}</path>`
      : `<circle class="hit" cx="${p.x.toFixed(1)}" cy="${py.toFixed(1)}" r="2.6">${tip}</circle>`;
  }).join('');
  const empty = points.length ? '' : `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">No answered calls in the last 24 hours yet</text>`;
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="service level per 15 minutes against target">${axes(start, end, 1, (v) => `${Math.round(v * 100)}%`, min)}<line class="target" x1="${PAD.left}" x2="${W - PAD.right}" y1="${ty}" y2="${ty}"/>${path}${marks}${empty}</svg>`;
}

// -- clock, freshness, start ------------------------------------------------------------------

function tick() {
  const now = Date.now();
  document.getElementById('clock').textContent = fmtClock.format(now);
  const zone = fmtZone.formatToParts(now).find((p) => p.type === 'timeZoneName');
  document.getElementById('clock-date').textContent = `${fmtDate.format(now)} ${zone ? zone.value : ''}`;
  const fresh = document.getElementById('freshness');
  if (!state.lastLiveAt) { fresh.textContent = ''; return; }
  const age = Math.round((now - state.lastLiveAt) / 1000);
  fresh.classList.toggle('stale', age > STALE_SECONDS);
  fresh.textContent = age > STALE_SECONDS ? `⚠ NO UPDATE FOR ${words(age)}` : `updated ${age} s ago`;
}

function report(err) {
  if (err instanceof AccessError) {
    showSignIn(err.message);
    return;
  }
  console.warn('pacesetter dashboard:', err);
}

async function refresh() {
  try {
    await loadRooms();
    await loadRoom(state.room);
    if (state.live[state.room]) state.lastLiveAt = Date.now();
    render();
  } catch (err) {
    report(err);
  }
}

async function start() {
  try {
    const session = await loadSession();
    if (session.tokens_required && !session.signed_in) {
      showSignIn('');
      return;
    }
    await loadRooms();
    await loadRoom(state.room);
    if (state.live[state.room]) state.lastLiveAt = Date.now();
    render();
    connect();
  } catch (err) {
    report(err);
    if (!(err instanceof AccessError)) setTimeout(start, 5000);
  }
}

let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(renderCharts, 200);
});

tick();
setInterval(tick, 1000);
document.getElementById('signin').addEventListener('submit', signIn);
document.getElementById('history').addEventListener('toggle', loadHistory);

window.addEventListener('hashchange', () => {
  const room = decodeURIComponent(window.location.hash.slice(1));
  if (room && room !== state.room && state.rooms.some((r) => r.room === room)) selectRoom(room);
});

start();

// Pacesetter: every room at a glance, worst first, live over /api/v1/stream (no framework).
'use strict';

const TZ = 'Europe/London';
const fmtClock = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const TODAY_REFRESH_MS = 15000;

const rows = new Map();          // room -> overview row (GET /api/v1/overview), kept live
const timing = { renders: [], firstRenderMs: null, lastLiveAt: 0 };
window.pacesetterRooms = timing;  // read by benchmarks/bench_rooms.py
let renderDue = false;
let todayDue = null;

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function isNum(x) { return typeof x === 'number' && Number.isFinite(x); }
function pct(x) { return isNum(x) ? `${(x * 100).toFixed(1)} %` : '—'; }
function clockDuration(s) {
  if (!isNum(s) || s <= 0) return '0:00';
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' });
  if (response.status === 401 || response.status === 403) throw new AccessError();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}
class AccessError extends Error {}

function notice(html) {
  const el = document.getElementById('notice');
  el.hidden = !html;
  el.innerHTML = html || '';
}

function setConnection(kind) {
  const el = document.getElementById('connection');
  el.className = `pill pill-${kind}`;
  el.textContent = kind === 'ok' ? '● LIVE' : kind === 'wait' ? '○ RECONNECTING' : '✕ NOT SIGNED IN';
}

// -- figures -----------------------------------------------------------------------------------

function fromLive(row, live) {
  // Alerts come from the overview and `alert` events (which carry acknowledgements), not here.
  const lines = live.lines || {};
  const l999 = lines['999'] || {};
  const l101 = lines['101'] || {};
  row.now = live.now;
  row.mode = live.mode;
  row.service_level_999_now = ((l999.interval || {}).service_level || {}).answered ?? null;
  row.abandonment_101_60m = (l101.rolling_60m || {}).abandonment_rate ?? null;
  const figures = Object.values(lines).filter((f) => f && typeof f === 'object');
  row.calls_waiting = figures.reduce((n, f) => n + (f.in_queue || 0), 0);
  row.longest_wait_seconds = Math.max(0, ...figures.filter((f) => f.in_queue > 0).map((f) => f.longest_wait_seconds || 0));
}

function derive(row) {
  const alerts = row.alerts || [];
  row.incidents_beyond_target = alerts.filter((a) => a.rule === 'incident_awaiting_beyond_target').length;
  const open = alerts.filter((a) => !a.acknowledged_at);
  row.unacknowledged = open.length;
  row.unacknowledgedCritical = open.filter((a) => a.severity === 'critical').length;
  row.slBad = isNum(row.service_level_999_now) && row.service_level_999_now < row.service_level_999_target;
  row.slTodayBad = isNum(row.service_level_999_today) && row.service_level_999_today < row.service_level_999_target;
  const standard = row.abandonment_101_standard;
  row.abBad = isNum(standard) && isNum(row.abandonment_101_60m) && row.abandonment_101_60m > standard;
  row.abTodayBad = isNum(standard) && isNum(row.abandonment_101_today) && row.abandonment_101_today > standard;
  row.score = (row.slBad ? 1000 : 0) + (row.abBad ? 400 : 0) + (row.slTodayBad ? 200 : 0)
    + row.unacknowledgedCritical * 60 + (row.unacknowledged - row.unacknowledgedCritical) * 25
    + row.incidents_beyond_target * 40 + Math.min(row.calls_waiting || 0, 30);
}

function worstFirst(a, b) {
  return b.score - a.score
    || (a.service_level_999_now ?? 2) - (b.service_level_999_now ?? 2)
    || a.room.localeCompare(b.room);
}

function cell(text, bad, mark) {
  return `<td class="${bad ? 'bad' : ''}">${bad ? `<span aria-hidden="true">${mark} </span>` : ''}${esc(text)}${bad ? '<span class="sr-only"> (outside target)</span>' : ''}</td>`;
}

function render() {
  renderDue = false;
  const started = performance.now();
  const list = [...rows.values()];
  list.forEach(derive);
  list.sort(worstFirst);
  const body = document.getElementById('overview-body');
  body.innerHTML = list.map((r) => `<tr data-room="${esc(r.room)}" class="${r.score >= 1000 ? 'row-bad' : r.score > 0 ? 'row-warn' : ''}">
    <th scope="row"><a href="/#${encodeURIComponent(r.room)}">${esc(r.room)}</a>${r.mode === 'replay' ? ' <small>replay</small>' : ''}</th>
    ${cell(pct(r.service_level_999_now), r.slBad, '▼')}${cell(pct(r.service_level_999_today), r.slTodayBad, '▼')}
    ${cell(pct(r.abandonment_101_60m), r.abBad, '▲')}${cell(pct(r.abandonment_101_today), r.abTodayBad, '▲')}
    <td data-figure="waiting">${r.calls_waiting ?? 0}</td><td>${clockDuration(r.longest_wait_seconds)}</td>
    ${cell(String(r.incidents_beyond_target), r.incidents_beyond_target > 0, '▲')}
    ${cell(String(r.unacknowledged), r.unacknowledged > 0, '▲')}</tr>`).join('');
  const late = list.filter((r) => r.slBad).length;
  const open = list.reduce((n, r) => n + r.unacknowledged, 0);
  document.getElementById('summary').textContent = `${list.length} rooms · ${late} below 999 target · ${open} alerts not acknowledged`;
  const done = performance.now();
  if (timing.firstRenderMs === null) timing.firstRenderMs = done;
  timing.renders.push({ at: done, took: done - started, rooms: list.length });
  if (timing.renders.length > 500) timing.renders.splice(0, 250);
}

function scheduleRender() {
  if (renderDue) return;
  renderDue = true;
  requestAnimationFrame(render);
}

async function loadOverview() {
  const list = await api('/api/v1/overview');
  for (const row of list) {
    const known = rows.get(row.room);
    // "today" comes from the server; "now" figures may be newer here, from the stream.
    if (known && known.now && row.now && Date.parse(known.now) > Date.parse(row.now)) {
      Object.assign(known, { service_level_999_today: row.service_level_999_today, abandonment_101_today: row.abandonment_101_today });
    } else {
      rows.set(row.room, row);
    }
  }
  scheduleRender();
}

function scheduleToday() {
  if (todayDue) return;
  todayDue = setTimeout(() => { todayDue = null; loadOverview().catch(report); }, TODAY_REFRESH_MS);
}

function onLive(live) {
  timing.lastLiveAt = performance.now();
  let row = rows.get(live.room);
  if (!row) { scheduleToday(); return; }  // a new room: its row comes with the next overview
  fromLive(row, live);
  scheduleRender();
}

function onAlert(alert) {
  const row = rows.get(alert.room);
  if (!row) return;
  const others = (row.alerts || []).filter((a) => a.id !== alert.id);
  row.alerts = alert.state === 'firing' ? [...others, alert] : others;
  scheduleRender();
}

function connect() {
  const source = new EventSource('/api/v1/stream');
  let dropped = false;
  source.onopen = () => { setConnection('ok'); if (dropped) { dropped = false; loadOverview().catch(report); } };
  source.onerror = () => { dropped = true; setConnection('wait'); };
  source.addEventListener('live', (ev) => onLive(JSON.parse(ev.data)));
  source.addEventListener('alert', (ev) => onAlert(JSON.parse(ev.data)));
  source.addEventListener('interval', scheduleToday);
}

function report(err) {
  if (err instanceof AccessError) {
    setConnection('bad');
    notice('Sign in on <a href="/">the dashboard</a> first, then come back to this page.');
    return;
  }
  console.warn('pacesetter rooms:', err);
}

async function start() {
  try {
    const session = await api('/api/v1/session');
    if (session.tokens_required && !session.signed_in) throw new AccessError();
    await loadOverview();
    connect();
  } catch (err) {
    report(err);
    if (!(err instanceof AccessError)) setTimeout(start, 5000);
  }
}

function tick() { document.getElementById('clock').textContent = fmtClock.format(Date.now()); }
tick();
setInterval(tick, 1000);
start();

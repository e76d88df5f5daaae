// orderflow operator console. Plain JavaScript, no framework and no build
// step: the gateway embeds this file and serves it at /console/app.js.
// Every call goes to the gateway's own /api and /admin endpoints with the
// admin token the operator entered, kept in sessionStorage for this tab.
// The DOM is built with createElement (never innerHTML from data), so
// nothing an event carries can run as markup.
'use strict';

const TOKEN_KEY = 'orderflow.console.token';
const STATUSES = ['running', 'compensating', 'completed', 'compensated', 'failed'];
const TERMINAL = new Set(['completed', 'compensated', 'failed']);
const AGES = [
  ['', 'any time'], ['15m', 'last 15 minutes'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['168h', 'last 7 days'],
];

const state = {
  stats: null,          // the last GET /admin/sagas/stats
  projections: null,    // the last GET /admin/projections
  replays: new Map(),   // projection name -> {before, seen, percent, phase, done, error}
  retrying: new Set(),  // saga ids whose retry is being followed
  view: null,           // the rendered view: {name, refresh(), onSaga(id)}
  live: null,           // the updates stream's AbortController
  defs: null,           // the saga definitions, once read
};

// ---------- small DOM helpers ----------

// h builds an element: attrs are set as attributes (on* as listeners,
// text as textContent), children appended (strings as text).
function h(tag, attrs, ...children) {
  const svg = ['svg', 'g', 'rect', 'line', 'path', 'text', 'title', 'defs', 'marker', 'polygon'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

function fmtClock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const ms = String(d.getMilliseconds()).padStart(3, '0');
  return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + ms;
}

function fmtDur(ms) {
  if (ms === undefined || ms === null || isNaN(ms) || ms < 0) return '';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  const m = Math.floor(ms / 60000);
  if (m < 120) return m + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function badge(status) { return h('span', { class: 'badge ' + status, text: status }); }

function announce(msg) {
  const el = $('#announce');
  if (el) el.textContent = msg;
}

// ---------- token and API ----------

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

class HTTPError extends Error {
  constructor(status, detail) { super(detail || ('HTTP ' + status)); this.status = status; }
}

// api calls the gateway; a 401 forgets the token and asks for it again.
async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + token(), Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (res.status === 401) {
    signOut('The gateway refused the token (expired or not valid); enter it again.');
    throw new HTTPError(401, 'not signed in');
  }
  if (!res.ok) throw new HTTPError(res.status, (data && (data.detail || data.title)) || ('HTTP ' + res.status));
  return { status: res.status, data };
}

function showLogin(message) {
  $('#login').hidden = false;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#view').replaceChildren();
  $('#login-error').textContent = message || '';
  $('#token').value = '';
  $('#token').focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  state.view = null;
  showLogin(message);
}

async function signIn(ev) {
  ev.preventDefault();
  const tok = $('#token').value.trim().replace(/^Bearer\s+/i, '');
  if (!tok) return;
  const res = await fetch('/api/sagas?limit=1', { headers: { Authorization: 'Bearer ' + tok }, cache: 'no-store' })
    .catch(() => null);
  let refusal = '';
  if (!res) refusal = 'The gateway does not answer.';
  else if (res.status === 401) refusal = 'The gateway refused this token.';
  else if (res.status === 403) refusal = 'This token is not an admin token.';
  if (refusal) {
    $('#login-error').textContent = refusal;
    if (res) $('#token').value = ''; // a refused token is of no further use
    $('#token').focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, tok);
  start();
}

function start() {
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  if (!location.hash || location.hash === '#') location.hash = '#/sagas';
  else route();
  startLive();
}

// ---------- routing ----------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q] = raw.split('?');
  return { parts: p.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q || '') };
}

function route() {
  if (!token()) { showLogin(); return; }
  const { parts, query } = parseHash();
  const name = parts[0] || 'sagas';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === (name === 'saga' ? 'sagas' : name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = $('#view');
  view.replaceChildren(h('p', { id: 'announce', role: 'status', 'aria-live': 'polite' }));
  switch (name) {
    case 'saga': state.view = sagaView(view, parts[1]); break;
    case 'definitions': state.view = definitionsView(view); break;
    case 'projections': state.view = projectionsView(view); break;
    default: state.view = sagasView(view, query);
  }
  $('#main').focus({ preventScroll: true });
}

// ---------- live updates: fetch + a stream reader on /admin/updates ----------

function setLive(on, text) {
  const el = $('#live');
  el.className = 'live ' + (on ? 'on' : 'off');
  el.textContent = text;
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  setLive(false, 'offline');
}

// startLive keeps one stream open, reconnecting with a growing, jittered
// delay (1 s doubling to 30 s) that resets once events flow again.
function startLive() {
  stopLive();
  const ctrl = new AbortController();
  state.live = ctrl;
  let delay = 1000;
  (async () => {
    while (!ctrl.signal.aborted && token()) {
      try {
        await readUpdates(ctrl.signal, () => { delay = 1000; });
      } catch (e) {
        if (ctrl.signal.aborted) return;
        if (e instanceof HTTPError && e.status === 401) { signOut('The gateway refused the token; enter it again.'); return; }
      }
      if (ctrl.signal.aborted) return;
      setLive(false, 'reconnecting');
      // While the stream is down the view is refreshed by hand, so
      // nothing on the page is older than one delay.
      if (state.view && state.view.refresh) state.view.refresh();
      await new Promise((r) => setTimeout(r, delay * (0.75 + Math.random() / 2)));
      delay = Math.min(delay * 2, 30000);
    }
  })();
}

async function readUpdates(signal, onEvent) {
  const res = await fetch('/admin/updates', {
    headers: { Authorization: 'Bearer ' + token(), Accept: 'text/event-stream' }, signal, cache: 'no-store',
  });
  if (!res.ok) throw new HTTPError(res.status, 'updates: HTTP ' + res.status);
  setLive(true, 'live');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('updates: stream ended');
    buf += value.replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = parseEvent(block);
      if (ev) { onEvent(); dispatch(ev.event, ev.data); }
    }
  }
}

// parseEvent reads one text/event-stream block; comments (": ping") and
// blocks without data give null.
function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  return { event, data: data.join('\n') };
}

function dispatch(event, text) {
  let data;
  try { data = JSON.parse(text); } catch (e) { return; }
  switch (event) {
    case 'sagas':
      state.stats = data;
      if (state.view && state.view.onStats) state.view.onStats(data);
      break;
    case 'projections':
      applyProjections(data);
      break;
    case 'saga':
      if (state.view && state.view.onSaga && data.saga_id) state.view.onSaga(data.saga_id, data);
      break;
  }
}

// ---------- saga list ----------

function sinceFor(age) {
  const m = /^(\d+)([mh])$/.exec(age || '');
  if (!m) return '';
  const ms = Number(m[1]) * (m[2] === 'h' ? 3600000 : 60000);
  return new Date(Date.now() - ms).toISOString();
}

function sagasView(root, query) {
  const filters = { status: query.get('status') || '', type: query.get('type') || '', age: query.get('age') || '' };
  const counts = h('div', { class: 'counts', role: 'group', 'aria-label': 'Sagas per status' });
  const typeSel = h('select', { id: 'f-type', name: 'type' }, h('option', { value: '', text: 'all types' }));
  const statusSel = h('select', { id: 'f-status', name: 'status' }, h('option', { value: '', text: 'all statuses' }),
    STATUSES.map((s) => h('option', { value: s, text: s })));
  const ageSel = h('select', { id: 'f-age', name: 'age' }, AGES.map(([v, t]) => h('option', { value: v, text: t })));
  statusSel.value = filters.status;
  ageSel.value = filters.age;
  const form = h('form', { class: 'filters', 'aria-label': 'Filter sagas', onsubmit: (e) => { e.preventDefault(); apply(); } },
    h('div', {}, h('label', { for: 'f-status', text: 'Status' }), statusSel),
    h('div', {}, h('label', { for: 'f-type', text: 'Type' }), typeSel),
    h('div', {}, h('label', { for: 'f-age', text: 'Started' }), ageSel),
    h('div', {}, h('button', { type: 'submit', text: 'Apply' })));
  for (const sel of [statusSel, typeSel, ageSel]) sel.addEventListener('change', apply);
  const tbody = h('tbody', { id: 'saga-rows' });
  const table = h('table', { 'aria-label': 'Sagas' },
    h('thead', {}, h('tr', {}, ['Saga', 'Type', 'Status', 'Step', 'Order', 'Started', 'Duration', ''].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  const pager = h('div', { class: 'pager' });
  const error = h('p', { class: 'error', role: 'alert' });
  root.append(h('h2', { text: 'Sagas' }), counts, form, error, table, pager);

  let cursors = [''];
  let page = 0;
  // Sagas retried from this list stay in it, updated, until the filters
  // change: the operator sees the retry end even when the saga no longer
  // matches (it is not failed any more).
  const pinned = new Map();

  function apply() {
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (typeSel.value) q.set('type', typeSel.value);
    if (ageSel.value) q.set('age', ageSel.value);
    const target = '#/sagas' + (q.toString() ? '?' + q : '');
    if (location.hash !== target) history.replaceState(null, '', target);
    filters.status = statusSel.value; filters.type = typeSel.value; filters.age = ageSel.value;
    cursors = ['']; page = 0;
    pinned.clear();
    renderCounts();
    load();
  }

  function renderCounts() {
    const st = state.stats;
    const c = (st && st.counts) || {};
    counts.replaceChildren(...STATUSES.map((s) => h('button', {
      type: 'button', class: 'count ' + s, 'data-status': s, 'aria-pressed': String(filters.status === s),
      onclick: () => { statusSel.value = filters.status === s ? '' : s; apply(); },
    }, h('b', { text: st ? String(c[s] || 0) : '–' }), s)));
    if (st && Array.isArray(st.types)) {
      const have = new Set([...typeSel.options].map((o) => o.value));
      for (const t of st.types) if (!have.has(t)) typeSel.append(h('option', { value: t, text: t }));
    }
    typeSel.value = filters.type;
    if (typeSel.value !== filters.type && filters.type) {
      typeSel.append(h('option', { value: filters.type, text: filters.type }));
      typeSel.value = filters.type;
    }
  }

  function row(s) {
    const started = Date.parse(s.started_at);
    const ended = s.ended_at ? Date.parse(s.ended_at) : (TERMINAL.has(s.status) ? NaN : Date.now());
    const action = h('td', {});
    if (s.status === 'failed' || state.retrying.has(s.saga_id)) {
      const b = h('button', { type: 'button', class: 'retry', 'data-focus': 'retry-' + s.saga_id, 'aria-label': 'Retry saga ' + s.saga_id, text: 'Retry' });
      if (state.retrying.has(s.saga_id)) { b.disabled = true; b.textContent = 'Retrying…'; }
      b.addEventListener('click', () => {
        pinned.set(s.saga_id, s);
        retrySaga(s.saga_id, b, (v) => { pinned.set(v.saga_id, v); replaceRow(v); });
      });
      action.append(b);
    }
    return h('tr', { 'data-saga-id': s.saga_id, 'data-status': s.status },
      h('td', {}, h('a', { href: '#/saga/' + encodeURIComponent(s.saga_id), class: 'mono', 'data-focus': 'link-' + s.saga_id, text: s.saga_id.slice(0, 8) + '…', title: s.saga_id })),
      h('td', { text: s.type }),
      h('td', { class: 'status' }, badge(s.status)),
      h('td', { text: s.current_step || '' }),
      h('td', { class: 'mono', text: (s.order_id || '').slice(0, 8) + '…', title: s.order_id }),
      h('td', { text: fmtTime(s.started_at) }),
      h('td', { class: 'num', text: isNaN(ended) ? '' : fmtDur(ended - started) }),
      action);
  }

  function replaceRow(s) {
    const old = tbody.querySelector(`tr[data-saga-id="${CSS.escape(s.saga_id)}"]`);
    if (!old) return;
    const focused = document.activeElement && old.contains(document.activeElement);
    const fresh = row(s);
    old.replaceWith(fresh);
    if (focused) (fresh.querySelector('a') || fresh).focus();
  }

  // Loads overlap (a filter change, a live update, a page turn); only the
  // answer to the latest one may draw the list, or an answer to older
  // filters arriving last would replace the list the filters ask for.
  let loads = 0;
  async function load() {
    const mine = ++loads;
    const q = new URLSearchParams();
    if (filters.status) q.set('status', filters.status);
    if (filters.type) q.set('type', filters.type);
    const since = sinceFor(filters.age);
    if (since) q.set('started_after', since);
    q.set('limit', '25');
    if (cursors[page]) q.set('after', cursors[page]);
    try {
      const { data } = await api('GET', '/api/sagas?' + q);
      if (mine !== loads) return;
      error.textContent = '';
      const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : '';
      const listed = new Set(data.items.map((s) => s.saga_id));
      const items = page === 0 ? [...[...pinned.values()].filter((s) => !listed.has(s.saga_id)), ...data.items] : data.items;
      for (const s of data.items) if (pinned.has(s.saga_id)) pinned.set(s.saga_id, s);
      tbody.replaceChildren(...(items.length ? items.map(row)
        : [h('tr', {}, h('td', { colspan: 8, class: 'note', text: 'No sagas match.' }))]));
      if (focusKey) { const f = tbody.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`); if (f) f.focus(); }
      cursors[page + 1] = data.next || '';
      pager.replaceChildren(
        h('button', { type: 'button', class: 'secondary', disabled: page === 0, onclick: () => { page--; load(); }, text: '← Newer' }),
        h('button', { type: 'button', class: 'secondary', disabled: !data.next, onclick: () => { page++; load(); }, text: 'Older →' }));
    } catch (e) {
      if (mine === loads && e.status !== 401) error.textContent = 'Cannot list sagas: ' + e.message;
    }
  }

  async function loadStats() {
    try {
      const { data } = await api('GET', '/admin/sagas/stats');
      state.stats = data;
    } catch (e) { /* the counts stay as they were */ }
    renderCounts();
  }

  renderCounts();
  loadStats();
  load();
  return {
    name: 'sagas',
    refresh() { loadStats(); load(); },
    onStats() { renderCounts(); if (page === 0) load(); },
    async onSaga(id) {
      if (!tbody.querySelector(`tr[data-saga-id="${CSS.escape(id)}"]`)) return;
      try { replaceRow((await api('GET', '/api/sagas/' + encodeURIComponent(id))).data); } catch (e) { /* next update */ }
    },
  };
}

// retrySaga asks the coordinator to resume a failed saga and follows it
// until it ends again, calling update with each state it reads.
async function retrySaga(id, button, update) {
  button.disabled = true;
  button.textContent = 'Retrying…';
  state.retrying.add(id);
  try {
    await api('POST', '/api/sagas/' + encodeURIComponent(id) + '/retry', {});
    announce('Retry of saga ' + id + ' accepted.');
    const deadline = Date.now() + 120000;
    let v;
    do {
      await new Promise((r) => setTimeout(r, 500));
      v = (await api('GET', '/api/sagas/' + encodeURIComponent(id))).data;
      if (TERMINAL.has(v.status)) state.retrying.delete(id);
      update(v);
    } while (!TERMINAL.has(v.status) && Date.now() < deadline);
    announce('Saga ' + id + ' is ' + v.status + '.');
  } catch (e) {
    state.retrying.delete(id);
    button.disabled = false;
    button.textContent = 'Retry';
    announce('Retry of saga ' + id + ' failed: ' + e.message);
  } finally {
    state.retrying.delete(id);
  }
}

// ---------- one saga: timeline and journey ----------

function sagaView(root, id) {
  const head = h('div', {});
  const timeline = h('div', { class: 'timeline', role: 'group', 'aria-label': 'Timeline of the steps' });
  const journey = h('div', { class: 'journey', id: 'journey' });
  const history = h('div', { class: 'history' });
  const error = h('p', { class: 'error', role: 'alert' });
  root.append(h('p', {}, h('a', { href: '#/sagas', text: '← All sagas' })), error, head,
    h('h3', { text: 'Timeline' }), timeline,
    h('div', { class: 'cols' },
      h('section', { 'aria-labelledby': 'j-title' }, h('h3', { id: 'j-title', text: 'Journey of the order across the services' }), journey),
      h('section', { 'aria-labelledby': 'h-title' }, h('h3', { id: 'h-title', text: 'Saga history' }), history)));
  let journeyFor = null;
  let journeyCount = -1;

  async function load() {
    let v;
    try {
      v = (await api('GET', '/api/sagas/' + encodeURIComponent(id))).data;
      error.textContent = '';
    } catch (e) {
      if (e.status !== 401) error.textContent = 'Cannot read saga ' + id + ': ' + e.message;
      return;
    }
    if (!state.defs) {
      try { state.defs = (await api('GET', '/admin/saga-definitions')).data.items || []; } catch (e) { state.defs = []; }
    }
    renderHead(v);
    renderTimeline(timeline, v);
    renderHistory(v);
    if (v.correlation_id && (journeyFor !== v.correlation_id || journeyCount < 0 || !TERMINAL.has(v.status) || journey.dataset.stale)) {
      journeyFor = v.correlation_id;
      loadJourney(v.correlation_id);
    } else if (!v.correlation_id) {
      journey.replaceChildren(h('p', { class: 'note', text: 'The saga does not name its correlation id, so its order\'s events cannot be gathered.' }));
    }
  }

  function renderHead(v) {
    const items = [
      ['Saga', h('span', { class: 'mono', text: v.saga_id })], ['Status', badge(v.status)],
      ['Type', `${v.type} v${v.definition_version}`], ['Current step', v.current_step || '—'],
      ['Order', h('span', { class: 'mono', text: v.order_id })], ['Started', fmtTime(v.started_at)],
      ['Ended', v.ended_at ? fmtTime(v.ended_at) : '—'],
      ['Duration', fmtDur((v.ended_at ? Date.parse(v.ended_at) : Date.now()) - Date.parse(v.started_at))],
    ];
    const actions = h('p', {});
    if (v.status === 'failed' || state.retrying.has(v.saga_id)) {
      const b = h('button', { type: 'button', class: 'retry', text: 'Retry' });
      if (state.retrying.has(v.saga_id)) { b.disabled = true; b.textContent = 'Retrying…'; }
      b.addEventListener('click', () => retrySaga(v.saga_id, b, () => load()));
      actions.append(b, ' ', h('span', { class: 'note', text: 'A compensation could not complete; retry resumes it where it was parked.' }));
    }
    head.replaceChildren(h('h2', { text: 'Saga ' + v.saga_id.slice(0, 8) }),
      h('dl', { class: 'meta', 'data-status': v.status }, items.map(([k, val]) => h('div', {}, h('dt', { text: k }), h('dd', {}, val)))),
      actions);
  }

  function renderHistory(v) {
    const rows = (v.history || []).map((e) => h('tr', {},
      h('td', { class: 'mono', text: fmtClock(e.at) }),
      h('td', { text: e.event }),
      h('td', { class: 'mono', text: summarize(e.detail) })));
    history.replaceChildren(h('table', { 'aria-label': 'Saga history' },
      h('thead', {}, h('tr', {}, ['At', 'Event', 'Detail'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows)));
  }

  async function loadJourney(corr) {
    try {
      const { data } = await api('GET', '/admin/events?correlation_id=' + encodeURIComponent(corr));
      journeyCount = data.items.length;
      delete journey.dataset.stale;
      renderJourney(journey, data);
    } catch (e) {
      journey.dataset.stale = '1';
      if (e.status !== 401) journey.replaceChildren(h('p', { class: 'error', text: 'Cannot read the order\'s events: ' + e.message }));
    }
  }

  load();
  return {
    name: 'saga',
    refresh: load,
    onSaga(sid) { if (sid === id) load(); },
    onStats() { load(); },
  };
}

function summarize(detail) {
  if (!detail) return '';
  const skip = new Set(['payload', 'data', 'command_id', 'deadline', 'retry_at']);
  return Object.entries(detail).filter(([k, v]) => !skip.has(k) && v !== '' && v !== false && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

// stepPhases reads, from the history, when each step ran forward and when
// its compensation ran, its commands (attempts), and who answered.
function stepPhases(v) {
  const by = new Map((v.steps || []).map((s) => [s.name, { fwd: null, comp: null, ticks: [], services: new Set(), compAttempts: 0, attempts: 0 }]));
  for (const e of v.history || []) {
    const d = e.detail || {};
    const p = by.get(d.step);
    if (!p) continue;
    const t = Date.parse(e.at);
    const comp = !!d.compensation;
    if (e.event === 'CommandIssued') {
      const phase = comp ? 'comp' : 'fwd';
      if (!p[phase]) p[phase] = { start: t, end: null };
      p.ticks.push({ t, comp, retry: d.attempt > 1, label: `${comp ? 'compensation' : 'command'} ${d.command || ''} attempt ${d.attempt}` });
      if (comp) p.compAttempts = Math.max(p.compAttempts, d.attempt || 0);
      else p.attempts = Math.max(p.attempts, d.attempt || 0);
      if (d.command && !p.command) p.command = d.command;
    } else if (d.from) {
      p.services.add(d.from);
      p.ticks.push({ t, comp, reply: true, label: `${e.event} from ${d.from}${d.outcome ? ' (' + d.outcome + ')' : ''}` });
    }
    if (['StepSucceeded', 'StepFailed', 'StepTimedOut'].includes(e.event) && p.fwd) p.fwd.end = t;
    if (e.event === 'CompensationDone' && p.comp) p.comp.end = t;
    if (e.event === 'AttemptTimedOut') p.ticks.push({ t, comp, timeout: true, label: `attempt ${d.attempt} timed out` });
  }
  return by;
}

function renderTimeline(root, v) {
  const phases = stepPhases(v);
  const t0 = Date.parse(v.started_at);
  const last = Math.max(t0, ...(v.history || []).map((e) => Date.parse(e.at)).filter((x) => !isNaN(x)));
  const t1 = v.ended_at ? Date.parse(v.ended_at) : (TERMINAL.has(v.status) ? last : Math.max(last, Date.now()));
  const span = Math.max(t1 - t0, 1);
  const pct = (t) => Math.min(100, Math.max(0, ((t - t0) / span) * 100));
  const defSteps = new Map();
  for (const d of state.defs || []) if (d.type === v.type) for (const s of d.steps || []) defSteps.set(s.name, s);
  const rows = (v.steps || []).map((s) => {
    const p = phases.get(s.name);
    const track = h('div', { class: 'tl-track' });
    const fwdStart = p.fwd ? p.fwd.start : Date.parse(s.started_at);
    const fwdEnd = p.fwd && p.fwd.end ? p.fwd.end : (s.ended_at && !p.comp ? Date.parse(s.ended_at) : (p.fwd && !p.fwd.end ? t1 : NaN));
    if (!isNaN(fwdStart)) {
      const end = isNaN(fwdEnd) ? t1 : fwdEnd;
      const cls = s.status === 'compensated' || s.status === 'compensating' ? (p.fwd && p.fwd.end && s.error ? 'failed' : 'succeeded') : s.status;
      const bar = h('div', { class: 'tl-bar ' + cls, title: `${s.name}: ${fmtDur(end - fwdStart)}` });
      bar.style.left = pct(fwdStart) + '%';
      bar.style.width = Math.max(pct(end) - pct(fwdStart), 0.4) + '%';
      track.append(bar);
    }
    if (p.comp) {
      const end = p.comp.end || t1;
      const c = h('div', { class: 'tl-comp', title: `compensation of ${s.name}: ${fmtDur(end - p.comp.start)}` });
      c.style.left = pct(p.comp.start) + '%';
      c.style.width = Math.max(pct(end) - pct(p.comp.start), 0.4) + '%';
      track.append(c);
    }
    for (const tk of p.ticks) {
      if (tk.reply) continue;
      const m = h('div', { class: 'tl-tick' + (tk.comp ? ' comp' : tk.retry ? ' retry' : ''), title: tk.label });
      m.style.left = pct(tk.t) + '%';
      track.append(m);
    }
    const attempts = s.attempts || p.attempts;
    const compAttempts = s.compensation_attempts || p.compAttempts;
    // Who answered, from the replies; else who would, from the
    // definition or the command's name.
    const services = [...p.services];
    const def = defSteps.get(s.name);
    const runsOn = (def && def.service) || (p.command ? p.command.split('.')[0] : '');
    const dur = !isNaN(fwdStart) && !isNaN(fwdEnd) ? fwdEnd - fwdStart : (s.duration_ms || NaN);
    const info = [
      attempts ? `${attempts} attempt${attempts === 1 ? '' : 's'}${attempts > 1 ? ` (${attempts - 1} retr${attempts === 2 ? 'y' : 'ies'})` : ''}` : 'not started',
      isNaN(dur) ? '' : fmtDur(dur),
      services.length ? 'answered by ' + services.join(', ') : (runsOn ? 'service ' + runsOn : ''),
      compAttempts ? `undone in ${compAttempts} attempt${compAttempts === 1 ? '' : 's'}${p.comp && p.comp.end ? ' · ' + fmtDur(p.comp.end - p.comp.start) : ''}` : '',
    ].filter(Boolean).join(' · ');
    return h('div', { class: 'tl-row', 'data-step': s.name, 'data-status': s.status },
      h('div', {}, h('strong', { text: s.name }), ' ', badge(s.status)),
      track,
      h('div', { class: 'tl-info' }, info, s.error ? h('div', { class: 'error', text: s.error }) : null));
  });
  root.replaceChildren(
    h('div', { class: 'tl-axis', 'aria-hidden': 'true' }, h('span', { text: fmtClock(new Date(t0).toISOString()) }),
      h('span', { text: fmtDur(span) }), h('span', { text: fmtClock(new Date(t1).toISOString()) })),
    ...rows,
    h('div', { class: 'legend' },
      h('span', {}, h('i', {}), 'step ran (colour: outcome)'), h('span', {}, h('i', { class: 'tick' }), 'command sent'),
      h('span', {}, h('i', { class: 'retry' }), 'retry'), h('span', {}, h('i', { class: 'comp' }), 'compensation (striped: undoing)')));
}

function renderJourney(root, data) {
  const items = data.items || [];
  const depth = new Map();
  for (const e of items) {
    const parent = e.metadata && e.metadata.causation_id;
    depth.set(e.event_id, depth.has(parent) ? depth.get(parent) + 1 : 0);
  }
  const out = [];
  if (data.partial) {
    out.push(h('p', { class: 'warn', role: 'note', text: 'Partial: ' + (data.missing || []).join(', ') + ' did not answer; their events are missing.' }));
  }
  if (!items.length) out.push(h('p', { class: 'note', text: 'No events carry this correlation id.' }));
  items.forEach((e, i) => {
    const d = depth.get(e.event_id) || 0;
    out.push(h('details', { 'data-event-id': e.event_id, 'data-type': e.type },
      h('summary', {},
        h('span', { class: 'note', text: String(i + 1) }),
        h('span', { class: 'mono', text: fmtClock(e.recorded_at) }),
        h('span', { class: 'svc', text: e.service }),
        h('span', {}, h('span', { class: 'depth', text: d ? '\u00a0\u00a0'.repeat(d) + '↳ ' : '' }), h('strong', { text: e.type }),
          h('span', { class: 'note', text: ` ${e.stream} v${e.version}` + (e.schema_version ? ` · schema ${e.schema_version}` : '') }))),
      h('div', {},
        h('pre', { 'aria-label': 'data' }, JSON.stringify(e.data, null, 2)),
        h('pre', { 'aria-label': 'metadata' }, JSON.stringify(Object.assign({ event_id: e.event_id, position: e.position }, e.metadata), null, 2)))));
  });
  root.replaceChildren(...out);
}

// ---------- saga definitions as graphs ----------

function definitionsView(root) {
  const list = h('div', {});
  root.append(h('h2', { text: 'Saga definitions' }),
    h('p', { class: 'note', text: 'Steps run left to right; when one fails, the compensations of the steps before it run right to left.' }), list);
  async function load() {
    try {
      const { data } = await api('GET', '/admin/saga-definitions');
      state.defs = data.items || [];
      list.replaceChildren(...state.defs.map(defGraph));
      if (!state.defs.length) list.append(h('p', { class: 'note', text: 'No saga definitions.' }));
    } catch (e) {
      if (e.status !== 401) list.replaceChildren(h('p', { class: 'error', role: 'alert', text: 'Cannot read the definitions: ' + e.message }));
    }
  }
  load();
  return { name: 'definitions', refresh() {} };
}

function defGraph(def) {
  const steps = def.steps || [];
  const W = 232, H = 78, GAP = 48, X0 = 16, Y0 = 36, YC = 180;
  const width = X0 * 2 + steps.length * W + Math.max(steps.length - 1, 0) * GAP;
  const height = YC + H + 34;
  const id = 'def-' + def.type + '-' + def.version;
  // Drawn at its own size, shrunk (never stretched) to the page's width.
  const svg = h('svg', { viewBox: `0 0 ${width} ${height}`, width, height, preserveAspectRatio: 'xMinYMin meet', role: 'img', 'aria-labelledby': id + '-t', 'data-type': def.type },
    h('title', { id: id + '-t', text: `${def.type} v${def.version}: ` + steps.map((s) => s.name + (s.compensation ? ` (undone by ${s.compensation})` : '')).join(', then ') }),
    h('defs', {},
      h('marker', { id: id + '-a', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        h('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#1a1a1a' })),
      h('marker', { id: id + '-c', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        h('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#5b4a8a' }))),
    h('text', { x: X0, y: 20, 'font-size': 13, fill: '#4a4a4a', text: 'forward' }),
    h('text', { x: X0, y: YC + H + 24, 'font-size': 13, fill: '#4a4a4a', text: 'compensation (on failure, in reverse)' }));
  const box = (x, y, lines, stroke, fill, dashed) => h('g', {},
    h('rect', { x, y, width: W, height: H, rx: 6, fill, stroke, 'stroke-width': 2, 'stroke-dasharray': dashed ? '6 4' : null }),
    lines.map((l, i) => h('text', { x: x + 10, y: y + 20 + i * 17, 'font-size': i === 0 ? 14 : i === 1 ? 11 : 12, 'font-weight': i === 0 ? 700 : 400, fill: '#1a1a1a', 'font-family': i === 1 ? 'monospace' : null, text: l })));
  let prevComp = null;
  steps.forEach((s, i) => {
    const x = X0 + i * (W + GAP);
    svg.append(box(x, Y0, [s.name, s.command, `${s.service} · ${fmtDur(s.timeout_ms)} · ×${s.max_attempts}`], '#1f4e79', '#eaf2fa', false));
    if (i > 0) svg.append(h('line', { x1: x - GAP, y1: Y0 + H / 2, x2: x - 2, y2: Y0 + H / 2, stroke: '#1a1a1a', 'stroke-width': 2, 'marker-end': `url(#${id}-a)` }));
    if (s.compensation) {
      svg.append(box(x, YC, ['undo ' + s.name, s.compensation, s.compensation.split('.')[0]], '#5b4a8a', '#f1eefa', true));
      svg.append(h('line', { x1: x + W / 2, y1: Y0 + H, x2: x + W / 2, y2: YC - 2, stroke: '#5b4a8a', 'stroke-width': 2, 'stroke-dasharray': '5 4', 'marker-end': `url(#${id}-c)` }));
      if (prevComp !== null) {
        svg.append(h('line', { x1: x - 2, y1: YC + H / 2, x2: prevComp + W + 2, y2: YC + H / 2, stroke: '#5b4a8a', 'stroke-width': 2, 'stroke-dasharray': '5 4', 'marker-end': `url(#${id}-c)` }));
      }
      prevComp = x;
    } else {
      svg.append(h('text', { x: x + 10, y: YC + H / 2, 'font-size': 12, fill: '#4a4a4a', text: 'nothing to undo' }));
    }
  });
  return h('section', { class: 'def', 'aria-label': `${def.type} version ${def.version}` },
    h('h3', { text: `${def.type} · version ${def.version} · ${steps.length} steps` }), svg);
}

// ---------- projections ----------

function replayPercent(item) {
  const p = item.progress || item.rebuild;
  if (!p) return 0;
  if (p.phase === 'done') return 100;
  if (typeof p.percent === 'number') return Math.max(0, Math.min(100, p.percent));
  return p.total ? Math.max(0, Math.min(100, (p.done / p.total) * 100)) : 0;
}

// applyProjections records a new list: a replay this page started is
// done once the projection, seen rebuilding or with a newer active
// version, is live again.
function applyProjections(data) {
  state.projections = data;
  for (const it of data.items || []) {
    const r = state.replays.get(it.name);
    if (!r || r.done) continue;
    if (it.status === 'rebuilding') {
      r.seen = true;
      r.percent = Math.max(r.percent, Math.floor(replayPercent(it)));
      r.phase = (it.progress || it.rebuild || {}).phase || 'replay';
    } else if (r.seen || (typeof it.active_version === 'number' && it.active_version > r.before)) {
      r.done = true;
      r.percent = 100;
      r.phase = 'done';
      announce(`Replay of ${it.name} done.`);
    }
  }
  if (state.view && state.view.onProjections) state.view.onProjections();
}

async function pollProjections() {
  const { data } = await api('GET', '/admin/projections');
  applyProjections(data);
}

function projectionsView(root) {
  const tbody = h('tbody', { id: 'projection-rows' });
  const error = h('p', { class: 'error', role: 'alert' });
  root.append(h('h2', { text: 'Projections' }),
    h('p', { class: 'note', text: 'A replay rebuilds a read model from the event store beside the old one, which keeps answering, then swaps it in.' }),
    error,
    h('table', { 'aria-label': 'Projections' },
      h('thead', {}, h('tr', {}, ['Projection', 'Status', 'Checkpoint', 'Head', 'Lag', 'Events/s', 'Version', 'Replay'].map((t, i) => h('th', { scope: 'col', class: i >= 2 && i <= 6 ? 'num' : null, text: t })))),
      tbody));
  let polling = false;

  function render() {
    const items = (state.projections && state.projections.items) || [];
    const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : '';
    tbody.replaceChildren(...items.map((it) => {
      const r = state.replays.get(it.name);
      const cell = h('td', { class: 'replay' });
      const busy = it.status === 'rebuilding' || (r && !r.done);
      const b = h('button', { type: 'button', class: 'secondary', 'data-focus': 'replay-' + it.name, 'aria-label': 'Replay ' + it.name, disabled: busy, text: 'Replay' });
      b.addEventListener('click', () => replay(it));
      cell.append(b);
      if (r || it.status === 'rebuilding') {
        const pctNum = r ? r.percent : Math.floor(replayPercent(it));
        cell.append(' ', h('progress', { max: 100, value: pctNum, 'aria-label': `Replay of ${it.name}` }),
          h('span', { class: 'pct', 'data-percent': pctNum, text: pctNum + '%' }),
          h('span', { class: 'note', text: ' ' + ((r && r.phase) || ((it.progress || it.rebuild || {}).phase) || '') + (r && r.error ? ' ' + r.error : '') }));
      }
      return h('tr', { 'data-projection': it.name, 'data-status': it.status },
        h('td', { class: 'mono', text: it.name }), h('td', {}, badge(it.status)),
        h('td', { class: 'num', text: it.checkpoint }), h('td', { class: 'num', text: it.head }),
        h('td', { class: 'num', text: it.lag }), h('td', { class: 'num', text: (it.events_per_second || 0).toFixed(1) }),
        h('td', { class: 'num', text: it.active_version || '' }), cell);
    }));
    if (focusKey) { const f = tbody.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`); if (f) f.focus(); }
  }

  async function load() {
    try { await pollProjections(); error.textContent = ''; } catch (e) { if (e.status !== 401) error.textContent = 'Cannot list projections: ' + e.message; }
  }

  // follow polls once a second while a replay this page started runs, so
  // its progress shows even when the updates stream is down.
  async function follow() {
    if (polling) return;
    polling = true;
    try {
      while (state.view === view && [...state.replays.values()].some((r) => !r.done)) {
        await new Promise((r) => setTimeout(r, 1000));
        try { await pollProjections(); } catch (e) { if (e.status === 401) return; }
      }
    } finally { polling = false; }
  }

  async function replay(it) {
    state.replays.set(it.name, { before: it.active_version || 0, seen: false, percent: 0, phase: 'starting', done: false });
    render();
    try {
      await api('POST', '/admin/projections/' + encodeURIComponent(it.name) + '/replay', {});
      announce(`Replay of ${it.name} started.`);
    } catch (e) {
      state.replays.set(it.name, { before: 0, seen: false, percent: 0, phase: '', done: true, error: 'refused: ' + e.message });
      render();
      return;
    }
    follow();
  }

  const view = { name: 'projections', refresh: load, onProjections: render };
  if (state.projections) render();
  load();
  return view;
}

// ---------- start ----------

document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', signIn);
  $('#logout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', route);
  if (token()) start();
  else showLogin();
});

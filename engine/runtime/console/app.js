/* The Caduceus console: vanilla JavaScript over the admin API.  The token
 * lives in sessionStorage (this tab only) and goes in an Authorization
 * header; nothing is stored in cookies.  All text is inserted as text
 * (textContent), never as HTML. */
'use strict';

const KEY = 'caduceus.token';
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(KEY); }

function say(text, isError) {
  const s = $('status');
  s.textContent = text || '';
  s.className = isError ? 'error' : '';
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + token() } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = null; }
  if (r.status === 401) { logout(); throw new Error('the token was refused'); }
  if (!r.ok) throw new Error((doc && (doc.detail || doc.error)) || ('HTTP ' + r.status));
  return doc;
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function button(td, label, fn) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', () => fn().catch((e) => say(e.message, true)));
  td.appendChild(b);
  return b;
}

function clear(id) {
  const tb = $(id).querySelector('tbody');
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  return tb;
}

const pages = ['channels', 'destinations', 'messages', 'message', 'audit'];

function show(page) {
  $('login').hidden = page !== 'login';
  $('nav').hidden = page === 'login';
  for (const p of pages) $('page-' + p).hidden = p !== page;
}

const SVG = 'http://www.w3.org/2000/svg';

/* A sparkline of per-minute counts (the last hour, then the minute in
 * progress), built as SVG elements: no HTML strings. */
function spark(td, values) {
  const w = 122, h = 24;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  svg.setAttribute('class', 'spark');
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => (i * 2 + 1) + ',' + (h - 2 - (v / max) * (h - 4)).toFixed(1));
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', pts.join(' '));
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#16324f');
  svg.appendChild(line);
  const title = document.createElementNS(SVG, 'title');
  title.textContent = 'per minute, last hour: max ' + max + ', now ' + values[values.length - 1];
  svg.appendChild(title);
  td.appendChild(svg);
}

async function rates() {
  try { return await api('GET', '/api/v1/rates'); } catch (e) { return null; }
}

async function loadChannels() {
  const doc = await api('GET', '/api/v1/channels');
  const r = await rates();
  const tb = clear('channels-table');
  for (const c of doc.channels) {
    const tr = document.createElement('tr');
    tr.dataset.channel = c.name;
    cell(tr, c.name);
    cell(tr, c.paused ? 'paused' : 'running', c.paused ? 'paused' : '');
    cell(tr, c.received); cell(tr, c.accepted); cell(tr, c.rejected); cell(tr, c.errors);
    cell(tr, c.open_connections);
    const sp = cell(tr, '');
    if (r && r.channels[c.name]) spark(sp, r.channels[c.name].received);
    const td = cell(tr, '');
    const verb = c.paused ? 'resume' : 'pause';
    button(td, c.paused ? 'Resume' : 'Pause', async () => {
      await api('POST', '/api/v1/channels/' + encodeURIComponent(c.name) + '/' + verb);
      say('channel ' + c.name + ': ' + verb + 'd');
      await loadChannels();
    });
    tb.appendChild(tr);
  }
}

let deadDest = null;

async function loadDead(name) {
  deadDest = name;
  $('dead-panel').hidden = false;
  $('dead-dest').textContent = name;
  const doc = await api('GET', '/api/v1/destinations/' + encodeURIComponent(name) + '/deadletters');
  const tb = clear('dead-table');
  for (const d of doc.dead_letters) {
    const tr = document.createElement('tr');
    tr.dataset.number = d.number;
    cell(tr, d.number); cell(tr, new Date(d.time_ms).toISOString()); cell(tr, d.type);
    cell(tr, d.control_id); cell(tr, d.reason);
    const td = cell(tr, '');
    button(td, 'Requeue', () => deadAction('requeue', { number: d.number }));
    tb.appendChild(tr);
  }
}

async function deadAction(verb, body) {
  if (verb === 'purge' && !window.confirm('Purge these dead letters for good?')) return;
  const doc = await api('POST', '/api/v1/destinations/' + encodeURIComponent(deadDest) +
                        '/deadletters/' + verb, body);
  say(verb === 'requeue' ? 'requeued ' + doc.requeued : 'purged ' + doc.purged);
  await loadDests();
  await loadDead(deadDest);
}

async function loadDests() {
  const doc = await api('GET', '/api/v1/destinations');
  const r = await rates();
  const tb = clear('dests-table');
  for (const d of doc.destinations) {
    const tr = document.createElement('tr');
    tr.dataset.destination = d.name;
    cell(tr, d.name);
    cell(tr, d.paused ? 'paused' : d.blocked ? 'blocked' : 'running', d.paused ? 'paused' : '');
    cell(tr, d.depth); cell(tr, d.oldest_waiting_seconds.toFixed(1)); cell(tr, d.delivered);
    cell(tr, d.dead_letters);
    const sp = cell(tr, '');
    if (r && r.destinations[d.name]) spark(sp, r.destinations[d.name].delivered);
    const td = cell(tr, '');
    const verb = d.paused ? 'resume' : 'pause';
    button(td, d.paused ? 'Resume' : 'Pause', async () => {
      await api('POST', '/api/v1/destinations/' + encodeURIComponent(d.name) + '/' + verb);
      await loadDests();
    });
    button(td, 'Dead letters', () => loadDead(d.name));
    tb.appendChild(tr);
  }
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  for (const el of $('search-form').querySelectorAll('input'))
    if (el.value.trim()) params.set(el.name, el.value.trim());
  const doc = await api('GET', '/api/v1/messages?' + params.toString());
  const tb = clear('results-table');
  for (const m of doc.messages) {
    const tr = document.createElement('tr');
    tr.dataset.id = m.id;
    const a = document.createElement('a');
    a.href = '#message/' + m.id;
    a.textContent = m.received;
    const td = document.createElement('td');
    td.appendChild(a);
    tr.appendChild(td);
    cell(tr, m.channel); cell(tr, m.type); cell(tr, m.control_id); cell(tr, m.status);
    cell(tr, m.destinations);
    tb.appendChild(tr);
  }
  say(doc.messages.length + ' message(s)');
}

let shownId = null;

async function loadMessage(id) {
  shownId = id;
  const m = await api('GET', '/api/v1/messages/' + encodeURIComponent(id));
  $('msg-id').textContent = m.id;
  const dl = $('msg-fields');
  while (dl.firstChild) dl.removeChild(dl.firstChild);
  const rows = [['Received', m.received], ['Channel', m.channel], ['Peer', m.peer],
    ['Status', m.status + (m.reason ? ': ' + m.reason : '')], ['ACK sent', m.ack],
    ['Type', m.header['MSH-9']], ['Control id', m.header['MSH-10']],
    ['Sender', m.header['MSH-3'] + ' ' + m.header['MSH-4']],
    ['Receiver', m.header['MSH-5'] + ' ' + m.header['MSH-6']]];
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.appendChild(dt);
    dl.appendChild(dd);
  }
  const tb = clear('journey-table');
  for (const j of m.journey) {
    const tr = document.createElement('tr');
    cell(tr, j.destination); cell(tr, j.state); cell(tr, j.attempts); cell(tr, j.detail);
    tb.appendChild(tr);
  }
  $('msg-body').hidden = true;
  $('msg-body').textContent = '';
  $('tree-table').hidden = true;
  clear('tree-table');
}

async function showBody() {
  const m = await api('GET', '/api/v1/messages/' + encodeURIComponent(shownId) + '?body=1');
  const tb = clear('tree-table');
  for (const leaf of (m.tree || [])) {
    const tr = document.createElement('tr');
    cell(tr, leaf.path);
    cell(tr, leaf.value);
    tb.appendChild(tr);
  }
  $('tree-table').hidden = false;
  $('msg-body').textContent = (m.body || '').replace(/\r/g, '\n');
  $('msg-body').hidden = false;
}

async function resend(ev) {
  ev.preventDefault();
  const dest = $('resend-dest').value.trim();
  if (!window.confirm('Resend message ' + shownId + ' to ' + dest + '?')) return;
  const doc = await api('POST', '/api/v1/messages/' + encodeURIComponent(shownId) + '/resend',
                        { destination: dest });
  say('resent to ' + doc.destination + ' as queue record ' + doc.queue_seq);
}

async function loadAudit() {
  const doc = await api('GET', '/api/v1/audit?limit=200');
  const tb = clear('audit-table');
  for (const e of doc.entries) {
    const tr = document.createElement('tr');
    cell(tr, e.time); cell(tr, e.token); cell(tr, e.peer); cell(tr, e.action); cell(tr, e.target);
    cell(tr, e.result);
    tb.appendChild(tr);
  }
}

let timer = null;

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  if (!token()) { show('login'); return; }
  say('');
  const h = location.hash.replace(/^#/, '') || 'channels';
  try {
    if (h.startsWith('message/')) {
      show('message');
      await loadMessage(decodeURIComponent(h.slice(8)));
    } else if (h === 'destinations') {
      show('destinations');
      await loadDests();
      timer = setInterval(() => loadDests().catch((e) => say(e.message, true)), 5000);
    } else if (h === 'messages') {
      show('messages');
    } else if (h === 'audit') {
      show('audit');
      await loadAudit();
    } else {
      show('channels');
      await loadChannels();
      timer = setInterval(() => loadChannels().catch((e) => say(e.message, true)), 5000);
    }
  } catch (e) {
    say(e.message, true);
  }
}

function logout() {
  sessionStorage.removeItem(KEY);
  show('login');
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $('token').value.trim());
    $('token').value = '';
    try {
      await api('GET', '/api/v1/channels');
      say('');
      await route();
    } catch (e) {
      say(e.message, true);
    }
  });
  $('logout').addEventListener('click', logout);
  $('search-form').addEventListener('submit', (ev) => search(ev).catch((e) => say(e.message, true)));
  $('show-body').addEventListener('click', () => showBody().catch((e) => say(e.message, true)));
  $('resend-form').addEventListener('submit', (ev) => resend(ev).catch((e) => say(e.message, true)));
  $('requeue-all').addEventListener('click',
    () => deadAction('requeue', { all: true }).catch((e) => say(e.message, true)));
  $('purge-all').addEventListener('click',
    () => deadAction('purge', { all: true }).catch((e) => say(e.message, true)));
  window.addEventListener('hashchange', route);
  route();
});

// The jacolbert console: a search view and a cluster view over the JSON API of this port.
// proto3 JSON leaves out fields at their defaults (0, false, ""), hence the `|| 0` below.
'use strict';

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

const keyInput = $('api-key');
keyInput.value = localStorage.getItem('jacolbert-key') || '';
keyInput.addEventListener('input', () => localStorage.setItem('jacolbert-key', keyInput.value));

// One JSON call; a failure throws the API's own "Code: message".
async function api(method, body) {
  const headers = { 'content-type': 'application/json' };
  if (keyInput.value) headers.authorization = 'Bearer ' + keyInput.value;
  const response = await fetch('/v1/' + method, { method: 'POST', headers, body: JSON.stringify(body || {}) });
  const json = await response.json().catch(() => ({ code: 'Unknown', message: 'HTTP ' + response.status }));
  if (!response.ok) throw new Error(`${json.code}: ${json.message}`);
  return json;
}

function showError(id, message) {
  $(id).hidden = !message;
  $(id).textContent = message || '';
}

// ---- routing: #/search?q=…&k=… and #/cluster ----

function route() {
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const cluster = path === '/cluster';
  $('search-view').hidden = cluster;
  $('cluster-view').hidden = !cluster;
  $('nav-search').classList.toggle('active', !cluster);
  $('nav-cluster').classList.toggle('active', cluster);
  stopPolling();
  if (cluster) {
    startPolling();
  } else if (params.get('q')) {
    $('query').value = params.get('q');
    $('k').value = params.get('k') || 10;
    search();
  }
}

window.addEventListener('hashchange', route);

$('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const hash = `#/search?q=${encodeURIComponent($('query').value)}&k=${encodeURIComponent($('k').value)}`;
  if (location.hash === hash) search();
  else location.hash = hash;
});

// ---- search ----

let searches = 0;

async function search() {
  const mine = ++searches;
  const body = {
    query: $('query').value,
    k: Number($('k').value) || 10,
    include: { text: true, metadata: true },
    explain: true,
  };
  showError('search-error', null);
  const filter = $('filter').value.trim();
  if (filter) {
    try {
      body.filter = JSON.parse(filter);
    } catch (e) {
      showError('search-error', 'The filter is not JSON: ' + e.message);
      return;
    }
  }
  document.body.dataset.state = 'searching';
  try {
    const answer = await api('search', body);
    if (mine !== searches) return;
    renderHits(answer);
    // Which search the hits answer (for scripts and tests that drive the page).
    $('hits').dataset.query = body.query;
    document.body.dataset.state = 'hits';
  } catch (e) {
    if (mine !== searches) return;
    showError('search-error', e.message);
    $('hits').replaceChildren();
    $('query-tokens').replaceChildren();
    $('search-summary').textContent = '';
    document.body.dataset.state = 'error';
  }
}

// JaColBERT's query and document markers are these unused vocabulary entries.
const MARKERS = { '[unused0]': '[Q]', '[unused1]': '[D]' };

function tokenName(m) {
  if (m.expansion) return '[MASK]';
  return MARKERS[m.queryText] || m.queryText || '';
}

function renderHits(answer) {
  const hits = answer.hits || [];
  const failures = (answer.failures || []).map((f) => `shard ${f.shard || 0}: ${f.code} ${f.message}`);
  $('search-summary').textContent =
    `${hits.length} hits in ${(Number(answer.tookMicros || 0) / 1000).toFixed(1)} ms, ` +
    `${answer.shardsOk || 0} of ${answer.shardsTotal || 0} shards answered` +
    (failures.length ? ` (${failures.join('; ')})` : '');
  // Every hit explains the same query tokens: the chips come from the first.
  const chips = $('query-tokens');
  chips.replaceChildren();
  const first = hits.find((h) => h.explanation);
  for (const m of first ? first.explanation.matches || [] : []) {
    const chip = el('span', 'qtoken' + (m.expansion ? ' expansion' : ''), tokenName(m));
    chip.dataset.q = String(m.queryToken || 0);
    chip.title = m.expansion ? 'query expansion ([MASK] padding)' : `query token ${m.queryToken || 0}`;
    chip.addEventListener('mouseenter', () => focus([m.queryToken || 0], true));
    chip.addEventListener('mouseleave', () => focus([m.queryToken || 0], false));
    chips.append(chip);
  }
  $('hits').replaceChildren(...hits.map(hitElement));
}

function hitElement(hit) {
  const item = el('li', 'hit');
  item.dataset.id = hit.id || '';
  const head = el('div', 'hit-head');
  head.append(el('span', 'hit-id', hit.id || ''), el('span', 'score', (hit.score || 0).toFixed(3)));
  head.append(el('span', 'hint', `shard ${hit.shard || 0}`));
  item.append(head);
  const doc = hit.document || {};
  const text = el('div', 'text');
  text.append(...highlight(doc.text || '', hit.explanation ? hit.explanation.matches || [] : []));
  item.append(text);
  if (doc.metadata) {
    let shown = doc.metadata;
    try {
      shown = JSON.stringify(JSON.parse(doc.metadata), null, 1);
    } catch (e) {
      // Shown as stored.
    }
    item.append(el('div', 'metadata', shown));
  }
  return item;
}

// The text with each matched document token's span (code points, as the API counts them)
// marked: shaded by its best similarity, titled with the query tokens it matched.
function highlight(text, matches) {
  const chars = Array.from(text);
  const bySpan = new Map();
  for (const m of matches) {
    const start = m.span ? m.span.start || 0 : 0;
    const end = m.span ? m.span.end || 0 : 0;
    if (end <= start || end > chars.length) continue;
    const key = `${start}:${end}`;
    if (!bySpan.has(key)) bySpan.set(key, { start, end, matches: [] });
    bySpan.get(key).matches.push(m);
  }
  const spans = [...bySpan.values()].sort((a, b) => a.start - b.start || b.end - a.end);
  const out = [];
  let at = 0;
  let last = null;
  for (const s of spans) {
    if (s.start < at) {
      // Overlaps the span before (two tokens from one normalised character): one mark.
      last.matches.push(...s.matches);
      continue;
    }
    if (s.start > at) out.push(document.createTextNode(chars.slice(at, s.start).join('')));
    const mark = el('mark', '', chars.slice(s.start, s.end).join(''));
    out.push(mark);
    last = { mark, matches: s.matches };
    s.mark = mark;
    at = s.end;
  }
  if (at < chars.length) out.push(document.createTextNode(chars.slice(at).join('')));
  for (const s of spans.filter((s) => s.mark)) {
    const all = s.matches;
    const queries = all.map((m) => m.queryToken || 0);
    const best = Math.max(...all.map((m) => m.similarity || 0));
    s.mark.dataset.q = queries.join(' ');
    s.mark.style.setProperty('--strength', (0.15 + 0.7 * Math.max(0, Math.min(1, best))).toFixed(2));
    s.mark.title = all
      .map((m) => `${tokenName(m)} (query token ${m.queryToken || 0}) → ${m.documentText || ''}: ${(m.similarity || 0).toFixed(3)}`)
      .join('\n');
    s.mark.addEventListener('mouseenter', () => focus(queries, true));
    s.mark.addEventListener('mouseleave', () => focus(queries, false));
  }
  return out;
}

// Marks a query token's chip and, in every hit, the document tokens it matched.
function focus(queries, on) {
  const wanted = new Set(queries.map(String));
  for (const e of document.querySelectorAll('.qtoken, mark')) {
    if ((e.dataset.q || '').split(' ').some((q) => wanted.has(q))) e.classList.toggle('focus', on);
  }
}

// ---- cluster ----

let timer = null;
let previous = null;

function startPolling() {
  previous = null;
  refresh();
  timer = setInterval(refresh, 2000);
}

function stopPolling() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  try {
    renderCluster(await api('status'));
    showError('cluster-error', null);
    document.body.dataset.state = 'cluster';
  } catch (e) {
    showError('cluster-error', e.message);
    document.body.dataset.state = 'error';
  }
  try {
    const metrics = await fetch('/metrics');
    if (metrics.ok) renderLatency(await metrics.text());
  } catch (e) {
    $('latency').textContent = 'no metrics: ' + e.message;
  }
}

function cell(row, text, className) {
  const td = el('td', className || '', text === undefined ? '' : String(text));
  row.append(td);
  return td;
}

function renderCluster(status) {
  const body = $('shards').tBodies[0];
  body.replaceChildren();
  let documents = 0;
  let down = 0;
  const shards = status.shards || [];
  for (const shard of shards) {
    let counted = false;
    (shard.replicas || []).forEach((r, i) => {
      const s = r.stats;
      const row = el('tr');
      row.dataset.shard = String(shard.id || 0);
      row.dataset.replica = r.address;
      const isDown = !s && r.state !== 'removed';
      if (isDown) {
        row.className = 'down';
        down += 1;
      }
      const place = shard.position === undefined ? ' (being drained)' : ` at ${shard.position}`;
      cell(row, i === 0 ? `${shard.id || 0}${place}` : '');
      cell(row, r.address);
      const state = cell(row, '');
      state.append(el('span', `state state-${r.state}`, r.state));
      if (isDown) state.append(' ', el('span', 'state state-down', 'down'));
      cell(row, s ? Number(s.documents || 0) : '', 'num');
      cell(row, s ? Number(s.tokens || 0) : '', 'num');
      const index = !s ? '' : s.trained ? `${s.centroids || 0} centroids (generation ${s.codecGeneration || 0})` : 'not trained';
      cell(row, s && s.retraining ? index + ', retraining' : index);
      cell(row, s ? `${(Number(s.memoryBytes || 0) / 1048576).toFixed(1)} MiB` : '', 'num');
      const dead = s && Number(s.deadTokens || 0) ? `${s.deadTokens} dead tokens until compaction` : '';
      cell(row, r.error || dead || (r.state === 'stale' ? 'missed writes: a repair is due' : ''));
      if (s && !counted && r.state === 'in_sync') {
        documents += Number(s.documents || 0);
        counted = true;
      }
      body.append(row);
    });
  }
  const moving = status.move ? `; moving documents (${status.move.kind} shard ${status.move.shard || 0}, ${status.move.moved || 0} moved)` : '';
  $('cluster-summary').textContent =
    `epoch ${status.epoch || 0}: ${shards.length} shards, ${documents} documents` +
    (down ? `, ${down} replicas not answering` : ', every replica answering') + moving;
  const encoders = $('encoders').tBodies[0];
  encoders.replaceChildren();
  for (const e of status.encoders || []) {
    const row = el('tr', e.healthy ? '' : 'down');
    cell(row, e.address);
    cell(row, e.healthy ? 'healthy' : 'down (skipped)');
    cell(row, Number(e.load || 0), 'num');
    encoders.append(row);
  }
}

// Cumulative counts of Search calls by latency bound (seconds), summed over status codes.
function searchBuckets(text) {
  const buckets = new Map();
  const pattern = /^jacolbert_rpc_duration_seconds_bucket\{rpc="\/jacolbert\.v1\.Search\/Search",code="[^"]*",le="([^"]+)"\} (\d+)/;
  for (const line of text.split('\n')) {
    const m = line.match(pattern);
    if (m) buckets.set(m[1], (buckets.get(m[1]) || 0) + Number(m[2]));
  }
  return buckets;
}

// The smallest bucket bound under which a share `q` of the searches fell.
function quantile(counts, q) {
  const bounds = [...counts.keys()].sort((a, b) => (a === '+Inf' ? 1 : b === '+Inf' ? -1 : a - b));
  const total = counts.get('+Inf') || 0;
  const bound = bounds.find((b) => counts.get(b) >= q * total);
  return bound === '+Inf' ? 'over 30 s' : `≤ ${Number(bound) * 1000} ms`;
}

function renderLatency(text) {
  const now = { at: Date.now(), counts: searchBuckets(text) };
  const since = previous;
  previous = now;
  const diff = new Map([...now.counts].map(([b, c]) => [b, c - ((since && since.counts.get(b)) || 0)]));
  const recent = since && (diff.get('+Inf') || 0) > 0;
  const counts = recent ? diff : now.counts;
  const total = counts.get('+Inf') || 0;
  const when = recent ? `in the last ${((now.at - since.at) / 1000).toFixed(0)} s` : 'since the router started';
  $('latency').textContent = total
    ? `${total} searches ${when}: p50 ${quantile(counts, 0.5)}, p99 ${quantile(counts, 0.99)}`
    : 'no searches yet';
}

route();

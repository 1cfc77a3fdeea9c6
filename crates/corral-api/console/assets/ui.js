// DOM helpers. Everything is built with createElement and text nodes, never from HTML strings,
// so nothing a server or user sends is ever parsed as markup (and the CSP forbids inline code).

/** Creates an element: `h('button', {class: 'x', onclick: fn}, 'Text', child, [more])`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'for') el.htmlFor = v;
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'required' || k === 'multiple') el[k] = !!v;
      else if (k === 'style') throw new Error('inline styles are not allowed (CSP)');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A unique element id with a readable prefix. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: `field('Name', h('input', {name: 'name'}), 'hint')`. */
export function field(label, input, hint) {
  if (!input.id) input.id = nextId(input.name || 'f');
  const hintEl = hint ? h('small', { id: `${input.id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

export function input(name, attrs = {}) {
  return h('input', { name, type: 'text', autocomplete: 'off', ...attrs });
}

export function select(name, options, attrs = {}) {
  return h(
    'select',
    { name, ...attrs },
    options.map((o) => (typeof o === 'string' ? h('option', { value: o }, o) : h('option', { value: o.value, selected: o.selected }, o.label))),
  );
}

export function button(label, onclick, attrs = {}) {
  return h('button', { type: 'button', onclick, ...attrs }, label);
}

/**
 * A button that runs `action` (async) with the button disabled meanwhile; a failure is
 * shown in `errorTarget` (or the page's error region).
 */
export function actionButton(label, action, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    try {
      await action(b);
    } catch (e) {
      showError(e);
    } finally {
      b.disabled = false;
      b.removeAttribute('aria-busy');
    }
  });
  return b;
}

/** A delete button that asks once more in place ("Confirm delete?") before `action`. */
export function confirmButton(label, action, attrs = {}) {
  let armed = false;
  let timer = null;
  const b = h('button', { type: 'button', class: 'danger', ...attrs }, label);
  b.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      b.textContent = `Confirm: ${label.toLowerCase()}?`;
      timer = setTimeout(() => {
        armed = false;
        b.textContent = label;
      }, 5000);
      return;
    }
    clearTimeout(timer);
    armed = false;
    b.textContent = label;
    b.disabled = true;
    try {
      await action();
    } catch (e) {
      showError(e);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** Reads a form's named controls into an object of trimmed strings (checkboxes: booleans). */
export function formData(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else out[el.name] = el.value.trim();
  }
  return out;
}

/**
 * A form whose submit runs `onsubmit(data, form)` (async); errors land in the form's own
 * alert region, next to what the user just did.
 */
export function form(attrs, children, onsubmit) {
  const err = h('div', { class: 'form-error', role: 'alert' });
  const f = h('form', { novalidate: false, ...attrs }, children, err);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(err);
    const submit = f.querySelector('[type=submit]');
    if (submit) submit.disabled = true;
    try {
      await onsubmit(formData(f), f);
    } catch (e) {
      replace(err, errorText(e));
      const focusable = err.closest('form');
      if (focusable) err.setAttribute('tabindex', '-1');
      err.focus();
    } finally {
      if (submit) submit.disabled = false;
    }
  });
  return f;
}

/** A short text of an error: the API's message, its status and request id. */
export function errorText(e) {
  if (e && e.status) {
    const rid = e.requestId ? ` (request id ${e.requestId})` : '';
    return `${e.status} ${e.reason || ''}: ${e.message}${rid}`.replace('  ', ' ');
  }
  return String((e && e.message) || e);
}

let errorRegion = null;
/** Where page-level errors go (set by the router for each page). */
export function setErrorRegion(el) {
  errorRegion = el;
}

export function showError(e) {
  if (e && e.handled) return;
  if (!errorRegion) {
    console.error(e);
    return;
  }
  replace(errorRegion, h('p', {}, errorText(e)), button('Dismiss', () => replace(errorRegion), { class: 'link' }));
}

export function clearError() {
  if (errorRegion) replace(errorRegion);
}

/** A transient message in the polite status region. */
export function toast(msg) {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = msg;
  t.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('shown'), 4000);
}

/**
 * A table of `rows` (objects) with `cols`: `[{label, get: row => node|string, class}]`.
 * Wrapped in a scroll box so wide tables work on a phone.
 */
export function table(cols, rows, attrs = {}) {
  const caption = attrs.caption ? h('caption', {}, attrs.caption) : null;
  const t = h(
    'table',
    { class: attrs.class },
    caption,
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: cols.length, class: 'empty' }, attrs.empty || 'Nothing here yet.'))
        : rows.map((r) => {
            const tr = h('tr', {}, cols.map((c) => h(c.header ? 'th' : 'td', { class: c.class, scope: c.header ? 'row' : null }, c.get(r))));
            if (attrs.rowKey) tr.dataset.key = attrs.rowKey(r);
            return tr;
          }),
    ),
  );
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': attrs.label || attrs.caption || 'table' }, t);
}

/** A coloured status label; the colour class comes from the status word. */
export function badge(status) {
  const s = String(status ?? '');
  return h('span', { class: `badge s-${s.toLowerCase().replace(/[^a-z0-9_]/g, '')}` }, s || '—');
}

export function link(href, text) {
  return h('a', { href }, text);
}

export function section(title, ...children) {
  const id = nextId('sec');
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/** Formats an RFC 3339 or epoch (ms) time for people, keeping the exact value in `title`. */
export function time(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}

/** Renders per-item results of a bulk call; answers the number of refused items. */
export function bulkReport(results) {
  const bad = (results || []).filter((r) => r.status !== 202);
  if (bad.length) {
    const e = new Error(bad.map((r) => `${r.id || 'item'}: ${r.status} ${r.message}`).join('; '));
    throw e;
  }
  toast((results || []).map((r) => `${r.message}`).join(', ') || 'done');
  return 0;
}

export function dl(pairs) {
  return h('dl', { class: 'props' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function pre(text, attrs = {}) {
  return h('pre', { class: 'output', tabindex: '0', ...attrs }, text || '(no output)');
}

/** A "shown once" secret box with a copy button. */
export function secretBox(title, secret) {
  const code = h('code', { class: 'secret' }, secret);
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(secret);
      toast('Copied.');
    } catch {
      const r = document.createRange();
      r.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
    }
  });
  return h('div', { class: 'secret-box', role: 'alert' }, h('strong', {}, title), h('p', {}, 'This key is shown only once: copy it now.'), code, ' ', copy);
}

/** `fn` at most once per `ms`, after the last call (live refreshes coalesce bursts of events). */
export function debounce(fn, ms = 250) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/**
 * A refresh for change-feed events: soon after a burst, and once more a little later,
 * because `POST /query` reads a per-tenant read model that may trail a commit by about a
 * second (docs/query.md) while the feed reports the commit at once.
 */
export function liveRefresh(fn, ms = 250) {
  const run = () => Promise.resolve().then(fn).catch(showError);
  const first = debounce(run, ms);
  const settle = debounce(run, 1300);
  return () => {
    first();
    settle();
  };
}

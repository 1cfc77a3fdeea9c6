// The console's shell: session, navigation, router. Pages are modules under pages/, each
// exporting functions `(main, params, ctx)` that render into `main`; `ctx.on(types, fn)`
// subscribes to the change feed for as long as the page is shown.

import * as api from './api.js';
import * as events from './events.js';
import { h, replace, setErrorRegion, toast } from './ui.js';
import * as signin from './pages/signin.js';
import * as dashboard from './pages/dashboard.js';
import * as hosts from './pages/hosts.js';
import * as clusters from './pages/clusters.js';
import * as config from './pages/config.js';
import * as instances from './pages/instances.js';
import * as images from './pages/images.js';
import * as apps from './pages/apps.js';
import * as queryPage from './pages/query.js';
import * as admin from './pages/admin.js';

/** The session as `GET /ui/session` answers it. */
export const session = { signed_in: false };

const NAV = [
  ['/ui/', 'Dashboard'],
  ['/ui/hosts', 'Hosts'],
  ['/ui/clusters', 'Clusters'],
  ['/ui/networks', 'Networks'],
  ['/ui/containermanagers', 'Container managers'],
  ['/ui/instances', 'Instances'],
  ['/ui/images', 'Images'],
  ['/ui/apps', 'Apps & services'],
  ['/ui/query', 'Query'],
  ['/ui/users', 'Users', (s) => s.role === 'admin'],
  ['/ui/tenants', 'Tenants', (s) => s.superadmin],
];

const ROUTES = [
  [/^\/ui\/?$/, dashboard.render, 'Dashboard'],
  [/^\/ui\/signin$/, signin.render, 'Sign in', { public: true }],
  [/^\/ui\/hosts$/, hosts.render, 'Hosts'],
  [/^\/ui\/clusters$/, clusters.list, 'Clusters'],
  [/^\/ui\/clusters\/([^/]+)$/, clusters.detail, 'Cluster'],
  [/^\/ui\/networks$/, config.networks, 'Networks'],
  [/^\/ui\/containermanagers$/, config.containerManagers, 'Container managers'],
  [/^\/ui\/instances$/, instances.list, 'Instances'],
  [/^\/ui\/instances\/([^/]+)$/, instances.detail, 'Instance'],
  [/^\/ui\/images$/, images.render, 'Images'],
  [/^\/ui\/apps$/, apps.list, 'Apps & services'],
  [/^\/ui\/apps\/([^/]+)\/([^/]+)\/([^/]+)$/, apps.service, 'Service'],
  [/^\/ui\/query$/, queryPage.render, 'Query'],
  [/^\/ui\/users$/, admin.users, 'Users'],
  [/^\/ui\/tenants$/, admin.tenants, 'Tenants'],
];

let cleanups = [];
let renderSeq = 0;

/** Goes to `path` inside the console without reloading the page. */
export function navigate(path, { replaceState = false, message } = {}) {
  if (replaceState) history.replaceState({ message }, '', path);
  else history.pushState({ message }, '', path);
  render();
}

/** Reads `GET /ui/session` into `session` and the CSRF token. */
export async function loadSession() {
  const s = (await api.call('GET', '/ui/session', undefined, { quiet401: true })).data || {};
  for (const k of Object.keys(session)) delete session[k];
  Object.assign(session, s);
  api.setCsrf(s.csrf);
  return session;
}

/** After sign-in or sign-out: rebuild the header and nav, (re)start the feed. */
export function sessionChanged() {
  const who = document.getElementById('whoami');
  const nav = document.getElementById('nav');
  const out = document.getElementById('signout');
  const toggle = document.getElementById('menu-toggle');
  if (session.signed_in) {
    const role = session.superadmin ? 'superadmin' : session.role;
    replace(who, h('span', { class: 'who' }, `${session.user}@${session.tenant}`), ' ', h('span', { class: 'role' }, role));
    replace(
      nav,
      h(
        'ul',
        {},
        NAV.filter(([, , show]) => !show || show(session)).map(([href, label]) => h('li', {}, h('a', { href }, label))),
      ),
    );
    nav.hidden = false;
    out.hidden = false;
    toggle.hidden = false;
    events.start();
  } else {
    replace(who);
    replace(nav);
    nav.hidden = true;
    out.hidden = true;
    toggle.hidden = true;
    events.stop();
  }
}

/** The session ended (401 on any call, or the feed found it gone): back to sign-in. */
function sessionEnded(err) {
  if (!session.signed_in) return;
  session.signed_in = false;
  sessionChanged();
  const why = err && err.message ? err.message : 'Invalid credentials.';
  navigate('/ui/signin', { message: `Your session has ended — the server said “${why}” Sign in again.` });
}

async function signOut() {
  try {
    await api.call('DELETE', '/ui/session');
  } catch (e) {
    if (e.status !== 401) toast(`Sign-out: ${e.message}`);
  }
  session.signed_in = false;
  sessionChanged();
  await loadSession().catch(() => {});
  navigate('/ui/signin', { message: 'You have signed out.' });
}

function markCurrentNav(path) {
  for (const a of document.querySelectorAll('#nav a')) {
    const href = a.getAttribute('href');
    const current = href === '/ui/' ? path === '/ui/' || path === '/ui' : path === href || path.startsWith(`${href}/`);
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Renders the page of the current URL. */
export async function render() {
  const seq = ++renderSeq;
  for (const c of cleanups) c();
  cleanups = [];
  const path = location.pathname.replace(/\/+$/, '') || '/ui';
  const main = document.getElementById('main');
  let route = null;
  let params = [];
  for (const r of ROUTES) {
    const m = (path === '/ui' ? '/ui/' : path).match(r[0]);
    if (m) {
      route = r;
      params = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  if (!route) {
    replace(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'No console page at ', h('code', {}, path), '. ', h('a', { href: '/ui/' }, 'Go to the dashboard.')));
    return;
  }
  const [, fn, title, opts = {}] = route;
  if (!opts.public && !session.signed_in) {
    navigate('/ui/signin', { replaceState: true });
    return;
  }
  if (opts.public && session.signed_in && route[1] === signin.render) {
    navigate('/ui/', { replaceState: true });
    return;
  }
  document.title = `${title} · Corral`;
  markCurrentNav(path);
  closeMenu();
  const err = h('div', { class: 'page-error', role: 'alert' });
  const body = h('div', { class: 'page' });
  replace(main, err, body);
  setErrorRegion(err);
  const ctx = {
    session,
    navigate,
    on(types, handler) {
      cleanups.push(events.subscribe(types, handler));
    },
    cleanup(fn2) {
      cleanups.push(fn2);
    },
    get current() {
      return seq === renderSeq;
    },
    message: history.state && history.state.message,
    signedIn: async () => {
      await loadSession();
      sessionChanged();
      navigate('/ui/', { replaceState: true });
    },
  };
  try {
    await fn(body, params, ctx);
  } catch (e) {
    if (!e.handled && seq === renderSeq) {
      replace(err, h('p', {}, `${e.status ? `${e.status} ${e.reason}: ` : ''}${e.message}${e.requestId ? ` (request id ${e.requestId})` : ''}`));
    }
  }
  if (seq === renderSeq) {
    const h1 = body.querySelector('h1');
    if (h1) {
      h1.setAttribute('tabindex', '-1');
      if (document.activeElement === document.body || document.activeElement === main || !main.contains(document.activeElement)) h1.focus({ preventScroll: false });
    }
  }
}

function closeMenu() {
  const toggle = document.getElementById('menu-toggle');
  toggle.setAttribute('aria-expanded', 'false');
  document.getElementById('nav').classList.remove('open');
}

async function boot() {
  api.setUnauthorizedHandler(sessionEnded);
  events.onStatus((state) => {
    const el = document.getElementById('live');
    el.textContent = { live: '● live', connecting: '○ connecting…', offline: '' }[state] || '';
    el.className = `live ${state}`;
  });
  events.setSessionCheck(async () => {
    try {
      await api.get('/whoami');
      return true;
    } catch (e) {
      return e.status !== 401;
    }
  });
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/ui') || a.target || a.hasAttribute('download')) return;
    ev.preventDefault();
    navigate(href);
  });
  window.addEventListener('popstate', () => render());
  document.getElementById('signout').addEventListener('click', signOut);
  const toggle = document.getElementById('menu-toggle');
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    document.getElementById('nav').classList.toggle('open', open);
  });
  try {
    await loadSession();
  } catch (e) {
    replace(document.getElementById('main'), h('h1', {}, 'Corral console'), h('p', { role: 'alert' }, `The server did not answer: ${e.message}`));
    return;
  }
  sessionChanged();
  await render();
}

boot();

// End-to-end scenarios of the web console in Debian's headless Chromium, driven by
// playwright-core (never a downloaded browser). Run by the `it` test `console_e2e`, which
// starts the real server and passes everything through the environment:
//
//   CORRAL_URL              the server's base URL (http://127.0.0.1:PORT)
//   CORRAL_TENANT           the tenant the scenarios work in
//   CORRAL_ADMIN_KEY        a key of that tenant's admin
//   CORRAL_VIEWER_KEY       a key of a `viewer` user of that tenant (user CORRAL_VIEWER_USER)
//   CORRAL_SUPER_KEY        the superadmin's key (tenant page screenshot)
//   CORRAL_CLUSTER          a cluster whose members are real sshd test hosts (CORRAL_HOSTS, comma-separated)
//   CORRAL_SERVICE          ns/app/service of a running service (optional)
//   CORRAL_CONSOLE_SCREENSHOTS  a directory: take a screenshot of each page there (optional)
//   CHROMIUM                the browser (default /usr/bin/chromium)
//
// Exits 0 when every scenario passed; otherwise prints which step failed, why, and the
// browser's console, and exits 1.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const env = process.env;
const BASE = env.CORRAL_URL;
const TENANT = env.CORRAL_TENANT;
const ADMIN_KEY = env.CORRAL_ADMIN_KEY;
const VIEWER_KEY = env.CORRAL_VIEWER_KEY;
const VIEWER_USER = env.CORRAL_VIEWER_USER || 'vera';
const SUPER_KEY = env.CORRAL_SUPER_KEY;
const CLUSTER = env.CORRAL_CLUSTER;
const HOSTS = (env.CORRAL_HOSTS || '').split(',').filter(Boolean);
const SERVICE = env.CORRAL_SERVICE;
const SHOTS = env.CORRAL_CONSOLE_SCREENSHOTS;
// The instance the scenarios launch (unique names let a developer rerun on one server).
const INSTANCE = env.CORRAL_E2E_INSTANCE || 'web-1';
const TIMEOUT = 60_000;

for (const [k, v] of Object.entries({ CORRAL_URL: BASE, CORRAL_TENANT: TENANT, CORRAL_ADMIN_KEY: ADMIN_KEY, CORRAL_VIEWER_KEY: VIEWER_KEY })) {
  if (!v) {
    console.error(`${k} is not set`);
    process.exit(2);
  }
}

const logs = [];
// Everything the browser refused under the Content-Security-Policy (must stay empty).
const cspViolations = [];
const openPages = [];
let failures = 0;
const t0 = Date.now();

function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function step(name, fn) {
  log(`▶ ${name}`);
  try {
    await fn();
    log(`✔ ${name}`);
  } catch (e) {
    failures += 1;
    log(`✘ ${name}: ${e.stack || e}`);
    // What the open pages show as errors, for the diagnosis.
    for (const p of openPages) {
      if (p.isClosed()) continue;
      const alerts = await p.locator('[role="alert"]').allInnerTexts().catch(() => []);
      log(`  ${p.url()}: ${alerts.filter((t) => t.trim()).join(' | ') || '(no alert shown)'}`);
    }
    throw e;
  }
}

/** A direct API call from node (setup and checks outside the browser). */
async function apiCall(method, p, key, body) {
  const r = await fetch(BASE + p, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  return { status: r.status, data };
}

async function shot(page, name, { phone = false, scrollTo } = {}) {
  if (!SHOTS) return;
  // No transient toast over the page in the pictures.
  await page.evaluate(() => document.getElementById('toast')?.classList.remove('shown'));
  await page.waitForTimeout(250);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  if (phone) {
    const vp = page.viewportSize();
    await page.setViewportSize({ width: 390, height: 844 });
    if (scrollTo) await page.locator(scrollTo).first().scrollIntoViewIfNeeded();
    await page.waitForTimeout(150);
    await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: false });
    await page.setViewportSize(vp);
  }
}

async function newPage(browser, label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: BASE });
  const page = await context.newPage();
  openPages.push(page);
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    logs.push(`[${label} console.${m.type()}] ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(`${label}: ${m.text()}`);
  });
  page.on('pageerror', (e) => logs.push(`[${label} pageerror] ${e.stack || e}`));
  page.on('requestfailed', (r) => logs.push(`[${label} requestfailed] ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`));
  return { context, page };
}

async function signIn(page, key, { user, tenant } = {}) {
  await page.goto('/ui/');
  await page.waitForURL('**/ui/signin');
  await page.getByLabel('API key').fill(key);
  if (user) await page.getByLabel('User (optional)').fill(user);
  if (tenant) await page.getByLabel('Tenant (optional)').fill(tenant);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/ui/' || u.pathname === '/ui');
  await page.getByRole('heading', { level: 1, name: /Dashboard/ }).waitFor();
}

/** Goes to a console page through its nav link (no reload), and waits for its heading. */
async function nav(page, linkName, heading) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: linkName, exact: true }).click();
  const h1 = page.getByRole('heading', { level: 1, name: heading });
  await h1.waitFor();
  // Focus management: after a navigation the new page's heading has the focus.
  await page.waitForFunction(() => document.activeElement && document.activeElement.tagName === 'H1');
}

/**
 * A two-step (delete) button: click, then click its "Confirm: ...?" state. A live refresh may
 * redraw the list between the two clicks (the new button is unarmed), so try again then.
 */
async function confirmClick(btn) {
  for (let i = 0; ; i += 1) {
    await btn.click();
    try {
      await btn.filter({ hasText: /^Confirm/ }).click({ timeout: 2000 });
      return;
    } catch (e) {
      if (i >= 4) throw e;
    }
  }
}

async function main() {
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
  // Playwright starts Chromium on a fresh, empty profile of its own (a temp --user-data-dir)
  // and removes it at close; each context below is a separate cookie jar.
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  try {
    await scenarios(browser);
  } finally {
    await browser.close().catch(() => {});
  }
}

async function scenarios(browser) {
  const { page } = await newPage(browser, 'admin');

  await step('the sign-in page refuses a wrong key with the API message', async () => {
    await page.goto('/ui/');
    await page.waitForURL('**/ui/signin');
    await shot(page, 'signin', { phone: true });
    await page.getByLabel('API key').fill('crk_wrongwrongwrongwrongwrongwrongwrongwrongwro');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Invalid credentials.' }).waitFor();
  });

  await step('sign in with the keyboard only: an API key, user and tenant', async () => {
    // The key field has the focus when the page opens; Tab moves on, Enter submits.
    await page.getByLabel('API key').fill('');
    await page.getByLabel('API key').focus();
    await page.keyboard.type(ADMIN_KEY);
    await page.keyboard.press('Tab');
    await page.keyboard.type('admin');
    await page.keyboard.press('Tab');
    await page.keyboard.type(TENANT);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: /Dashboard/ }).waitFor();
    const resp = await page.request.get('/ui/');
    const csp = resp.headers()['content-security-policy'] || '';
    assert(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `the console is served under a strict CSP: ${csp}`);
    const who = await page.locator('#whoami').innerText();
    assert(who.includes(`admin@${TENANT}`), `header shows the user: ${who}`);
    await page.locator('#live.live').filter({ hasText: 'live' }).waitFor();
    // The cookie is HttpOnly: page scripts cannot read it.
    const cookies = await page.evaluate(() => document.cookie);
    assert(!cookies.includes('corral_session'), `session cookie visible to scripts: ${cookies}`);
  });

  // A marker that a reload would wipe: every later check of it proves the page never reloaded.
  await page.evaluate(() => {
    window.__corralNoReload = 'still here';
  });
  const noReload = async (what) => {
    const m = await page.evaluate(() => window.__corralNoReload);
    assert(m === 'still here', `${what}: the page was reloaded`);
  };

  await step('launch a mock instance and watch it reach launched without a reload', async () => {
    await nav(page, 'Instances', 'Instances');
    await page.getByLabel('Name', { exact: true }).fill(INSTANCE);
    const small = await page.locator('form.launch select[name="flavor"] option', { hasText: /^small/ }).first().getAttribute('value');
    await page.getByLabel('Flavor', { exact: true }).selectOption(small);
    await page.getByLabel('Image', { exact: true }).selectOption({ index: 0 });
    await page.getByRole('button', { name: 'Launch' }).click();
    const row = page.locator('tbody tr', { has: page.getByRole('rowheader', { name: INSTANCE }) });
    const state = row.locator('[data-state-for]');
    await state.waitFor();
    const seen = new Set();
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const s = (await state.innerText()).trim();
      seen.add(s);
      if (s === 'launched') break;
      assert(s !== 'error', 'the instance ended in error');
      assert(Date.now() < deadline, `never launched; states seen: ${[...seen]}`);
      await page.waitForTimeout(50);
    }
    log(`  states seen: ${[...seen].join(' → ')}`);
    assert([...seen].some((s) => s === 'queued' || s === 'launching'), `a transitional state was shown first: ${[...seen]}`);
    await noReload('instance launch');
    await shot(page, 'instances', { phone: true });
  });

  await step('the instance page shows history and console output', async () => {
    await page.getByRole('link', { name: INSTANCE }).click();
    await page.getByRole('heading', { level: 1, name: `Instance ${INSTANCE}` }).waitFor();
    await page.getByRole('cell', { name: 'launch' }).first().waitFor();
    await page.getByRole('heading', { name: 'Console output' }).waitFor();
    await shot(page, 'instance');
    // An action from the instance's own page: reboot, seen going through `rebooting`.
    await page.getByRole('group', { name: 'Instance actions' }).getByRole('button', { name: 'Reboot', exact: true }).click();
    const state = page.locator('dl.props [data-state-for]');
    await state.filter({ hasText: 'rebooting' }).waitFor();
    await state.filter({ hasText: 'launched' }).waitFor();
    await page.getByRole('cell', { name: 'reboot' }).first().waitFor();
    await noReload('instance page');
  });

  if (CLUSTER) {
    await step('run a rolling restart over the sshd hosts and watch each host progress live', async () => {
      await nav(page, 'Clusters', 'Clusters');
      await shot(page, 'clusters');
      await page.getByRole('link', { name: CLUSTER, exact: true }).click();
      await page.getByRole('heading', { level: 1, name: `Cluster ${CLUSTER}` }).waitFor();
      for (const a of HOSTS) await page.getByRole('rowheader', { name: a }).waitFor();
      await page.getByRole('button', { name: 'Rolling restart' }).click();
      const op = page.locator('.op-progress[data-op="restart"]');
      const snapshots = [];
      const deadline = Date.now() + 90_000;
      let midShot = false;
      for (;;) {
        const status = await op.getAttribute('data-status').catch(() => null);
        const steps = await op.locator('li[data-step]').evaluateAll((els) => els.map((e) => `${e.dataset.host}=${e.dataset.step}`)).catch(() => []);
        const snap = `${status}: ${steps.join(' ')}`;
        if (snapshots[snapshots.length - 1] !== snap) {
          snapshots.push(snap);
          log(`  ${snap}`);
        }
        if (!midShot && status === 'in_process' && steps.some((s) => s.endsWith('=done'))) {
          midShot = true;
          await shot(page, 'cluster-restart', { phone: true, scrollTo: '.op-area' });
        }
        if (status === 'finished' || status === 'failed') break;
        assert(Date.now() < deadline, `restart never finished: ${snapshots.join(' | ')}`);
        await page.waitForTimeout(100);
      }
      const last = snapshots[snapshots.length - 1];
      const why = (await op.locator('.failure').count()) ? await op.locator('.failure').innerText() : '';
      assert(last.startsWith('finished'), `restart finished: ${last} ${why}`);
      for (const a of HOSTS) assert(last.includes(`${a}=done`), `${a} done in ${last}`);
      // Progress was seen host by host: some snapshot had a host done while another was not.
      assert(
        snapshots.some((s) => s.startsWith('in_process') && s.includes('=done') && /=(running|pending)/.test(s)),
        `per-host progress was shown live: ${snapshots.join(' | ')}`,
      );
      await noReload('rolling restart');
      await shot(page, 'cluster');
    });
  }

  await step('a query and its EXPLAIN', async () => {
    await nav(page, 'Query', 'Query');
    await page.getByLabel('SQL').fill(`select name, state from instances where name = '${INSTANCE}'`);
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    const results = page.locator('.results');
    await results.getByRole('cell', { name: 'launched' }).waitFor();
    await results.getByRole('cell', { name: INSTANCE }).waitFor();
    await shot(page, 'query');
    await page.getByRole('button', { name: 'Explain' }).click();
    await results.getByRole('columnheader', { name: 'task' }).waitFor();
    const n = await results.locator('tbody tr').count();
    assert(n >= 1, `EXPLAIN has plan steps (${n})`);
    await shot(page, 'query-explain');
    await page.getByLabel('SQL').fill('selec 1');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await results.getByText('syntax_error').waitFor();
  });

  await step('CSRF: a cookie-authenticated change without the token is refused 403', async () => {
    const probe = `csrf-probe-${Date.now()}`;
    const out = await page.evaluate(async (name) => {
      const noToken = await fetch(`/api/v0/network/${name}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      const badToken = await fetch(`/api/v0/network/${name}`, { method: 'PUT', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'forged' }, body: '{}' });
      const read = await fetch(`/api/v0/network/${name}`);
      return { noToken: [noToken.status, await noToken.text()], badToken: [badToken.status, await badToken.text()], read: read.status };
    }, probe);
    log(`  ${JSON.stringify(out)}`);
    assert(out.noToken[0] === 403 && out.noToken[1].includes('CSRF'), `no token → 403: ${out.noToken}`);
    assert(out.badToken[0] === 403 && out.badToken[1].includes('CSRF'), `forged token → 403: ${out.badToken}`);
    assert(out.read === 404, `nothing was created (GET → ${out.read})`);
    // The console itself sends the token: the same change through its form works.
    await nav(page, 'Networks', 'Networks');
    await page.getByLabel('Name', { exact: true }).fill(probe);
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('rowheader', { name: probe }).waitFor();
    await shot(page, 'networks');
  });

  await step('the dashboard shows a running upgrade host by host', async () => {
    await nav(page, 'Dashboard', /Dashboard/);
    await page.getByRole('heading', { name: 'Services' }).waitFor();
    if (CLUSTER) {
      const r = await apiCall('PUT', `/api/v0/cluster/${CLUSTER}/upgrade`, ADMIN_KEY, {});
      assert(r.status === 201, `upgrade started: ${JSON.stringify(r)}`);
      const op = page.locator('.op-progress[data-op="upgrade"]');
      await op.locator('li[data-step="done"]').first().waitFor();
      await shot(page, 'dashboard', { phone: true });
      await op.waitFor({ state: 'detached', timeout: 60_000 });
      await noReload('dashboard');
    } else {
      await shot(page, 'dashboard', { phone: true });
    }
  });

  if (CLUSTER && HOSTS.length) {
    await step('a host leaves the cluster and joins it again from the cluster page', async () => {
      const last = HOSTS[HOSTS.length - 1];
      await nav(page, 'Clusters', 'Clusters');
      await page.getByRole('link', { name: CLUSTER, exact: true }).click();
      await page.getByRole('heading', { level: 1, name: `Cluster ${CLUSTER}` }).waitFor();
      const members = page.getByRole('region', { name: 'Members in join order' });
      await members.getByRole('rowheader', { name: last }).waitFor();
      await page.getByRole('button', { name: `Remove ${last} from ${CLUSTER}` }).click();
      await members.getByRole('rowheader', { name: last }).waitFor({ state: 'detached' });
      let m = await apiCall('GET', `/api/v0/cluster/${CLUSTER}/hosts`, ADMIN_KEY);
      assert(!m.data.includes(last), `${last} left: ${JSON.stringify(m.data)}`);
      await page.getByLabel('Host', { exact: true }).selectOption(last);
      await page.getByRole('button', { name: 'Join host' }).click();
      await members.getByRole('rowheader', { name: last }).waitFor();
      m = await apiCall('GET', `/api/v0/cluster/${CLUSTER}/hosts`, ADMIN_KEY);
      assert(m.data.includes(last), `${last} joined again: ${JSON.stringify(m.data)}`);
      // The host's status follows live (it becomes active again as a member).
      await members.locator('tr', { has: page.getByRole('rowheader', { name: last }) }).getByText('active').waitFor({ timeout: 60_000 });
      await noReload('cluster membership');
    });
  }

  await step('on a phone the menu button opens and closes the navigation', async () => {
    const vp = page.viewportSize();
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const menu = page.getByRole('button', { name: 'Menu' });
      const hostsLink = page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Hosts', exact: true });
      assert(!(await hostsLink.isVisible()), 'the navigation is folded on a phone');
      await menu.click();
      assert((await menu.getAttribute('aria-expanded')) === 'true', 'the menu says it is open');
      await hostsLink.click();
      await page.getByRole('heading', { level: 1, name: 'Hosts' }).waitFor();
      assert(!(await hostsLink.isVisible()), 'the navigation folds again after a choice');
      assert((await menu.getAttribute('aria-expanded')) === 'false', 'the menu says it is closed');
    } finally {
      await page.setViewportSize(vp);
    }
  });

  await step('the other pages render', async () => {
    await nav(page, 'Hosts', 'Hosts');
    for (const a of HOSTS) await page.getByRole('rowheader', { name: a }).waitFor();
    await shot(page, 'hosts', { phone: true });
    await nav(page, 'Container managers', 'Container managers');
    await page.getByLabel('Name', { exact: true }).fill('trivial-cm');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('rowheader', { name: 'trivial-cm' }).waitFor();
    await shot(page, 'containermanagers');
    await nav(page, 'Images', 'Images');
    await page.getByLabel('Image name').fill(`${INSTANCE}-snap`);
    await page.getByRole('button', { name: 'Snapshot' }).click();
    await page.locator('tbody tr', { has: page.getByRole('rowheader', { name: `${INSTANCE}-snap` }) }).getByText('saved').waitFor();
    await shot(page, 'images');
    await nav(page, 'Apps & services', 'Apps & services');
    if (SERVICE) {
      const [ns, app, svc] = SERVICE.split('/');
      await page.getByRole('link', { name: `${app} / ${svc}` }).waitFor();
      await shot(page, 'apps');
      await page.getByRole('link', { name: `${app} / ${svc}` }).click();
      await page.getByRole('heading', { level: 1, name: `Service ${app} / ${svc}` }).waitFor();
      await page.getByText(/Total: 100%/).waitFor();
      await shot(page, 'service', { phone: true });
      const svcPath = `/v3/namespaces/${ns}/apps/${app}/services/${svc}`;
      // The split editor: a split that does not add up is refused with the API's message...
      await page.getByLabel('Version 1.0.0 (%)').fill('10');
      await page.getByText('Total: 80% (must be 100)').waitFor();
      await page.getByRole('button', { name: 'Save split' }).click();
      await page.locator('form.split-editor .form-error').filter({ hasText: 'Route Percentage needs to add up to 100.' }).waitFor();
      // ...an even one is stored.
      await page.getByRole('button', { name: 'Even split' }).click();
      await page.getByRole('button', { name: 'Save split' }).click();
      await page.getByText('Route config saved.').waitFor();
      const rc = await apiCall('GET', `${svcPath}/routeconfig`, ADMIN_KEY);
      assert(JSON.stringify(rc.data) === JSON.stringify({ '1.0.0': 50, '2.0.0': 50 }), `the split was stored: ${JSON.stringify(rc.data)}`);
      // Scale the running service to 3 from its page; the counts follow live.
      await page.getByLabel(`Instances of ${svc}`).fill('3');
      await page.getByRole('button', { name: `Scale ${svc}` }).click();
      await page.getByText(/3 healthy, 3 up, 3 requested/).waitFor({ timeout: 60_000 });
      await noReload('service page');
    } else {
      await shot(page, 'apps');
    }
    await nav(page, 'Users', `Users of ${TENANT}`);
    await shot(page, 'users');
  });

  await step('more actions: resize, rename, image and network deletes, a refused app spec, users', async () => {
    // Resize the instance from the list's action bar (a selection), to the large flavor.
    await nav(page, 'Instances', 'Instances');
    const row = page.locator('tbody tr', { has: page.getByRole('rowheader', { name: INSTANCE }) });
    await row.getByRole('checkbox').check();
    const large = await page.locator('select[aria-label="Flavor to resize to"] option', { hasText: /^large/ }).first().getAttribute('value');
    await page.getByLabel('Flavor to resize to').selectOption(large);
    await page.getByRole('button', { name: 'Resize' }).click();
    await row.getByText('large').waitFor();
    await row.locator('[data-state-for]').filter({ hasText: /^launched$/ }).waitFor();
    // Rename it from its page, and back.
    await page.getByRole('link', { name: INSTANCE }).click();
    await page.getByLabel('New name').fill(`${INSTANCE}-renamed`);
    await page.getByRole('button', { name: 'Rename' }).click();
    await page.getByRole('heading', { level: 1, name: `Instance ${INSTANCE}-renamed` }).waitFor();
    await page.getByLabel('New name').fill(INSTANCE);
    await page.getByRole('button', { name: 'Rename' }).click();
    await page.getByRole('heading', { level: 1, name: `Instance ${INSTANCE}` }).waitFor();
    // Delete the snapshot (a two-step button) and the CSRF probe network.
    await nav(page, 'Images', 'Images');
    const snap = page.getByRole('button', { name: `Delete image ${INSTANCE}-snap` });
    await confirmClick(snap);
    await page.getByRole('rowheader', { name: `${INSTANCE}-snap` }).waitFor({ state: 'detached', timeout: TIMEOUT });
    await nav(page, 'Networks', 'Networks');
    const probeRow = page.getByRole('rowheader', { name: /^csrf-probe-/ });
    const probe = await probeRow.innerText();
    const del = page.getByRole('button', { name: `Delete ${probe}` });
    await confirmClick(del);
    await probeRow.waitFor({ state: 'detached' });
    // A spec whose command does not exist: the API's 400 message is shown by the form.
    await nav(page, 'Apps & services', 'Apps & services');
    await page.getByLabel('App name').fill('broken');
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.locator('form .form-error').filter({ hasText: '400' }).waitFor();
    // Users: create one, make it a viewer, delete it.
    await nav(page, 'Users', `Users of ${TENANT}`);
    await page.getByLabel('User id').fill('ops');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('rowheader', { name: 'ops' }).waitFor();
    await page.getByLabel('Role of ops').selectOption('viewer');
    await page.getByText('ops is now viewer.').waitFor();
    const u = await apiCall('GET', '/v2/users/ops', ADMIN_KEY);
    assert(u.data.role === 'viewer', `role changed: ${JSON.stringify(u.data)}`);
    const delUser = page.getByRole('button', { name: 'Delete ops' });
    await confirmClick(delUser);
    await page.getByRole('rowheader', { name: 'ops' }).waitFor({ state: 'detached' });
    await noReload('more actions');
  });

  await step('a tenant admin issues a key, shown once', async () => {
    await page.getByRole('button', { name: `Keys of ${VIEWER_USER}` }).click();
    await page.getByRole('heading', { name: `API keys of ${VIEWER_USER}` }).waitFor();
    await page.getByLabel('Description').last().fill('from the console');
    await page.getByRole('button', { name: 'Issue key' }).click();
    const secret = await page.locator('code.secret').innerText();
    assert(/^crk_[A-Za-z0-9_-]{43}$/.test(secret), `a new key is shown: ${secret}`);
    const who = await apiCall('GET', '/whoami', secret);
    assert(who.status === 200 && who.data.user === VIEWER_USER, `the shown key works: ${JSON.stringify(who)}`);
    await shot(page, 'users-key');
  });

  await step('sign out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/ui/signin');
    await page.getByText('You have signed out.').waitFor();
    const status = await page.evaluate(async () => (await fetch('/whoami')).status);
    assert(status === 401, `after sign-out the cookie no longer authenticates (${status})`);
  });

  await step('a viewer sees the 403 message of a forbidden action', async () => {
    const { context, page: vp } = await newPage(browser, 'viewer');
    await signIn(vp, VIEWER_KEY);
    await nav(vp, 'Instances', 'Instances');
    await vp.getByLabel('Name', { exact: true }).fill('not-allowed');
    await vp.getByRole('button', { name: 'Launch' }).click();
    const alert = vp.locator('form.launch .form-error');
    await alert.filter({ hasText: '403' }).waitFor();
    const text = await alert.innerText();
    log(`  viewer sees: ${text}`);
    assert(/request id [0-9a-f-]+/.test(text), `the request id is shown: ${text}`);
    await shot(vp, 'viewer-forbidden');
    const n = await apiCall('POST', '/query', ADMIN_KEY, [{ sql: "select count(*) as n from instances where name = 'not-allowed'" }]);
    assert(n.data[0].data.row[0].value[0] === 0, 'nothing was launched');
    await context.close();
  });

  await step('revoking the key ends its session', async () => {
    const user = `temp${Date.now()}`;
    let r = await apiCall('POST', '/v2/users', ADMIN_KEY, { id: user, role: 'user' });
    assert(r.status === 201, `user created: ${JSON.stringify(r)}`);
    r = await apiCall('POST', `/v2/users/${user}/apikeys`, ADMIN_KEY, { description: 'revoked by the e2e test' });
    const key = r.data;
    const { context, page: tp } = await newPage(browser, 'revoked');
    await signIn(tp, key.key);
    await nav(tp, 'Hosts', 'Hosts');
    r = await apiCall('DELETE', `/v2/users/${user}/apikeys/${key.id}`, ADMIN_KEY);
    assert(r.status === 200, `key revoked: ${r.status}`);
    // The next API call of the page answers 401: the console drops the session.
    await tp.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Clusters', exact: true }).click();
    await tp.waitForURL('**/ui/signin');
    await tp.getByText(/Your session has ended/).waitFor();
    await shot(tp, 'session-ended');
    await context.close();
  });

  if (SUPER_KEY) {
    await step('the superadmin manages tenants', async () => {
      const { context, page: sp } = await newPage(browser, 'superadmin');
      await signIn(sp, SUPER_KEY);
      await nav(sp, 'Tenants', 'Tenants');
      await sp.getByRole('rowheader', { name: TENANT }).waitFor();
      const name = `t${Date.now() % 100000}`;
      await sp.getByLabel('Name', { exact: true }).fill(name);
      await sp.getByRole('button', { name: 'Create tenant' }).click();
      const secret = await sp.locator('code.secret').innerText();
      const who = await apiCall('GET', '/whoami', secret);
      assert(who.status === 200 && who.data.tenant === name, `the new tenant's admin key works: ${JSON.stringify(who)}`);
      await shot(sp, 'tenants');
      // Edit it down to 0 workers, then delete it.
      await sp.getByRole('button', { name: `Edit ${name}` }).click();
      const edit = sp.getByRole('form', { name: `Edit tenant ${name}` });
      await edit.getByLabel('Workers').fill('0');
      await edit.getByRole('button', { name: 'Save' }).click();
      await sp.locator('tbody tr', { has: sp.getByRole('rowheader', { name }) }).getByRole('cell', { name: '0', exact: true }).first().waitFor();
      const del = sp.getByRole('button', { name: `Delete ${name}` });
      await confirmClick(del);
      await sp.getByRole('rowheader', { name }).waitFor({ state: 'detached' });
      const gone = await apiCall('GET', `/v2/tenants/${name}`, SUPER_KEY);
      assert(gone.status === 404, `tenant deleted: ${gone.status}`);
      await context.close();
    });
  }
}

main()
  .then(() => {
    if (cspViolations.length) {
      failures += 1;
      log(`✘ the browser refused content under the CSP:\n${cspViolations.join('\n')}`);
    }
    log(failures ? `${failures} scenario(s) failed` : 'all scenarios passed');
    if (failures) {
      console.log(logs.join('\n'));
      process.exit(1);
    }
  })
  .catch((e) => {
    log(`FAILED: ${e.message}`);
    console.log('--- browser log ---');
    console.log(logs.join('\n'));
    process.exit(1);
  });

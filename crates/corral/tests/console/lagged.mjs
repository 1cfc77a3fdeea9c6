// The console's change-feed client when the server cuts it off for lagging (docs/events.md,
// "Slow watchers"): run by the `it` test `console_e2e::feed_lagged` against a server whose
// per-watcher buffer is tiny. A burst of launches overflows it; the page must resume from the
// revision the `lagged` event names (a new `GET /events?since=...`), refetch, and still show
// every instance reaching `launched`, without a reload.
//
//   CORRAL_URL, CORRAL_ADMIN_KEY, CHROMIUM (as scenario.mjs); CORRAL_E2E_COUNT (default 40).

import { chromium } from 'playwright-core';

const env = process.env;
const BASE = env.CORRAL_URL;
const KEY = env.CORRAL_ADMIN_KEY;
const COUNT = Number(env.CORRAL_E2E_COUNT || 40);
const logs = [];

function log(msg) {
  console.log(msg);
}

async function api(method, path, body) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, data: await r.json().catch(() => null) };
}

async function one(sql) {
  const r = await api('POST', '/query', [{ sql }]);
  if (r.status !== 200 || r.data[0].status !== 'success') throw new Error(`query failed: ${JSON.stringify(r)}`);
  return r.data[0].data.row.map((x) => x.value);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);
    page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.stack || e}`));
    const feeds = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/events') feeds.push(r.url());
    });

    await page.goto('/ui/signin');
    await page.getByLabel('API key').fill(KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: /Dashboard/ }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Instances', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Instances' }).waitFor();
    await page.locator('#live').filter({ hasText: 'live' }).waitFor();
    await page.evaluate(() => {
      window.__corralNoReload = 'still here';
    });

    const [[project]] = await one('select id from projects');
    const [[flavor]] = await one("select id from flavors where name = 'small'");
    const [[image]] = await one("select i.id from images i join project_images p on p.image_id = i.id where i.state = 'saved' order by i.name limit 1");
    const items = Array.from({ length: COUNT }, (_, i) => ({ name: `burst-${String(i).padStart(3, '0')}`, projectId: project, flavor: { id: flavor }, image: { id: image } }));
    const r = await api('POST', '/instances', items);
    if (r.status !== 200 || r.data.some((x) => x.status !== 202)) throw new Error(`launch: ${JSON.stringify(r)}`);
    log(`launched ${COUNT} instances through the API`);

    const launched = page.locator('tbody [data-state-for]').filter({ hasText: /^launched$/ });
    const deadline = Date.now() + 90_000;
    for (;;) {
      const n = await launched.count();
      if (n === COUNT) break;
      if (Date.now() > deadline) throw new Error(`only ${n} of ${COUNT} shown as launched`);
      await page.waitForTimeout(200);
    }
    log(`the page shows all ${COUNT} launched`);
    const marker = await page.evaluate(() => window.__corralNoReload);
    if (marker !== 'still here') throw new Error('the page was reloaded');
    const resumed = feeds.filter((u) => new URL(u).searchParams.has('since'));
    log(`feed requests: ${feeds.length}, resumed with since=: ${resumed.length}`);
    if (resumed.length === 0) throw new Error(`the feed was never resumed after a lagged cut-off: ${feeds.join(' ')}`);
    log('lagged scenario passed');
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((e) => {
  console.log(`FAILED: ${e.stack || e}`);
  console.log(logs.join('\n'));
  process.exit(1);
});

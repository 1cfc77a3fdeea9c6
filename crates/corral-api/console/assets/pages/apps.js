// Apps and services (CDAP): apps of a namespace with their services (start, stop, scale,
// availability), deploying an app from its JSON spec, and one service's page with the route
// config split editor, runs and each process's recent output.

import * as api from '../api.js';
import { h, replace, table, badge, link, section, form, field, input, select, actionButton, confirmButton, toast, time, debounce, showError, dl, pre, liveRefresh } from '../ui.js';

const svcBase = (ns, app, svc) => `/v3/namespaces/${api.seg(ns)}/apps/${api.seg(app)}/services/${api.seg(svc)}`;

async function availability(base) {
  try {
    await api.call('GET', `${base}/available`);
    return 'available';
  } catch (e) {
    if (e.status === 503) return e.message;
    throw e;
  }
}

/** Start, stop and scale controls of one service; `after` refreshes the caller. */
function controls(base, name, requested, after) {
  const n = input('instances', { type: 'number', min: '1', value: String(requested || 1), 'aria-label': `Instances of ${name}`, class: 'narrow', inputmode: 'numeric' });
  return h('span', { class: 'actions' },
    actionButton('Start', async () => {
      const r = await api.post(`${base}/start`);
      toast(`${name} started (run ${r && r.runid}).`);
      await after();
    }, { 'aria-label': `Start ${name}` }),
    actionButton('Stop', async () => {
      await api.post(`${base}/stop`);
      toast(`${name} stopped.`);
      await after();
    }, { 'aria-label': `Stop ${name}` }),
    n,
    actionButton('Scale', async () => {
      await api.put(`${base}/instances`, { instances: Number(n.value) });
      toast(`${name} scaled to ${n.value}.`);
      await after();
    }, { 'aria-label': `Scale ${name}` }));
}

const SPEC_EXAMPLE = JSON.stringify({ version: '1.0.0', description: 'My app', services: [{ name: 'web', command: ['/usr/local/bin/web'], instances: 1, health_path: '/health' }] }, null, 2);

export async function list(main, _p, ctx) {
  const params = new URLSearchParams(location.search);
  const nss = await api.get('/v3/namespaces');
  const ns = params.get('ns') && nss.some((x) => x.name === params.get('ns')) ? params.get('ns') : 'default';
  const nsSel = select('ns', nss.map((x) => ({ value: x.name, label: x.name, selected: x.name === ns })));
  nsSel.addEventListener('change', () => ctx.navigate(`/ui/apps?ns=${encodeURIComponent(nsSel.value)}`));
  const appsBox = h('div');
  const svcBox = h('div');
  const deploy = form({ class: 'stack-form', 'aria-label': 'Deploy an app' }, [
    field('App name', input('app', { required: true })),
    field('Specification (JSON)', h('textarea', { name: 'spec', rows: '8', class: 'code', spellcheck: 'false' }, SPEC_EXAMPLE), 'version, description and services (name, command, env, instances, health_path): docs/services.md.'),
    h('button', { type: 'submit', class: 'primary' }, 'Deploy'),
  ], async (d) => {
    let spec;
    try {
      spec = JSON.parse(d.spec);
    } catch (e) {
      throw new Error(`The specification is not JSON: ${e.message}`);
    }
    await api.put(`/v3/namespaces/${api.seg(ns)}/apps/${api.seg(d.app)}`, spec);
    toast(`${d.app} deployed.`);
    await refresh();
  });
  const nsForm = form({ class: 'inline-form', 'aria-label': 'Create a namespace' }, [field('New namespace', input('name', { required: true })), h('button', { type: 'submit' }, 'Create namespace')], async (d) => {
    await api.put(`/v3/namespaces/${api.seg(d.name)}`, {});
    ctx.navigate(`/ui/apps?ns=${encodeURIComponent(d.name)}`);
  });
  main.append(h('h1', {}, 'Apps & services'), field('Namespace', nsSel), section('Services', svcBox), section('Apps', appsBox), section('Deploy an app', deploy), section('Namespaces', nsForm));

  async function refresh() {
    const apps = await api.get(`/v3/namespaces/${api.seg(ns)}/apps`);
    replace(appsBox, table(
      [
        { label: 'App', header: true, get: (a) => a.name },
        { label: 'Current version', get: (a) => a.version },
        { label: 'Description', get: (a) => a.description },
        { label: 'Actions', get: (a) => confirmButton('Delete', async () => {
          await api.del(`/v3/namespaces/${api.seg(ns)}/apps/${api.seg(a.name)}`);
          toast(`${a.name} deleted.`);
          await refresh();
        }, { 'aria-label': `Delete app ${a.name}` }) },
      ],
      apps,
      { caption: `Apps in ${ns}`, empty: 'No apps in this namespace.' },
    ));
    const svcs = await api.get(`/v3/namespaces/${api.seg(ns)}/services`);
    const rows = await Promise.all(svcs.map(async (s) => {
      const base = svcBase(ns, s.app, s.name);
      const [st, inst, avail] = await Promise.all([api.get(`${base}/status`), api.get(`${base}/instances`), availability(base)]);
      return { ...s, base, status: st.status, inst, avail };
    }));
    replace(svcBox, table(
      [
        { label: 'Service', header: true, get: (r) => link(`/ui/apps/${encodeURIComponent(ns)}/${encodeURIComponent(r.app)}/${encodeURIComponent(r.name)}`, `${r.app} / ${r.name}`) },
        { label: 'Status', get: (r) => badge(r.status) },
        { label: 'Instances', get: (r) => `${r.inst.healthy} healthy, ${r.inst.provisioned} up, ${r.inst.requested} requested` },
        { label: 'Availability', get: (r) => (r.avail === 'available' ? badge('available') : h('span', { class: 'muted' }, r.avail)) },
        { label: 'Actions', get: (r) => controls(r.base, r.name, r.inst.requested, refresh) },
      ],
      rows,
      { caption: `Services in ${ns}`, empty: 'No services: deploy an app below.' },
    ));
  }
  await refresh();
  ctx.on(['app', 'service', 'service_run', 'service_instance'], liveRefresh(refresh));
}

export async function service(main, [ns, app, svc], ctx) {
  const base = svcBase(ns, app, svc);
  const info = h('div', { 'aria-live': 'polite' });
  const routeBox = h('div');
  const runsBox = h('div');
  const procBox = h('div');
  main.append(
    h('p', { class: 'crumbs' }, link(`/ui/apps?ns=${encodeURIComponent(ns)}`, `Apps (${ns})`), ' / ', `${app} / ${svc}`),
    h('h1', {}, `Service ${app} / ${svc}`),
    info,
    section('Route config', h('p', { class: 'hint' }, 'The traffic split between the app\'s versions; the percentages must add up to 100.'), routeBox),
    section('Processes and recent output', procBox),
    section('Runs', runsBox),
  );

  async function refreshInfo() {
    const [spec, st, inst, avail] = await Promise.all([api.get(base), api.get(`${base}/status`), api.get(`${base}/instances`), availability(base)]);
    replace(info, dl([
      ['Status', badge(st.status)],
      ['Current version', spec.version],
      ['Command', h('code', {}, (spec.command || []).join(' '))],
      ['Instances', `${inst.healthy} healthy, ${inst.provisioned} up, ${inst.requested} requested`],
      ['Availability', avail === 'available' ? badge('available') : avail],
      ['Controls', controls(base, svc, inst.requested, refreshAll)],
    ]));
    const procs = await api.get(`${base}/processes`);
    replace(procBox, procs.length ? procs.map((p) => h('div', { class: 'proc' },
      h('h3', {}, `Instance ${p.instance} `, badge(p.healthy ? 'healthy' : 'unhealthy'), ` pid ${p.pid ?? '—'}, port ${p.port ?? '—'}, ${p.restarts} restarts`),
      pre(p.output, { 'aria-label': `Output of instance ${p.instance}` }))) : h('p', { class: 'empty' }, 'No process is running.'));
    const runs = await api.get(`${base}/runs?limit=20`);
    replace(runsBox, table(
      [
        { label: 'Run', get: (r) => h('code', {}, r.runid) },
        { label: 'Status', get: (r) => badge(r.status) },
        { label: 'Started', get: (r) => time(r.start * 1000) },
        { label: 'Ended', get: (r) => (r.end ? time(r.end * 1000) : '—') },
      ],
      runs,
      { caption: 'Runs, newest first', empty: 'Never started.' },
    ));
  }

  async function refreshRoute() {
    const versions = (await api.get(`/v3/namespaces/${api.seg(ns)}/apps/${api.seg(app)}/versions`)) || [];
    const cfg = (await api.get(`${base}/routeconfig`)) || {};
    const sum = h('output', { 'aria-live': 'polite' });
    const inputs = versions.map((v) => {
      const num = input(`v:${v}`, { type: 'number', min: '0', max: '100', value: String(cfg[v] ?? 0), class: 'narrow', inputmode: 'numeric' });
      const range = h('input', { type: 'range', min: '0', max: '100', value: String(cfg[v] ?? 0), 'aria-label': `${v} share (slider)`, tabindex: '-1' });
      num.addEventListener('input', () => {
        range.value = num.value;
        total();
      });
      range.addEventListener('input', () => {
        num.value = range.value;
        total();
      });
      return { v, num, range };
    });
    const total = () => {
      const s = inputs.reduce((a, x) => a + (Number(x.num.value) || 0), 0);
      sum.textContent = `Total: ${s}%${s === 100 ? '' : ' (must be 100)'}`;
      sum.className = s === 100 ? 'ok' : 'failure';
    };
    total();
    const f = form({ class: 'split-editor', 'aria-label': 'Route config' }, [
      inputs.map((x) => h('div', { class: 'split-row' }, field(`Version ${x.v} (%)`, x.num), x.range)),
      sum,
      h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Save split'), ' ',
        button2('Even split', () => {
          const each = Math.floor(100 / Math.max(inputs.length, 1));
          inputs.forEach((x, i) => {
            x.num.value = String(i === 0 ? 100 - each * (inputs.length - 1) : each);
            x.range.value = x.num.value;
          });
          total();
        }), ' ',
        confirmButton('Delete split', async () => {
          await api.del(`${base}/routeconfig`);
          toast('Route config deleted.');
          await refreshRoute();
        })),
    ], async () => {
      const body = {};
      for (const x of inputs) body[x.v] = Number(x.num.value) || 0;
      await api.put(`${base}/routeconfig`, body);
      toast('Route config saved.');
      await refreshRoute();
    });
    replace(routeBox, Object.keys(cfg).length ? null : h('p', { class: 'hint' }, 'No split stored: requests go to the current version.'), f);
  }

  async function refreshAll() {
    await Promise.all([refreshInfo(), refreshRoute()]);
  }
  await refreshAll();
  ctx.on(['service', 'service_run', 'service_instance', 'app'], liveRefresh(refreshInfo));
}

function button2(label, fn) {
  return h('button', { type: 'button', onclick: fn }, label);
}

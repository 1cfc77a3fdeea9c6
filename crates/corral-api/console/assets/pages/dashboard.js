// The tenant's dashboard: hosts by status, clusters with their running operations and each
// host's step, instances by state, services and their availability, recent failures. It
// refreshes itself from the change feed.

import * as api from '../api.js';
import { h, replace, table, badge, link, section, debounce, showError, time, liveRefresh } from '../ui.js';
import { opProgress, operations } from './clusters.js';

const SQL = [
  'select status, count(*) as n from hosts group by status order by status',
  'select name, status, hosts_total, hosts_available from clusters order by name',
  "select cluster, type from operations where status = 'in_process' order by cluster",
  'select state, count(*) as n from instances group by state order by state',
  "select name, id, last_updated from instances where state = 'error' order by last_updated desc limit 10",
  "select address, last_check from hosts where status = 'failed' order by address limit 10",
  "select cluster, type, message, finished_at from operations where status = 'failed' order by finished_at desc limit 10",
  'select cluster, address from cluster_hosts order by cluster, position',
].join('; ');

function counts(rows, key) {
  if (!rows.length) return h('p', { class: 'empty' }, 'None.');
  return h('ul', { class: 'counts' }, rows.map((r) => h('li', {}, badge(r[key]), h('span', { class: 'count' }, String(r.n)))));
}

export async function render(main, _p, ctx) {
  const s = ctx.session;
  const hostsBox = h('div');
  const clustersBox = h('div');
  const opsBox = h('div', { 'aria-live': 'polite' });
  const instBox = h('div');
  const svcBox = h('div');
  const failBox = h('div');
  main.append(
    h('h1', {}, `Dashboard — ${s.tenant}`),
    h('div', { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'd-hosts' }, h('h2', { id: 'd-hosts' }, link('/ui/hosts', 'Hosts')), hostsBox),
      h('section', { class: 'card', 'aria-labelledby': 'd-inst' }, h('h2', { id: 'd-inst' }, link('/ui/instances', 'Instances')), instBox),
      h('section', { class: 'card', 'aria-labelledby': 'd-cl' }, h('h2', { id: 'd-cl' }, link('/ui/clusters', 'Clusters')), clustersBox),
    ),
    section('Running operations', opsBox),
    section('Services', svcBox),
    section('Recent failures', failBox),
  );

  async function refresh() {
    const [hosts, clusters, running, inst, badInst, badHosts, badOps, members] = await api.query(SQL);
    replace(hostsBox, counts(hosts.rows, 'status'));
    replace(instBox, counts(inst.rows, 'state'));
    replace(
      clustersBox,
      clusters.rows.length
        ? h('ul', { class: 'plain' }, clusters.rows.map((c) => h('li', {}, link(`/ui/clusters/${encodeURIComponent(c.name)}`, c.name), ' ', badge(c.status), ` ${c.hosts_available}/${c.hosts_total} hosts`)))
        : h('p', { class: 'empty' }, 'None.'),
    );
    const memberOf = {};
    for (const m of members.rows) (memberOf[m.cluster] ||= []).push(m.address);
    const recs = await Promise.all(running.rows.map(async (o) => [o, (await operations(o.cluster))[o.type]]));
    replace(
      opsBox,
      recs.length
        ? recs.filter(([, r]) => r).map(([o, r]) => h('div', { class: 'op' }, h('h3', {}, link(`/ui/clusters/${encodeURIComponent(o.cluster)}`, o.cluster), ` — ${o.type}`), opProgress(o.type, r, memberOf[o.cluster] || [])))
        : h('p', { class: 'empty' }, 'No operation is running.'),
    );
    const fails = [
      ...badInst.rows.map((r) => ({ what: 'instance', name: link(`/ui/instances/${r.id}`, r.name), when: r.last_updated, detail: 'state error' })),
      ...badHosts.rows.map((r) => ({ what: 'host', name: h('code', {}, r.address), when: r.last_check, detail: 'failed' })),
      ...badOps.rows.map((r) => ({ what: `${r.type} of ${r.cluster}`, name: link(`/ui/clusters/${encodeURIComponent(r.cluster)}`, r.cluster), when: r.finished_at, detail: r.message })),
    ];
    replace(
      failBox,
      table(
        [
          { label: 'What', get: (f) => f.what },
          { label: 'Name', get: (f) => f.name },
          { label: 'Detail', get: (f) => f.detail },
          { label: 'When', get: (f) => time(f.when) },
        ],
        fails,
        { caption: 'Failures', empty: 'No failures.' },
      ),
    );
  }

  async function refreshServices() {
    const nss = await api.get('/v3/namespaces');
    const svcs = [];
    for (const ns of nss.slice(0, 20)) {
      for (const sv of await api.get(`/v3/namespaces/${api.seg(ns.name)}/services`)) svcs.push({ ns: ns.name, ...sv });
    }
    const rowsOut = await Promise.all(
      svcs.slice(0, 50).map(async (sv) => {
        const base = `/v3/namespaces/${api.seg(sv.ns)}/apps/${api.seg(sv.app)}/services/${api.seg(sv.name)}`;
        const [st, inst, avail] = await Promise.all([
          api.get(`${base}/status`),
          api.get(`${base}/instances`),
          api.call('GET', `${base}/available`).then(() => 'available', (e) => (e.status === 503 ? e.message : `${e.status}`)),
        ]);
        return { ...sv, status: st.status, inst, avail };
      }),
    );
    replace(
      svcBox,
      table(
        [
          { label: 'Service', header: true, get: (r) => link(`/ui/apps/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.app)}/${encodeURIComponent(r.name)}`, `${r.ns}/${r.app}/${r.name}`) },
          { label: 'Status', get: (r) => badge(r.status) },
          { label: 'Instances (healthy / requested)', get: (r) => `${r.inst.healthy} / ${r.inst.requested}` },
          { label: 'Availability', get: (r) => (r.avail === 'available' ? badge('available') : h('span', { class: 'muted' }, r.avail)) },
        ],
        rowsOut,
        { caption: 'Services', empty: 'No services deployed.' },
      ),
    );
  }

  await Promise.all([refresh(), refreshServices()]);
  ctx.on(['host', 'cluster', 'operation', 'operation_step', 'instance'], liveRefresh(refresh));
  ctx.on(['app', 'service', 'service_run', 'service_instance', 'namespace'], liveRefresh(refreshServices));
}

// Clusters: the list, one cluster's members (join, leave) and its rolling operations
// (deploy, upgrade, restart) with a live per-host progress view fed by the change feed.

import * as api from '../api.js';
import { h, replace, table, badge, link, section, form, field, input, select, actionButton, confirmButton, toast, time, debounce, dl, showError, liveRefresh } from '../ui.js';

const OPS = ['deploy', 'upgrade', 'restart'];
const DONE_FIELD = { deploy: 'deployed', upgrade: 'upgraded', restart: 'restarted' };

/**
 * The per-host progress of an operation record (commissaire-v0.md 3.6) over `members` (join
 * order): a progress bar and each host's step state.
 */
export function opProgress(kind, rec, members) {
  const done = new Set(rec[DONE_FIELD[kind]] || []);
  const running = new Set(rec.in_process || []);
  const failed = new Set(rec.failed || []);
  const hosts = members && members.length ? members : [...done, ...running, ...failed];
  const total = hosts.length;
  const stateOf = (a) => (failed.has(a) ? 'failed' : done.has(a) ? 'done' : running.has(a) ? 'running' : rec.status === 'in_process' ? 'pending' : 'skipped');
  const label = `${kind} ${rec.version ? `of ${rec.version} ` : ''}— ${done.size} of ${total} hosts done${failed.size ? `, ${failed.size} failed` : ''}`;
  return h(
    'div',
    { class: 'op-progress', 'data-op': kind, 'data-status': rec.status },
    h('p', {}, badge(rec.status), ' ', h('span', { class: 'op-label' }, label)),
    h('progress', { max: String(Math.max(total, 1)), value: String(done.size), 'aria-label': `${kind} progress` }),
    h('ol', { class: 'host-steps' }, hosts.map((a) => h('li', { 'data-host': a, 'data-step': stateOf(a) }, h('code', {}, a), ' ', badge(stateOf(a))))),
    rec.message ? h('p', { class: 'failure' }, rec.message) : null,
    h('p', { class: 'hint' }, 'Started ', time(rec.started_at), rec.finished_at ? [', finished ', time(rec.finished_at)] : null),
  );
}

/** The latest record of each operation kind of a cluster (204 → none). */
export async function operations(name) {
  const out = {};
  await Promise.all(
    OPS.map(async (kind) => {
      const r = await api.call('GET', `/api/v0/cluster/${api.seg(name)}/${kind}`);
      if (r.status === 200 && r.data) out[kind] = r.data;
    }),
  );
  return out;
}

export async function list(main, _p, ctx) {
  const body = h('div');
  const networks = await api.get('/api/v0/networks');
  const cms = await api.get('/api/v0/containermanagers');
  const create = form(
    { class: 'inline-form', 'aria-label': 'Create a cluster' },
    [
      field('Name', input('name', { required: true })),
      field('Network', select('network', networks)),
      field('Container manager', select('container_manager', [{ value: '', label: '(none)' }, ...cms.map((c) => ({ value: c, label: c }))])),
      h('button', { type: 'submit', class: 'primary' }, 'Create cluster'),
    ],
    async (d, f) => {
      await api.put(`/api/v0/cluster/${api.seg(d.name)}`, { network: d.network, container_manager: d.container_manager });
      toast(`Cluster ${d.name} created.`);
      f.reset();
      await refresh();
    },
  );
  main.append(h('h1', {}, 'Clusters'), body, section('Create a cluster', create));
  async function refresh() {
    const [clusters, ops] = await api.query(
      "select name, status, network, container_manager, hosts_total, hosts_available, hosts_unavailable from clusters order by name; select cluster, type, status, hosts_done, hosts_in_process, hosts_failed from operations where status = 'in_process'",
    );
    const running = {};
    for (const o of ops.rows) running[o.cluster] = o;
    replace(
      body,
      table(
        [
          { label: 'Cluster', header: true, get: (c) => link(`/ui/clusters/${encodeURIComponent(c.name)}`, c.name) },
          { label: 'Status', get: (c) => badge(c.status) },
          { label: 'Hosts (available / total)', get: (c) => `${c.hosts_available} / ${c.hosts_total}` },
          { label: 'Network', get: (c) => c.network },
          { label: 'Container manager', get: (c) => c.container_manager || '—' },
          { label: 'Running operation', get: (c) => (running[c.name] ? `${running[c.name].type}: ${running[c.name].hosts_done} done, ${running[c.name].hosts_in_process} running` : '—') },
        ],
        clusters.rows,
        { caption: 'Clusters', empty: 'No clusters yet.', rowKey: (c) => c.name },
      ),
    );
  }
  await refresh();
  ctx.on(['cluster', 'operation', 'host'], liveRefresh(refresh));
}

export async function detail(main, [name], ctx) {
  const enc = api.seg(name);
  const info = h('div');
  const members = h('div');
  const progress = h('div', { class: 'op-area', 'aria-live': 'polite', 'aria-atomic': 'false' });
  const hostsAll = await api.get('/api/v0/hosts');

  const join = form(
    { class: 'inline-form', 'aria-label': 'Join a host' },
    [
      field('Host', select('address', hostsAll.map((x) => x.address))),
      h('button', { type: 'submit' }, 'Join host'),
    ],
    async (d) => {
      if (!d.address) throw new Error('Register a host first (Hosts page).');
      await api.put(`/api/v0/cluster/${enc}/hosts/${api.seg(d.address)}`);
      toast(`${d.address} joined ${name}.`);
      await refresh();
    },
  );
  const start = (kind) => async (d) => {
    const b = {};
    if (d.max_parallel) b.max_parallel = Number(d.max_parallel);
    if (kind === 'deploy') b.version = d.version;
    const r = await api.call('PUT', `/api/v0/cluster/${enc}/${kind}`, b);
    toast(r.status === 201 ? `${kind} started.` : `${kind} already in process.`);
    await refresh();
  };
  const par = () => field('Hosts at a time', input('max_parallel', { type: 'number', min: '1', max: '1000', value: '1', inputmode: 'numeric' }));
  const opForms = h(
    'div',
    { class: 'op-forms' },
    form({ class: 'inline-form', 'aria-label': 'Deploy' }, [field('OSTree version', input('version', { required: true })), par(), h('button', { type: 'submit' }, 'Deploy')], start('deploy')),
    form({ class: 'inline-form', 'aria-label': 'Upgrade' }, [par(), h('button', { type: 'submit' }, 'Upgrade')], start('upgrade')),
    form({ class: 'inline-form', 'aria-label': 'Restart' }, [par(), h('button', { type: 'submit' }, 'Rolling restart')], start('restart')),
  );

  main.append(
    h('p', { class: 'crumbs' }, link('/ui/clusters', 'Clusters'), ' / ', name),
    h('h1', {}, `Cluster ${name}`),
    info,
    section('Operations', h('p', { class: 'hint' }, 'Rolling operations step through the members in join order; progress updates live.'), opForms, progress),
    section('Members', members, join),
    section('Delete', confirmButton('Delete cluster', async () => {
      await api.del(`/api/v0/cluster/${enc}`);
      toast(`Cluster ${name} deleted.`);
      ctx.navigate('/ui/clusters');
    })),
  );

  async function refresh() {
    const c = await api.get(`/api/v0/cluster/${enc}`);
    const addrs = await api.get(`/api/v0/cluster/${enc}/hosts`);
    const byAddr = Object.fromEntries(hostsAll.map((x) => [x.address, x]));
    const fresh = await api.get('/api/v0/hosts');
    for (const x of fresh) byAddr[x.address] = x;
    replace(info, dl([
      ['Status', badge(c.status)],
      ['Network', c.network],
      ['Container manager', c.container_manager || '—'],
      ['Hosts', `${c.hosts.available} available, ${c.hosts.unavailable} unavailable, ${c.hosts.total} total`],
    ]));
    replace(
      members,
      table(
        [
          { label: '#', get: (a) => String(addrs.indexOf(a) + 1) },
          { label: 'Host', header: true, get: (a) => h('code', {}, a) },
          { label: 'Status', get: (a) => badge(byAddr[a] ? byAddr[a].status : '?') },
          { label: 'Actions', get: (a) => actionButton('Leave', async () => {
            await api.del(`/api/v0/cluster/${enc}/hosts/${api.seg(a)}`);
            toast(`${a} left ${name}.`);
            await refresh();
          }, { 'aria-label': `Remove ${a} from ${name}` }) },
        ],
        addrs,
        { caption: 'Members in join order', empty: 'No members yet: join a host below.' },
      ),
    );
    const recs = await operations(name);
    const kinds = OPS.filter((k) => recs[k]).sort((a, b) => String(recs[b].started_at).localeCompare(String(recs[a].started_at)));
    replace(progress, kinds.length ? kinds.map((k) => h('div', { class: 'op' }, h('h3', {}, `Latest ${k}`), opProgress(k, recs[k], addrs))) : h('p', { class: 'empty' }, 'No operation was ever run on this cluster.'));
  }
  await refresh();
  const later = liveRefresh(refresh);
  ctx.on(['cluster', 'operation', 'operation_step', 'host'], (ev) => {
    if (ev.type === 'resync' || ev.type === 'host' || String(ev.id).split('/')[0] === name) later();
  });
}

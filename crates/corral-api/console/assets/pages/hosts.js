// Hosts: the tenant's machines with their status and facts, live; registration with an SSH
// key (investigation and bootstrap follow), the last failure reason, delete.

import * as api from '../api.js';
import { h, replace, table, badge, section, form, field, input, select, confirmButton, actionButton, toast, time, debounce, showError, liveRefresh } from '../ui.js';

const kib = (n) => (n ? `${(n / 1048576).toFixed(1)} GiB` : '—');

export async function render(main, _p, ctx) {
  const list = h('div');
  const detail = h('div', { 'aria-live': 'polite' });
  const clusters = await api.get('/api/v0/clusters');
  const reg = form(
    { class: 'stack-form', 'aria-label': 'Register a host' },
    [
      field('Address', input('address', { required: true, placeholder: '10.0.0.5' })),
      field('SSH private key (base64)', h('textarea', { name: 'ssh_priv_key', rows: '4', required: true, spellcheck: 'false' }), 'The key file, base64-encoded (base64 -w0 id_ed25519). Stored encrypted.'),
      field('Remote user', input('remote_user', { value: 'root' })),
      field('Join cluster', select('cluster', [{ value: '', label: '(none)' }, ...clusters.map((c) => ({ value: c, label: c }))])),
      h('button', { type: 'submit', class: 'primary' }, 'Register host'),
    ],
    async (d, f) => {
      const body = { ssh_priv_key: d.ssh_priv_key, remote_user: d.remote_user || 'root' };
      if (d.cluster) body.cluster = d.cluster;
      await api.put(`/api/v0/host/${api.seg(d.address)}`, body);
      toast(`${d.address} registered; investigating.`);
      f.reset();
      await refresh();
    },
  );
  main.append(h('h1', {}, 'Hosts'), list, detail, section('Register a host', reg));

  async function showStatus(addr) {
    const st = await api.get(`/api/v0/host/${api.seg(addr)}/status`);
    replace(detail, section(`Status of ${addr}`, h('p', {}, badge(st.host.status), ' last check ', time(st.host.last_check)), st.host.message ? h('p', { class: 'failure' }, st.host.message) : h('p', { class: 'hint' }, 'No failure recorded.')));
  }

  async function refresh() {
    const hosts = await api.rows('select h.address as address, h.status as status, h.os as os, h.cpus as cpus, h.memory as memory, h.space as space, h.last_check as last_check, h.cluster as cluster from hosts h order by address');
    replace(
      list,
      table(
        [
          { label: 'Address', header: true, get: (x) => h('code', {}, x.address) },
          { label: 'Status', get: (x) => badge(x.status) },
          { label: 'Cluster', get: (x) => x.cluster || '—' },
          { label: 'OS', get: (x) => x.os || '—' },
          { label: 'CPUs', get: (x) => String(x.cpus) },
          { label: 'Memory', get: (x) => kib(x.memory) },
          { label: 'Disk', get: (x) => kib(x.space) },
          { label: 'Last check', get: (x) => time(x.last_check) },
          {
            label: 'Actions',
            get: (x) => h('span', { class: 'actions' },
              actionButton('Status', () => showStatus(x.address), { 'aria-label': `Status of ${x.address}` }),
              confirmButton('Delete', async () => {
                await api.del(`/api/v0/host/${api.seg(x.address)}`);
                toast(`${x.address} deleted.`);
                await refresh();
              }, { 'aria-label': `Delete ${x.address}` })),
          },
        ],
        hosts,
        { caption: 'Hosts', empty: 'No hosts registered.', rowKey: (x) => x.address },
      ),
    );
  }
  await refresh();
  ctx.on(['host'], liveRefresh(refresh));
}

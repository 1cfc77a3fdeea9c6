// Networks and container manager configurations (Commissaire): list, create, delete.

import * as api from '../api.js';
import { h, replace, table, section, form, field, input, select, confirmButton, toast, debounce, showError, liveRefresh } from '../ui.js';

async function listPage(main, ctx, { title, plural, singular, type, formFields, body, describe }) {
  const list = h('div');
  const create = form({ class: 'stack-form', 'aria-label': `Create a ${title.toLowerCase()}` }, [field('Name', input('name', { required: true })), ...formFields(), h('button', { type: 'submit', class: 'primary' }, 'Create')], async (d, f) => {
    await api.put(`/api/v0/${singular}/${api.seg(d.name)}`, body(d));
    toast(`${d.name} created.`);
    f.reset();
    await refresh();
  });
  main.append(h('h1', {}, plural === 'networks' ? 'Networks' : 'Container managers'), list, section(`Create a ${title.toLowerCase()}`, create));
  async function refresh() {
    const names = await api.get(`/api/v0/${plural}`);
    const items = await Promise.all(names.map((n) => api.get(`/api/v0/${singular}/${api.seg(n)}`)));
    replace(
      list,
      table(
        [
          { label: 'Name', header: true, get: (x) => x.name },
          { label: 'Type', get: (x) => x.type },
          { label: 'Options', get: (x) => describe(x.options || {}) },
          { label: 'Actions', get: (x) => confirmButton('Delete', async () => {
            await api.del(`/api/v0/${singular}/${api.seg(x.name)}`);
            toast(`${x.name} deleted.`);
            await refresh();
          }, { 'aria-label': `Delete ${x.name}` }) },
        ],
        items,
        { caption: plural === 'networks' ? 'Networks' : 'Container managers', rowKey: (x) => x.name },
      ),
    );
  }
  await refresh();
  ctx.on([type], liveRefresh(refresh));
}

const opts = (o) => (Object.keys(o).length ? h('code', {}, JSON.stringify(o)) : '—');

export function networks(main, _p, ctx) {
  return listPage(main, ctx, {
    title: 'Network',
    plural: 'networks',
    singular: 'network',
    type: 'network',
    formFields: () => [
      field('Type', select('type', ['flannel_etcd', 'flannel_server'])),
      field('Server address', input('address', { placeholder: 'host:port' }), 'Only for flannel_server.'),
    ],
    body: (d) => ({ type: d.type, options: d.type === 'flannel_server' ? { address: d.address } : {} }),
    describe: opts,
  });
}

export function containerManagers(main, _p, ctx) {
  return listPage(main, ctx, {
    title: 'Container manager',
    plural: 'containermanagers',
    singular: 'containermanager',
    type: 'container_manager',
    formFields: () => [
      field('Type', select('type', ['trivial', 'openshift'])),
      field('API server URL', input('apiserver', { type: 'url', placeholder: 'https://openshift.example:8443/' }), 'Only for openshift.'),
      field('Token', input('token', { type: 'password', autocomplete: 'new-password' }), 'Optional; stored encrypted and shown masked.'),
    ],
    body: (d) => {
      if (d.type !== 'openshift') return { type: d.type };
      const o = { apiserver: d.apiserver };
      if (d.token) o.token = d.token;
      return { type: d.type, options: o };
    },
    describe: opts,
  });
}

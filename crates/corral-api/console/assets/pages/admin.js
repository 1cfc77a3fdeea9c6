// Tenant administration (admins): users, roles, API keys (a new key is shown once). Tenant
// management (superadmin): tenants, quotas, the admin-key recovery.

import * as api from '../api.js';
import { h, replace, table, badge, section, form, field, input, select, actionButton, confirmButton, toast, time, debounce, showError, secretBox, liveRefresh } from '../ui.js';

const ROLES = ['viewer', 'user', 'admin'];

export async function users(main, _p, ctx) {
  const list = h('div');
  const keysBox = h('div', { 'aria-live': 'polite' });
  const secret = h('div');
  const create = form({ class: 'inline-form', 'aria-label': 'Create a user' }, [
    field('User id', input('id', { required: true })),
    field('Role', select('role', ROLES.map((r) => ({ value: r, label: r, selected: r === 'user' })))),
    field('Description', input('description')),
    h('button', { type: 'submit', class: 'primary' }, 'Create user'),
  ], async (d, f) => {
    await api.post('/v2/users', { id: d.id, role: d.role, description: d.description });
    toast(`User ${d.id} created; issue a key for it.`);
    f.reset();
    await refresh();
    await showKeys(d.id);
  });
  main.append(h('h1', {}, `Users of ${ctx.session.tenant}`), secret, list, section('Create a user', create), keysBox);

  async function showKeys(user) {
    const keys = await api.get(`/v2/users/${api.seg(user)}/apikeys`);
    const issue = form({ class: 'inline-form', 'aria-label': `Issue a key for ${user}` }, [
      field('Description', input('description')),
      field('Expires (optional)', input('expires', { type: 'datetime-local' })),
      h('button', { type: 'submit', class: 'primary' }, 'Issue key'),
    ], async (d) => {
      const body = { description: d.description };
      if (d.expires) body.expireTime = new Date(d.expires).getTime();
      const k = await api.post(`/v2/users/${api.seg(user)}/apikeys`, body);
      replace(secret, secretBox(`New API key for ${user} (${k.prefix}…)`, k.key));
      secret.querySelector('button').focus();
      await showKeys(user);
    });
    replace(keysBox, section(`API keys of ${user}`,
      table(
        [
          { label: 'Prefix', header: true, get: (k) => h('code', {}, k.prefix) },
          { label: 'Description', get: (k) => k.description },
          { label: 'Created', get: (k) => time(k.createTime) },
          { label: 'Expires', get: (k) => (k.expireTime ? time(k.expireTime) : 'never') },
          { label: 'Last used', get: (k) => (k.lastUsedTime ? time(k.lastUsedTime) : 'never') },
          { label: 'Actions', get: (k) => confirmButton('Revoke', async () => {
            await api.del(`/v2/users/${api.seg(user)}/apikeys/${api.seg(k.id)}`);
            toast(`Key ${k.prefix}… revoked.`);
            await showKeys(user);
          }, { 'aria-label': `Revoke key ${k.prefix}` }) },
        ],
        keys,
        { caption: `Keys of ${user}`, empty: 'No keys.' },
      ),
      issue));
  }

  async function refresh() {
    const us = await api.get('/v2/users');
    replace(list, table(
      [
        { label: 'User', header: true, get: (u) => u.id },
        { label: 'Role', get: (u) => {
          const sel = select('role', ROLES.map((r) => ({ value: r, label: r, selected: r === u.role })), { 'aria-label': `Role of ${u.id}` });
          sel.addEventListener('change', async () => {
            try {
              await api.put(`/v2/users/${api.seg(u.id)}`, { role: sel.value });
              toast(`${u.id} is now ${sel.value}.`);
            } catch (e) {
              showError(e);
              sel.value = u.role;
            }
          });
          return sel;
        } },
        { label: 'Description', get: (u) => u.description },
        { label: 'Created', get: (u) => time(u.createTime) },
        { label: 'Actions', get: (u) => h('span', { class: 'actions' },
          actionButton('Keys', () => showKeys(u.id), { 'aria-label': `Keys of ${u.id}` }),
          confirmButton('Delete', async () => {
            await api.del(`/v2/users/${api.seg(u.id)}`);
            toast(`${u.id} deleted.`);
            await refresh();
          }, { 'aria-label': `Delete ${u.id}` })) },
      ],
      us,
      { caption: 'Users', rowKey: (u) => u.id },
    ));
  }
  await refresh();
  ctx.on(['user'], liveRefresh(refresh));
}

export async function tenants(main, _p, ctx) {
  const list = h('div');
  const secret = h('div');
  const editBox = h('div');
  const quota = (name, value) => input(name, { type: 'number', min: '0', value: value === undefined ? '' : String(value), inputmode: 'numeric' });
  const create = form({ class: 'inline-form', 'aria-label': 'Create a tenant' }, [
    field('Name', input('name', { required: true })),
    field('Workers', quota('workers', 10)),
    field('Max clusters', quota('maxClusters'), 'Empty: unlimited.'),
    field('Max nodes', quota('maxNodes'), 'Empty: unlimited.'),
    field('Description', input('description')),
    h('button', { type: 'submit', class: 'primary' }, 'Create tenant'),
  ], async (d, f) => {
    const r = await api.post('/v2/tenants', { tenant: spec(d) });
    replace(secret, secretBox(`Admin key of the new tenant ${d.name}`, r.admin.apikey.key));
    f.reset();
    await refresh();
  });
  main.append(h('h1', {}, 'Tenants'), secret, list, editBox, section('Create a tenant', create));

  function spec(d) {
    const t = { name: d.name, workers: Number(d.workers) || 0, description: d.description || '' };
    if (d.maxClusters !== '') t.maxClusters = Number(d.maxClusters);
    if (d.maxNodes !== '') t.maxNodes = Number(d.maxNodes);
    return t;
  }

  function edit(t) {
    const f = form({ class: 'inline-form', 'aria-label': `Edit tenant ${t.name}` }, [
      h('input', { type: 'hidden', name: 'name', value: t.name }),
      field('Workers', quota('workers', t.workers)),
      field('Max clusters', quota('maxClusters', t.maxClusters)),
      field('Max nodes', quota('maxNodes', t.maxNodes)),
      field('Description', input('description', { value: t.description })),
      h('button', { type: 'submit', class: 'primary' }, 'Save'),
    ], async (d) => {
      await api.put(`/v2/tenants/${api.seg(t.name)}`, { tenant: spec(d) });
      toast(`${t.name} saved.`);
      replace(editBox);
      await refresh();
    });
    replace(editBox, section(`Edit ${t.name}`, h('p', { class: 'hint' }, 'Saving replaces the whole tenant record; a tenant is deleted only once its workers is 0.'), f));
    f.querySelector('input[name=workers]').focus();
  }

  async function refresh() {
    const ts = await api.get('/v2/tenants');
    replace(list, table(
      [
        { label: 'Tenant', header: true, get: (t) => t.name },
        { label: 'Workers', get: (t) => String(t.workers) },
        { label: 'Max clusters', get: (t) => (t.maxClusters === 2147483647 ? 'unlimited' : String(t.maxClusters)) },
        { label: 'Max nodes', get: (t) => (t.maxNodes === 2147483647 ? 'unlimited' : String(t.maxNodes)) },
        { label: 'Description', get: (t) => t.description },
        { label: 'Actions', get: (t) => h('span', { class: 'actions' },
          actionButton('Edit', () => edit(t), { 'aria-label': `Edit ${t.name}` }),
          actionButton('New admin key', async () => {
            const r = await api.post(`/v2/tenants/${api.seg(t.name)}/adminkey`);
            const key = (r && (r.key || (r.apikey && r.apikey.key) || (r.admin && r.admin.apikey && r.admin.apikey.key))) || JSON.stringify(r);
            replace(secret, secretBox(`New admin key of ${t.name}`, key));
          }, { 'aria-label': `New admin key for ${t.name}` }),
          t.name === 'superadmin' ? null : confirmButton('Delete', async () => {
            await api.del(`/v2/tenants/${api.seg(t.name)}`);
            toast(`${t.name} deleted.`);
            await refresh();
          }, { 'aria-label': `Delete ${t.name}` })) },
      ],
      ts,
      { caption: 'Tenants', rowKey: (t) => t.name },
    ));
  }
  await refresh();
  ctx.cleanup(() => {});
  void badge;
}

// Instances (Perspective): the list with live states, a launch form with flavor and image
// pickers by name, every action on a selection, and one instance's page with its history,
// console output, rename and snapshot.

import * as api from '../api.js';
import { h, replace, table, badge, link, section, form, field, input, select, actionButton, confirmButton, toast, time, debounce, showError, bulkReport, dl, pre, liveRefresh } from '../ui.js';

export const ACTIONS = [
  ['start', 'Start'],
  ['shutdown', 'Shut down'],
  ['reboot', 'Reboot'],
  ['hard-reboot', 'Hard reboot'],
  ['pause', 'Pause'],
  ['resume', 'Resume'],
  ['suspend', 'Suspend'],
];

const LIST_SQL =
  'select i.id as id, i.name as name, i.state as state, f.name as flavor, im.name as image, i.addresses as addresses, i.cloud_id as cloud, i.last_updated as last_updated, i.project_id as project_id ' +
  'from instances i left join flavors f on i.flavor_id = f.id left join images im on i.image_id = im.id order by i.name, i.id';

async function catalog() {
  const [projects, flavors, images, zones] = await api.query(
    'select id, name, cloud_id from projects order by cloud_id, name; ' +
      'select id, project_id, name, vcpus, ram, root_disk from flavors order by ram, name; ' +
      "select i.id as id, i.name as name, p.project_id as project_id from images i join project_images p on p.image_id = i.id where i.state = 'saved' order by i.name; " +
      'select name, project_id from availability_zones order by name',
  );
  return { projects: projects.rows, flavors: flavors.rows, images: images.rows, zones: zones.rows };
}

/** Buttons for every action on the ids `ids()` answers. */
function actionBar(ids, cat, after) {
  const run = (action) => async () => {
    const list = ids();
    if (!list.length) throw new Error('Select at least one instance.');
    bulkReport(await api.put(`/instances/${action}`, list));
    await after();
  };
  const flavorSel = select('flavor', cat.flavors.map((f) => ({ value: f.id, label: `${f.name} (${f.vcpus} vCPU, ${f.ram} MiB)` })), { 'aria-label': 'Flavor to resize to' });
  const imageSel = select('image', cat.images.filter((x, i, a) => a.findIndex((y) => y.id === x.id) === i).map((x) => ({ value: x.id, label: x.name })), { 'aria-label': 'Image to rebuild from' });
  return h(
    'div',
    { class: 'action-bar', role: 'group', 'aria-label': 'Instance actions' },
    ACTIONS.map(([a, label]) => actionButton(label, run(a))),
    h('span', { class: 'group' }, flavorSel, actionButton('Resize', async () => {
      const list = ids();
      if (!list.length) throw new Error('Select at least one instance.');
      bulkReport(await api.put(`/instances/resize/${api.seg(flavorSel.value)}`, list));
      await after();
    })),
    h('span', { class: 'group' }, imageSel, actionButton('Rebuild', async () => {
      const list = ids();
      if (!list.length) throw new Error('Select at least one instance.');
      bulkReport(await api.put(`/instances/rebuild/${api.seg(imageSel.value)}`, list));
      await after();
    })),
    confirmButton('Delete', async () => {
      const list = ids();
      if (!list.length) throw new Error('Select at least one instance.');
      bulkReport(await api.post('/instances/delete', list));
      await after();
    }),
  );
}

function launchForm(cat, after) {
  const projectSel = select('projectId', cat.projects.map((p) => ({ value: p.id, label: `${p.cloud_id} / ${p.name}` })));
  const flavorSel = select('flavor', []);
  const imageSel = select('image', []);
  const zoneSel = select('zone', []);
  const fill = () => {
    const p = projectSel.value;
    replace(flavorSel, cat.flavors.filter((f) => f.project_id === p).map((f) => h('option', { value: f.id }, `${f.name} — ${f.vcpus} vCPU, ${f.ram} MiB, ${f.root_disk} GiB`)));
    replace(imageSel, cat.images.filter((x) => x.project_id === p).map((x) => h('option', { value: x.id }, x.name)));
    replace(zoneSel, h('option', { value: '' }, '(any)'), cat.zones.filter((z) => z.project_id === p).map((z) => h('option', { value: z.name }, z.name)));
  };
  projectSel.addEventListener('change', fill);
  fill();
  return form(
    { class: 'stack-form launch', 'aria-label': 'Launch instances' },
    [
      field('Name', input('name', { required: true, maxlength: '255' })),
      field('Count', input('count', { type: 'number', min: '1', max: '50', value: '1', inputmode: 'numeric' }), 'More than one: names get -1, -2, …'),
      field('Project', projectSel),
      field('Flavor', flavorSel),
      field('Image', imageSel),
      field('Availability zone', zoneSel),
      h('button', { type: 'submit', class: 'primary' }, 'Launch'),
    ],
    async (d, f) => {
      if (!d.flavor || !d.image) throw new Error('This project has no flavor or no saved image.');
      const n = Math.max(1, Number(d.count) || 1);
      const items = [];
      for (let i = 1; i <= n; i += 1) {
        const item = { name: n === 1 ? d.name : `${d.name}-${i}`, projectId: d.projectId, flavor: { id: d.flavor }, image: { id: d.image } };
        if (d.zone) item.availabilityZone = { name: d.zone };
        items.push(item);
      }
      bulkReport(await api.post('/instances', items));
      f.elements.name.value = '';
      await after();
    },
  );
}

export async function list(main, _p, ctx) {
  const cat = await catalog();
  const box = h('div');
  const selected = new Set();
  main.append(
    h('h1', {}, 'Instances'),
    section('Launch', launchForm(cat, () => refresh())),
    section('All instances', actionBar(() => [...selected], cat, () => refresh()), box),
  );
  async function refresh() {
    const rows = await api.rows(LIST_SQL);
    const ids = new Set(rows.map((r) => r.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    replace(
      box,
      table(
        [
          { label: 'Select', get: (r) => h('input', { type: 'checkbox', checked: selected.has(r.id), 'aria-label': `Select ${r.name}`, onchange: (e) => (e.target.checked ? selected.add(r.id) : selected.delete(r.id)) }) },
          { label: 'Name', header: true, get: (r) => link(`/ui/instances/${r.id}`, r.name) },
          { label: 'State', get: (r) => h('span', { 'data-state-for': r.id }, badge(r.state)) },
          { label: 'Flavor', get: (r) => r.flavor || '—' },
          { label: 'Image', get: (r) => r.image || '—' },
          { label: 'Addresses', get: (r) => r.addresses || '—' },
          { label: 'Cloud', get: (r) => r.cloud },
          { label: 'Changed', get: (r) => time(r.last_updated) },
        ],
        rows,
        { caption: 'Instances', empty: 'No instances: launch one above.', rowKey: (r) => r.id },
      ),
    );
  }
  await refresh();
  const later = liveRefresh(refresh);
  ctx.on(['instance'], (ev) => {
    // A state change updates its cell in place (focus and selection stay); anything else
    // refetches the list.
    const cell = ev.kind === 'instance.updated' && ev.object && box.querySelector(`[data-state-for="${CSS.escape(ev.id)}"]`);
    if (cell) replace(cell, badge(ev.object.state));
    else later();
  });
  ctx.on(['image'], liveRefresh(async () => Object.assign(cat, await catalog())));
}

export async function detail(main, [id], ctx) {
  const enc = api.seg(id);
  const cat = await catalog();
  const props = h('div', { 'aria-live': 'polite' });
  const hist = h('div');
  const cons = h('div');
  const title = h('h1', {}, 'Instance');
  const renameForm = form({ class: 'inline-form', 'aria-label': 'Rename' }, [field('New name', input('name', { required: true })), h('button', { type: 'submit' }, 'Rename')], async (d) => {
    bulkReport(await api.put('/instances/rename', { [id]: d.name }));
    await refresh();
  });
  const snapForm = form({ class: 'inline-form', 'aria-label': 'Snapshot' }, [field('Image name', input('name', { required: true })), h('button', { type: 'submit' }, 'Snapshot to image')], async (d) => {
    bulkReport(await api.post('/images', [{ name: d.name, instanceId: id }]));
  });
  main.append(
    h('p', { class: 'crumbs' }, link('/ui/instances', 'Instances'), ' / ', id),
    title,
    props,
    section('Actions', actionBar(() => [id], cat, () => refresh()), renameForm, snapForm),
    section('History', hist),
    section('Console output', actionButton('Refresh console', () => refreshConsole()), cons),
  );
  async function refreshConsole() {
    const c = await api.get(`/instances/${enc}/console`);
    replace(cons, pre(c.output, { 'aria-label': 'Console output' }));
  }
  async function refresh() {
    let inst;
    try {
      inst = await api.get(`/instances/${enc}`);
    } catch (e) {
      if (e.status === 404) {
        replace(props, h('p', { class: 'notice' }, 'This instance no longer exists. ', link('/ui/instances', 'Back to instances')));
        return;
      }
      throw e;
    }
    replace(title, `Instance ${inst.name}`);
    replace(props, dl([
      ['State', h('span', { 'data-state-for': inst.id }, badge(inst.state))],
      ['Id', h('code', {}, inst.id)],
      ['Cloud', `${inst.cloudId} (${inst.cloudType})`],
      ['Flavor', `${inst.flavor.name} — ${inst.flavor.vcpus} vCPU, ${inst.flavor.ram} MiB`],
      ['Image', inst.image.name],
      ['Addresses', (inst.address || []).join(', ') || '—'],
      ['Zone', (inst.availabilityZone && inst.availabilityZone.name) || '—'],
      ['Created', time(inst.created)],
      ['Changed', time(inst.timestamp)],
    ]));
    const events = await api.get(`/instances/${enc}/history`);
    replace(hist, table(
      [
        { label: 'When', get: (e) => time(e.at) },
        { label: 'Who', get: (e) => e.actor },
        { label: 'Action', get: (e) => e.action },
        { label: 'Outcome', get: (e) => badge(e.outcome) },
        { label: 'Error', get: (e) => e.error || '' },
      ],
      events.slice().reverse(),
      { caption: 'History, newest first' },
    ));
  }
  await refresh();
  await refreshConsole().catch(showError);
  const later = debounce(() => {
    refresh().catch(showError);
    refreshConsole().catch(() => {});
  }, 150);
  ctx.on(['instance'], (ev) => {
    if (ev.type === 'resync' || ev.id === id) later();
  });
}

// Images (Perspective): base images of the clouds and private snapshots, live; snapshot an
// instance, delete private images.

import * as api from '../api.js';
import { h, replace, table, badge, section, form, field, input, select, confirmButton, time, debounce, showError, bulkReport, liveRefresh } from '../ui.js';

export async function render(main, _p, ctx) {
  const box = h('div');
  const instSel = select('instanceId', []);
  const snap = form({ class: 'inline-form', 'aria-label': 'Snapshot an instance' }, [field('Instance', instSel), field('Image name', input('name', { required: true })), h('button', { type: 'submit', class: 'primary' }, 'Snapshot')], async (d, f) => {
    if (!d.instanceId) throw new Error('No launched or shut-off instance to snapshot.');
    bulkReport(await api.post('/images', [{ name: d.name, instanceId: d.instanceId }]));
    f.elements.name.value = '';
    await refresh();
  });
  main.append(h('h1', {}, 'Images'), box, section('Snapshot an instance', snap));
  async function refresh() {
    const [imgs, insts] = await api.query(
      "select id, name, state, cloud_id, created, checksum from images order by name; select id, name from instances where state = 'launched' or state = 'shutoff' order by name",
    );
    replace(instSel, insts.rows.map((i) => h('option', { value: i.id }, i.name)));
    replace(
      box,
      table(
        [
          { label: 'Name', header: true, get: (x) => x.name },
          { label: 'State', get: (x) => badge(x.state) },
          { label: 'Cloud', get: (x) => x.cloud_id },
          { label: 'Created', get: (x) => time(x.created) },
          { label: 'Id', get: (x) => h('code', {}, x.id) },
          { label: 'Actions', get: (x) => confirmButton('Delete', async () => {
            bulkReport(await api.post('/images/delete', [x.id]));
            await refresh();
          }, { 'aria-label': `Delete image ${x.name}` }) },
        ],
        imgs.rows,
        { caption: 'Images', rowKey: (x) => x.id },
      ),
    );
  }
  await refresh();
  ctx.on(['image', 'instance'], liveRefresh(refresh));
}

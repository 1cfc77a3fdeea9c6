// The query page: an SQL editor over the tenant's inventory (POST /query), results tables,
// EXPLAIN, and the list of tables. Ctrl+Enter runs.

import * as api from '../api.js';
import { h, replace, table, section, field, button, showError, clearError, badge } from '../ui.js';

const EXAMPLE = "select state, count(*) as n from instances group by state order by n desc";

export async function render(main) {
  const sql = h('textarea', { name: 'sql', rows: '6', spellcheck: 'false', class: 'code', 'aria-describedby': 'q-hint' }, sessionStorage.getItem('corral.sql') || EXAMPLE);
  const out = h('div', { class: 'results', 'aria-live': 'polite' });
  const run = async (explain) => {
    clearError();
    let text = sql.value.trim();
    sessionStorage.setItem('corral.sql', text);
    if (explain) text = text.split(';').map((s) => s.trim()).filter(Boolean).map((s) => (/^explain\s/i.test(s) ? s : `EXPLAIN ${s}`)).join('; ');
    replace(out, h('p', {}, 'Running…'));
    try {
      const results = await api.post('/query', [{ sql: text, parameters: [] }]);
      replace(out, results.map((r, i) => h('div', { class: 'result' },
        h('h3', {}, `Statement ${i + 1} `, badge(r.status), ` ${r.count} row${r.count === 1 ? '' : 's'}`),
        r.message ? h('p', { class: r.status === 'success' ? 'notice' : 'failure' }, r.message) : null,
        r.status === 'success'
          ? table(r.data.columnName.map((c, j) => ({ label: c, get: (row) => fmt(row.value[j]) })), r.data.row, { caption: `Result ${i + 1}`, empty: 'No rows.' })
          : null)));
    } catch (e) {
      replace(out);
      showError(e);
    }
  };
  sql.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run(false);
    }
  });
  main.append(
    h('h1', {}, 'Query'),
    h('p', { id: 'q-hint', class: 'hint' }, 'Read-only SQL over your tenant\'s inventory; several statements separated by ";". Ctrl+Enter runs. Try ', h('code', {}, 'select tables()'), ' or ', h('code', {}, "select columns('instances')"), '.'),
    field('SQL', sql),
    h('div', { class: 'buttons' }, button('Run', () => run(false), { class: 'primary' }), ' ', button('Explain', () => run(true)), ' ', button('Tables', () => {
      sql.value = 'select tables()';
      run(false);
    })),
    section('Results', out),
  );
}

function fmt(v) {
  if (v === null) return h('span', { class: 'muted' }, 'NULL');
  return String(v);
}

// Sign-in: an API key, with the optional user and tenant it must belong to (the three
// credential forms of the API all name a key; user and tenant only narrow it down).

import * as api from '../api.js';
import { h, field, input, form } from '../ui.js';

export async function render(main, _params, ctx) {
  // A fresh CSRF token (and its cookie) for this form.
  const s = (await api.call('GET', '/ui/session', undefined, { quiet401: true })).data || {};
  if (s.signed_in) {
    await ctx.signedIn();
    return;
  }
  const key = input('api_key', { type: 'password', required: true, autocomplete: 'current-password', spellcheck: 'false' });
  const f = form(
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    [
      field('API key', key, 'A key of your user (crk_…), as given by your tenant admin.'),
      field('User (optional)', input('user', { autocomplete: 'username' }), 'If given, the key must belong to this user.'),
      field('Tenant (optional)', input('tenant', { autocomplete: 'organization' }), 'If given, the user must be of this tenant.'),
      h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    ],
    async (data) => {
      const body = { api_key: data.api_key, csrf: s.csrf };
      if (data.user) body.user = data.user;
      if (data.tenant) body.tenant = data.tenant;
      await api.call('POST', '/ui/session', body, { quiet401: true });
      await ctx.signedIn();
    },
  );
  main.append(
    h('div', { class: 'signin-wrap' },
      h('h1', { id: 'signin-title' }, 'Sign in to Corral'),
      ctx.message ? h('p', { class: 'notice', role: 'status' }, ctx.message) : null,
      f,
      h('p', { class: 'hint' }, 'The key is kept by the server in an HttpOnly session cookie; this page never stores it.'),
    ),
  );
  key.focus();
}

// Sign-in: the operator pastes an admin token. It is checked against an
// admin-only route before it is kept, so a customer's token is refused
// with the API's own 403 detail; the console has no sign-in of its own.

import { get, session, Problem } from './api.js';
import { h, field, fill, onSubmit, problem } from './dom.js';

export function render(main, { reason }) {
  const token = h('textarea', { id: 'token', name: 'token', required: true, rows: 4, autocomplete: 'off', spellcheck: 'false' });
  const errors = h('div', { id: 'signin-errors' });
  if (reason) errors.append(problem(reason));
  const form = h('form', { class: 'stack', id: 'signin' },
    field('Admin token', token, 'A bearer token (JWT) with role admin. It stays in this tab\'s session storage and goes only to this service.'),
    h('div', {}, h('button', { type: 'submit' }, 'Sign in')));
  onSubmit(form, async (data) => {
    const candidate = String(data.get('token')).trim();
    fill(errors);
    try {
      // Any admin-only read will do: it proves the role, not just the signature.
      await get('/v1/sagas/counts', { token: candidate });
    } catch (e) {
      if (e instanceof Problem && e.status === 403) {
        const refused = new Problem(403, { ...e.body, detail: `This token is not an operator's: the console needs an admin token (the API answered: ${e.message}).` });
        errors.append(problem(refused));
      } else {
        errors.append(problem(e));
      }
      return;
    }
    session.token = candidate;
    window.dispatchEvent(new Event('console:signed-in'));
  });
  fill(main,
    h('h1', {}, 'Sign in'),
    h('p', {}, 'The console is a client of the service\'s API: it can do what your token may do, nothing more.'),
    form,
    errors,
    h('h2', {}, 'Where do I get a token?'),
    h('p', {}, 'On the embedded default (no COMMERCE_JWT_SECRET), the service signs with the development secret it keeps in its data directory; mint an admin token from the repository with:'),
    h('pre', {}, h('code', {}, 'cargo run -q -- token --sub 00000000-0000-0000-0000-000000000001 --role admin')),
    h('p', {}, 'In production, ', h('code', {}, 'commerce token --role admin'),
      ' with the service\'s COMMERCE_JWT_SECRET, or your identity provider, issues it. Customer tokens are refused.'));
  token.focus();
}

// Sagas: the list by status (those that need an operator first), one saga
// with its step history, and the operator's retry and abort.

import { get, call, enc } from './api.js';
import { h, fill, field, table, figures, problem, notice, badge, toneOf, when, onSubmit, perform } from './dom.js';

const STATUSES = ['needs_attention', 'running', 'compensating', 'completed', 'compensated'];

export function render(main, [id]) {
  if (id && STATUSES.includes(id)) return list(main, id);
  if (id) return detail(main, id);
  return list(main, 'needs_attention');
}

function list(main, status) {
  const select = h('select', { id: 'saga-status', name: 'status' },
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s.replaceAll('_', ' '))));
  const form = h('form', { class: 'inline' }, field('Status', select), h('button', { type: 'submit' }, 'Show'));
  onSubmit(form, async (data) => { location.hash = `#/sagas/${data.get('status')}`; });
  const results = h('div', { id: 'sagas-list' }, h('p', { class: 'muted' }, 'Loading…'));
  fill(main, h('h1', {}, 'Sagas'), form, results);
  get(`/v1/sagas?status=${enc(status)}&limit=500`).then((page) => {
    fill(results, table(`Sagas that are ${status.replaceAll('_', ' ')}, oldest first`,
      ['Saga', 'Type', 'Order', 'Step', 'Attempts', 'Last error', 'Updated'],
      page.items.map((s) => [
        h('a', { href: `#/sagas/${s.saga_id}`, class: 'mono' }, s.saga_id),
        s.saga_type,
        h('a', { href: `#/orders/${s.correlation_id}`, class: 'mono' }, s.correlation_id),
        s.current_step,
        s.attempts,
        s.last_error || '–',
        when(s.updated_at),
      ])),
    page.next_cursor ? h('p', { class: 'muted' }, 'The 500 oldest are shown.') : null);
  }, (e) => fill(results, problem(e)));
}

function detail(main, id) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const messages = h('div', { id: 'saga-messages' });
  fill(main, h('p', {}, h('a', { href: '#/sagas' }, '← Sagas')), h('h1', {}, 'Saga ', h('code', {}, id)), messages, body);

  async function load() {
    const saga = await get(`/v1/sagas/${enc(id)}`);
    fill(body,
      h('div', { class: 'cards' },
        h('section', { class: 'card' }, h('h2', {}, 'State'), figures([
          ['Status', badge(saga.status, toneOf(saga.status)), 'saga-status'],
          ['Type', saga.saga_type],
          ['Order', h('a', { href: `#/orders/${saga.correlation_id}`, class: 'mono' }, saga.correlation_id)],
          ['Next step', saga.current_step],
          ['Attempts', saga.attempts],
          ['Captured', saga.captured ? 'yes' : 'no'],
          ['Lease', saga.lease_owner ? `${saga.lease_owner} until ${new Date(saga.lease_until).toLocaleTimeString()}` : 'none'],
          ['Created', when(saga.created_at)],
          ['Updated', when(saga.updated_at)],
        ]),
        saga.failure ? h('p', {}, h('strong', {}, 'Failure: '), saga.failure) : null,
        saga.last_error ? h('p', {}, h('strong', {}, 'Last error: '), saga.last_error) : null),
        h('section', { class: 'card' }, h('h2', {}, 'Actions'), actions(saga))),
      h('h2', {}, 'Steps'),
      table('Every step, compensation, hook verdict and operator action, oldest first',
        ['When', 'Step', 'Phase', 'Outcome', 'Attempt', 'Detail'],
        (saga.history || []).map((r) => [when(r.at), r.step, r.phase,
          badge(r.outcome, r.outcome === 'ok' ? 'good' : ['failed', 'stuck', 'veto'].includes(r.outcome) ? 'bad' : 'neutral'),
          r.attempt, r.detail || '–'])));
  }

  function actions(saga) {
    const finished = saga.status === 'completed' || saga.status === 'compensated';
    const retry = h('button', { type: 'button', id: 'retry-saga', disabled: saga.status !== 'needs_attention' }, 'Retry');
    retry.addEventListener('click', () => act(() => call('POST', `/v1/sagas/${enc(id)}/retry`), 'Retried: the saga runs again.'));
    const reason = h('textarea', { name: 'reason', id: 'abort-reason', required: true, maxlength: 500, rows: 2 });
    const abort = onSubmit(h('form', { class: 'stack', id: 'abort-form' },
      field('Reason to abort', reason, 'Kept in the saga and on the order, which fails; its stock is released.'),
      h('div', {}, h('button', { type: 'submit', class: 'danger', disabled: finished }, 'Abort'))), async (data) => {
      await act(() => call('POST', `/v1/sagas/${enc(id)}/abort?reason=${enc(String(data.get('reason')))}`), 'Aborted: the saga ends compensated.');
    });
    return h('div', {},
      h('p', { class: 'muted' }, saga.status === 'needs_attention'
        ? 'Fix the cause (the last error says what failed), then retry; or give up with a reason.'
        : finished ? `The saga is ${saga.status}: nothing to do.` : 'Retry is for sagas that need attention; an unfinished saga can be aborted.'),
      h('div', { class: 'actions' }, retry),
      finished ? null : abort);
  }

  const act = (request, done) => perform(messages, request, done, load);

  load().catch((e) => fill(body, problem(e)));
}

// Orders: recent orders, look-up by order id or customer id, and one
// order with its lines, adjustments, timeline and the operator's actions
// (cancel, refund).

import { get, call, post, enc } from './api.js';
import { h, fill, field, table, figures, problem, notice, badge, toneOf, when, onSubmit, perform } from './dom.js';
import { timeline } from './timeline.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function render(main, [orderId, customer]) {
  if (orderId === 'customer' && customer) return list(main, customer);
  if (orderId) return detail(main, orderId);
  return list(main, null);
}

function searchForm() {
  const input = h('input', { id: 'order-search', name: 'q', required: true, size: 40, autocomplete: 'off', spellcheck: 'false' });
  const errors = h('div');
  const form = h('form', { class: 'inline', role: 'search' },
    field('Order id or customer id', input, 'A UUID: an order\'s opens it, a customer\'s lists their orders.'),
    h('button', { type: 'submit' }, 'Look up'));
  onSubmit(form, async (data) => {
    const q = String(data.get('q')).trim();
    fill(errors);
    if (!UUID.test(q)) {
      errors.append(problem(new Error('an order id or customer id is a UUID, e.g. 0192f1d2-…')));
      return;
    }
    try {
      // An order id wins; otherwise it is taken as a customer's.
      await get(`/v1/orders/${enc(q)}`);
      location.hash = `#/orders/${q}`;
    } catch (e) {
      if (e.status === 404) location.hash = `#/orders/customer/${q}`;
      else errors.append(problem(e));
    }
  });
  return [form, errors];
}

function orderRows(items) {
  return items.map((o) => [
    h('a', { href: `#/orders/${o.id}`, class: 'mono' }, o.id),
    h('a', { href: `#/orders/customer/${o.customer_id}`, class: 'mono' }, o.customer_id),
    badge(o.status, toneOf(o.status)),
    `${o.total} ${o.currency}`,
    when(o.created_at),
  ]);
}

function list(main, customer) {
  const results = h('div', { id: 'orders-list' }, h('p', { class: 'muted' }, 'Loading…'));
  fill(main, h('h1', {}, customer ? 'Orders of a customer' : 'Orders'), searchForm(), results);
  const query = customer ? `?limit=50&customer=${enc(customer)}` : '?limit=20';
  get(`/v1/orders${query}`).then((page) => {
    fill(results,
      h('h2', {}, customer ? h('span', {}, 'Customer ', h('code', {}, customer)) : 'Most recent'),
      table(null, ['Order', 'Customer', 'Status', 'Total', 'Placed'], orderRows(page.items)),
      page.next_cursor ? h('p', { class: 'muted' }, 'Newest first; older orders are not shown.') : null);
  }, (e) => fill(results, problem(e)));
}

function detail(main, id) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const messages = h('div', { id: 'order-messages' });
  fill(main, h('p', {}, h('a', { href: '#/orders' }, '← Orders')), h('h1', {}, 'Order ', h('code', {}, id)), messages, body);

  async function load() {
    const [order, events] = await Promise.all([get(`/v1/orders/${enc(id)}`), get(`/v1/orders/${enc(id)}/events`)]);
    fill(body,
      h('div', { class: 'cards' },
        h('section', { class: 'card' }, h('h2', {}, 'Summary'), figures([
          ['Status', badge(order.status, toneOf(order.status)), 'order-status'],
          ['Customer', h('a', { href: `#/orders/customer/${order.customer_id}`, class: 'mono' }, order.customer_id)],
          ['Subtotal', `${order.subtotal} ${order.currency}`],
          ['Total', `${order.total} ${order.currency}`, 'order-total'],
          ['Refunded', `${order.refunded} ${order.currency}`, 'order-refunded'],
          ['Version', order.version],
          ['Placed', when(order.created_at)],
          ['Updated', when(order.updated_at)],
        ]), order.status_reason ? h('p', {}, h('strong', {}, 'Reason: '), order.status_reason) : null),
        h('section', { class: 'card' }, h('h2', {}, 'Actions'), actions(order))),
      h('h2', {}, 'Lines'),
      table(null, ['SKU', 'Name', 'Quantity', 'Unit price', 'Line total'],
        order.items.map((l) => [h('a', { href: `#/stock/${enc(l.sku)}` }, l.sku), l.name, l.quantity, l.unit_price, l.line_total])),
      h('h2', {}, 'Adjustments'),
      table(null, ['Plugin', 'Label', 'Kind', 'Amount'],
        order.adjustments.map((a) => [h('code', {}, a.plugin), a.label, a.kind, `${a.amount} ${order.currency}`])),
      h('h2', {}, 'Timeline'),
      timeline(events.items, order.currency));
  }

  function actions(order) {
    const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-order' }, 'Cancel order');
    cancel.addEventListener('click', () => act(() => call('DELETE', `/v1/orders/${enc(id)}`), 'The order is cancelled.'));
    const amount = h('input', { name: 'amount', inputmode: 'decimal', pattern: '[0-9]+(\\.[0-9]+)?', size: 10 });
    const reason = h('input', { name: 'reason', maxlength: 500, size: 30 });
    const refund = onSubmit(h('form', { class: 'stack', id: 'refund-form' },
      field(`Amount (${order.currency})`, amount, 'Empty: all that is left.'),
      field('Reason', reason),
      h('div', {}, h('button', { type: 'submit' }, 'Refund'))), async (data) => {
      const json = {};
      if (data.get('amount')) json.amount = String(data.get('amount'));
      if (data.get('reason')) json.reason = String(data.get('reason'));
      await act(() => post(`/v1/orders/${enc(id)}/refund`, json), 'The refund is recorded.');
    });
    return h('div', {},
      h('p', { class: 'muted' }, 'Cancelling before shipping releases the stock and voids or refunds the payment.'),
      h('div', { class: 'actions' }, cancel),
      h('details', {}, h('summary', {}, 'Refund'), refund));
  }

  const act = (request, done) => perform(messages, request, done, load);

  load().catch((e) => fill(body, problem(e)));
}

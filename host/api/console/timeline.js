// An order's history in words: one entry per stored event (oldest first),
// saying what changed, with the plugin versions that priced or validated
// it, payments and refunds. Event shapes: docs/events.md.

import { h, when } from './dom.js';

function money(amount, currency) {
  return amount === undefined || amount === null ? '' : `${amount} ${currency || ''}`.trim();
}

function plugins(refs) {
  if (!refs || refs.length === 0) return null;
  return h('div', {}, 'Plugins: ', refs.map((p, i) => [i ? ', ' : '',
    h('code', { title: `sha256 ${p.sha256}` }, `${p.name} v${p.version}`)]));
}

function adjustments(list, currency) {
  if (!list || list.length === 0) return null;
  return h('ul', {}, list.map((a) => h('li', {},
    `${a.label}: ${a.kind === 'discount' || a.kind === 'Discount' ? '−' : '+'}${money(a.amount, currency)} (${a.kind}, by `,
    h('code', {}, a.plugin), a.line !== undefined && a.line !== null ? `, line ${a.line + 1}` : '', ')')));
}

function restocked(list) {
  if (!list || list.length === 0) return null;
  return h('div', {}, 'Back on hand: ', list.map((r) => `${r.quantity} × ${r.sku}`).join(', '));
}

/** What one event says, as a heading and details. */
function describe(event, currency) {
  const d = event.data || {};
  switch (event.event_type) {
    case 'OrderPlaced':
      return ['Placed', [
        h('div', {}, `${d.lines.length} line(s), total ${money(d.total, d.currency)}`
          + (d.payment_ref ? `, paid with ${d.payment_ref}` : ', to be paid later')),
        adjustments(d.adjustments, d.currency), plugins(d.plugins)]];
    case 'OrderItemsChanged':
      return ['Lines changed', [
        h('div', {}, `${d.lines.length} line(s), total ${money(d.total, currency)}`),
        adjustments(d.adjustments, currency), plugins(d.plugins)]];
    case 'OrderReserved': return ['Stock reserved', []];
    case 'OrderRejected': return ['Rejected', [h('div', {}, d.reason)]];
    case 'OrderPaymentStarted': return ['Payment started', []];
    case 'OrderPaid': return ['Paid', [h('div', {}, 'Payment ', h('code', {}, d.payment_id))]];
    case 'OrderConfirmed': return ['Confirmed', []];
    case 'OrderShipped': return ['Shipped', []];
    case 'OrderDelivered': return ['Delivered', []];
    case 'OrderCancelled': return ['Cancelled', [d.reason ? h('div', {}, d.reason) : null, restocked(d.restocked)]];
    case 'OrderFailed': return ['Failed', [h('div', {}, d.reason)]];
    case 'OrderRefundRequested':
      return ['Refund requested', [h('div', {}, `${money(d.amount, currency)}${d.reason ? `: ${d.reason}` : ''}`),
        restocked(d.restock)]];
    case 'OrderRefunded':
      return ['Refunded', [h('div', {}, `${d.amount ? money(d.amount, currency) : 'everything captured'}${d.reason ? `: ${d.reason}` : ''}`),
        restocked(d.restocked)]];
    case 'OrderRefundFailed': return ['Refund given up', [h('div', {}, d.reason)]];
    default: return [event.event_type, [h('pre', {}, JSON.stringify(d, null, 2))]];
  }
}

/** The timeline of `events` (as `GET /v1/orders/{id}/events` lists them). */
export function timeline(events, currency) {
  return h('ol', { class: 'timeline', id: 'timeline' }, events.map((event) => {
    const [what, details] = describe(event, currency);
    return h('li', { 'data-event': event.event_type },
      h('div', { class: 'when' }, when(event.recorded_at), ` · version ${event.version}`),
      h('div', { class: 'what' }, what),
      details);
  }));
}

// Stock: a product's on hand, reserved and available units, and an
// adjustment with a reason (a delivery, a count, damage).

import { get, post, enc } from './api.js';
import { h, fill, field, figures, problem, notice, when, onSubmit } from './dom.js';

export function render(main, [sku]) {
  const input = h('input', { id: 'stock-sku', name: 'sku', required: true, value: sku || '', autocomplete: 'off', spellcheck: 'false' });
  const form = h('form', { class: 'inline', role: 'search' }, field('SKU', input), h('button', { type: 'submit' }, 'Look up'));
  onSubmit(form, async (data) => { location.hash = `#/stock/${enc(String(data.get('sku')).trim())}`; });
  const body = h('div', { id: 'stock-product' });
  fill(main, h('h1', {}, 'Stock'), form, body);
  if (!sku) {
    input.focus();
    return;
  }
  const messages = h('div', { id: 'stock-messages' });

  function show(product) {
    const delta = h('input', { id: 'adjust-delta', name: 'delta', type: 'number', required: true, step: 1 });
    const reason = h('input', { id: 'adjust-reason', name: 'reason', required: true, maxlength: 500, size: 40 });
    const adjust = onSubmit(h('form', { class: 'inline', id: 'adjust-form' },
      field('Change in units on hand', delta, 'Positive: units in; negative: units out.'),
      field('Reason', reason, 'e.g. delivery 2026-11-25, stock count, damaged'),
      h('button', { type: 'submit' }, 'Adjust')), async (data) => {
      fill(messages);
      try {
        const updated = await post(`/v1/products/${enc(sku)}/adjust`,
          { delta: Number(data.get('delta')), reason: String(data.get('reason')) });
        show(updated);
        messages.append(notice(`Adjusted by ${data.get('delta')}: ${updated.on_hand} on hand.`));
      } catch (e) {
        messages.append(problem(e));
      }
    });
    fill(body,
      h('section', { class: 'card' }, h('h2', {}, product.name, ' ', h('code', {}, product.sku)), figures([
        ['On hand', product.on_hand, 'stock-on-hand'],
        ['Reserved for orders', product.reserved, 'stock-reserved'],
        ['Available', product.available, 'stock-available'],
        ['Unit price', `${product.unit_price} ${product.currency}`],
        ['Version', product.version],
        ['Updated', when(product.updated_at)],
      ])),
      messages,
      h('h2', {}, 'Adjust'),
      h('p', { class: 'muted' }, 'On hand never goes below what is reserved; the reason is kept with the change.'),
      adjust);
  }

  get(`/v1/products/${enc(sku)}`).then(show, (e) => fill(body, problem(e)));
}

// Plugins: every stored version with its state, call counts and latency;
// upload a component, activate a version, roll back; and a dry run of a
// cart typed into a form (pricing), or of any JSON input, with no side
// effects.

import { get, call, post, enc, metricsText } from './api.js';
import { h, fill, field, table, problem, notice, badge, onSubmit, perform } from './dom.js';
import { parse, sum } from './metrics.js';

/** Digits of the minor unit, for the currencies that have none. */
const ZERO_DECIMAL = ['JPY', 'KRW'];
const minorDigits = (currency) => (ZERO_DECIMAL.includes(currency) ? 0 : 2);

/** "12.50" EUR as minor units (1250), the way WIT carries money. */
function toMinor(decimal, currency) {
  const digits = minorDigits(currency);
  const [whole, fraction = ''] = String(decimal).trim().split('.');
  if (!/^\d+$/.test(whole) || !/^\d*$/.test(fraction) || fraction.length > digits) {
    throw new Error(`${decimal} is not an amount in ${currency} (at most ${digits} decimals)`);
  }
  return Number(whole) * 10 ** digits + Number(fraction.padEnd(digits, '0') || 0);
}

function fromMinor(minor, currency) {
  const digits = minorDigits(currency);
  return digits ? (minor / 10 ** digits).toFixed(digits) : String(minor);
}

export function render(main) {
  const messages = h('div', { id: 'plugin-messages' });
  const listing = h('div', { id: 'plugins-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const dryRun = h('section', { id: 'dry-run' });
  fill(main, h('h1', {}, 'Plugins'), messages, listing, h('div', { class: 'columns' }, uploadForm(), dryRun));

  const act = (request, done) => perform(messages, request, done, load);

  async function load() {
    try {
      const [plugins, text] = await Promise.all([get('/v1/plugins'), metricsText()]);
      const samples = parse(text);
      const names = [...new Set(plugins.map((p) => p.name))].sort();
      const rows = plugins.map((p) => {
        const seconds = sum(samples, 'commerce_plugin_call_duration_seconds_sum', { plugin: p.name });
        const count = sum(samples, 'commerce_plugin_call_duration_seconds_count', { plugin: p.name });
        const failures = p.stats ? Object.values(p.stats.failures).reduce((a, b) => a + b, 0) : null;
        const activate = h('button', { type: 'button', class: 'secondary', 'aria-label': `Activate ${p.name} version ${p.version}` }, 'Activate');
        activate.addEventListener('click', () => act(() => post(`/v1/plugins/${enc(p.name)}/activate`, { version: p.version }), `${p.name} v${p.version} is active.`));
        return [
          h('strong', {}, p.name), p.version, p.kind, p.priority,
          p.active ? badge('✓ active', 'good') : badge('inactive'),
          p.listen ? p.listen.join(', ') : (p.kind === 'saga-hook' ? 'every step' : '–'),
          p.stats ? p.stats.calls : '–',
          failures === null ? '–' : failures,
          p.active && count > 0 ? `${((seconds / count) * 1000).toFixed(2)} ms` : '–',
          h('code', { title: p.sha256 }, p.sha256.slice(0, 12)),
          p.active ? '' : activate,
        ];
      });
      const rollbacks = names.map((name) => {
        const button = h('button', { type: 'button', class: 'secondary' }, `Roll back ${name}`);
        button.addEventListener('click', () => act(() => post(`/v1/plugins/${enc(name)}/rollback`), `${name} is rolled back to its previous version.`));
        return button;
      });
      fill(listing,
        table('Every stored version; calls and failures count the active ones since this replica started',
          ['Name', 'Version', 'Kind', 'Priority', 'State', 'Listens at', 'Calls', 'Failures', 'Mean latency', 'sha256', ''], rows),
        rollbacks.length ? h('div', { class: 'actions' }, rollbacks) : null);
      fill(dryRun, dryRunForm(names, plugins));
    } catch (e) {
      fill(listing, problem(e));
    }
  }

  function uploadForm() {
    const file = h('input', { type: 'file', id: 'plugin-file', name: 'file', accept: '.wasm,application/wasm', required: true });
    const name = h('input', { id: 'plugin-name', name: 'name', required: true, pattern: '[a-z0-9_\\-]{1,64}', autocomplete: 'off' });
    const kind = h('select', { id: 'plugin-kind', name: 'kind' },
      h('option', { value: '' }, 'detect from the component'),
      ['pricing', 'validation', 'saga-hook'].map((k) => h('option', { value: k }, k)));
    const priority = h('input', { id: 'plugin-priority', name: 'priority', type: 'number', value: 100 });
    const config = h('textarea', { id: 'plugin-config', name: 'config', rows: 2, spellcheck: 'false' });
    const listen = h('input', { id: 'plugin-listen', name: 'listen', autocomplete: 'off' });
    const activate = h('input', { type: 'checkbox', id: 'plugin-activate', name: 'activate' });
    const form = h('form', { class: 'stack', id: 'upload-form' },
      field('Component (.wasm)', file),
      field('Name', name, 'a-z, 0-9, - and _; a new version if the name exists.'),
      field('Kind', kind),
      field('Priority', priority, 'Lower runs first.'),
      field('Configuration (JSON)', config, 'Handed to the plugin by host.config(); empty: {}.'),
      field('Listens at (saga hooks)', listen, 'e.g. authorize-payment:before; empty: every step.'),
      h('label', { class: 'check', for: 'plugin-activate' }, activate, 'Activate at once'),
      h('div', {}, h('button', { type: 'submit' }, 'Upload')));
    onSubmit(form, async (data) => {
      const params = new URLSearchParams();
      for (const key of ['kind', 'priority', 'config', 'listen']) {
        if (data.get(key)) params.set(key, data.get(key));
      }
      params.set('activate', data.get('activate') ? 'true' : 'false');
      const upload = data.get('file');
      await act(async () => {
        const record = await call('PUT', `/v1/plugins/${enc(String(data.get('name')))}?${params}`,
          { body: upload, contentType: 'application/wasm' });
        form.reset();
        return record;
      }, `Uploaded ${data.get('name')}${data.get('activate') ? ' and activated it' : ''}.`);
    });
    return h('section', {}, h('h2', {}, 'Upload a version'),
      h('p', { class: 'muted' }, 'The service checks the component first (size, compilation, its world, a smoke call); a refused upload changes nothing.'),
      form);
  }

  load();
}

/** The dry-run form: a cart of lines typed in, or the JSON it makes. */
function dryRunForm(names, plugins) {
  const result = h('div', { id: 'dry-run-result', 'aria-live': 'polite' });
  if (names.length === 0) return [h('h2', {}, 'Dry run'), h('p', { class: 'muted' }, 'Upload a plugin to try it.')];
  const plugin = h('select', { id: 'dry-run-plugin', name: 'plugin' }, names.map((n) => h('option', { value: n }, n)));
  const version = h('input', { id: 'dry-run-version', name: 'version', type: 'number', min: 1 });
  const currency = h('input', { id: 'dry-run-currency', name: 'currency', value: 'EUR', size: 4, maxlength: 3, required: true });
  const lines = h('tbody');
  const addLine = (sku = '', quantity = 1, price = '') => {
    const n = lines.children.length + 1;
    lines.append(h('tr', {},
      h('td', {}, h('input', { name: 'sku', value: sku, 'aria-label': `SKU of line ${n}`, size: 14 })),
      h('td', {}, h('input', { name: 'quantity', type: 'number', min: 1, value: quantity, 'aria-label': `Quantity of line ${n}`, size: 6 })),
      h('td', {}, h('input', { name: 'price', inputmode: 'decimal', value: price, 'aria-label': `Unit price of line ${n}`, size: 8 }))));
  };
  addLine('MUG-RED', 12, '12.50');
  const more = h('button', { type: 'button', class: 'secondary' }, 'Add a line');
  more.addEventListener('click', () => addLine());
  const json = h('textarea', { id: 'dry-run-input', name: 'input', rows: 6, spellcheck: 'false' });
  const kindOf = (name) => (plugins.find((p) => p.name === name) || {}).kind;

  /** The cart the lines describe, as wit/README.md shapes it. */
  const cart = () => {
    const cur = currency.value.trim().toUpperCase();
    const cartLines = [...lines.children].map((row) => {
      const [sku, quantity, price] = [...row.querySelectorAll('input')].map((i) => i.value.trim());
      if (!sku) return null;
      const unit = toMinor(price || '0', cur);
      const q = Number(quantity);
      return { sku, name: sku, quantity: q, unit_price: { amount: unit, currency: cur },
        line_total: { amount: unit * q, currency: cur }, attributes: [] };
    }).filter(Boolean);
    const subtotal = cartLines.reduce((total, l) => total + l.line_total.amount, 0);
    return { currency: cur, lines: cartLines, subtotal: { amount: subtotal, currency: cur },
      customer: { id: '00000000-0000-0000-0000-000000000000', attributes: [] }, attributes: [] };
  };

  const form = h('form', { class: 'stack', id: 'dry-run-form' },
    field('Plugin', plugin),
    field('Version', version, 'Empty: the active version, else the newest.'),
    field('Currency', currency),
    h('div', { class: 'scroll' }, h('table', {},
      h('caption', { class: 'muted' }, 'Cart lines'),
      h('thead', {}, h('tr', {}, ['SKU', 'Quantity', 'Unit price'].map((c) => h('th', { scope: 'col' }, c)))),
      lines)),
    h('div', { class: 'actions' }, more),
    h('details', {}, h('summary', {}, 'Input as JSON (for validation plugins and saga hooks, or to edit)'),
      field('Input JSON', json, 'When filled in, it is sent instead of the cart above.')),
    h('div', {}, h('button', { type: 'submit' }, 'Dry run')));
  onSubmit(form, async (data) => {
    fill(result);
    try {
      const input = json.value.trim() ? JSON.parse(json.value) : cart();
      const body = { input };
      if (data.get('version')) body.version = Number(data.get('version'));
      const name = String(data.get('plugin'));
      const out = await post(`/v1/plugins/${enc(name)}/dry-run`, body);
      fill(result, h('h3', {}, `${name} answered`), describeOutput(out, kindOf(name)),
        h('details', {}, h('summary', {}, 'Raw answer'), h('pre', {}, JSON.stringify(out, null, 2))));
    } catch (e) {
      fill(result, problem(e));
    }
  });
  return [h('h2', {}, 'Dry run'), h('p', { class: 'muted' }, 'Runs a version on this input only: nothing is stored, no order changes.'), form, result];
}

function describeOutput(out, kind) {
  if (Array.isArray(out.adjustments)) {
    return table('Adjustments', ['Label', 'Kind', 'Amount', 'Line'], out.adjustments.map((a) => [
      a.label, a.kind, `${fromMinor(a.amount.amount, a.amount.currency)} ${a.amount.currency}`,
      a.line === null || a.line === undefined ? '–' : a.line + 1]));
  }
  if (Array.isArray(out.violations)) {
    return table('Violations', ['Violation'], out.violations.map((v) => [typeof v === 'string' ? v : JSON.stringify(v)]));
  }
  if (out.decision !== undefined) {
    return h('p', {}, out.decision === 'Continue' ? 'Continue' : `Veto: ${out.decision.Veto}`);
  }
  return h('p', { class: 'muted' }, `A ${kind || 'plugin'} answer (see the raw answer).`);
}

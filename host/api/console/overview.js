// Overview: the KPIs an operator watches, polled every two seconds from
// the service's own metrics (`/metrics`, as Prometheus scrapes it) and the
// saga counts (`GET /v1/sagas/counts`). Rates are computed here over the
// last half minute of samples. Metrics are this replica's: behind a load
// balancer, the Grafana dashboard sums every replica.

import { get, metricsText } from './api.js';
import { h, fill, figures, table, problem, badge, toneOf } from './dom.js';
import { parse, sum, byLabel } from './metrics.js';

const POLL_MS = 2000;
const WINDOW_MS = 30000;
/** Saga states in the order of a saga's life, the one needing an operator first. */
const SAGA_STATES = ['needs_attention', 'running', 'compensating', 'completed', 'compensated'];

export function render(main) {
  const status = h('p', { class: 'muted', id: 'overview-updated' }, 'Loading…');
  const errors = h('div');
  const orders = h('section', { class: 'card', 'aria-labelledby': 'ov-orders' });
  const sagas = h('section', { class: 'card', 'aria-labelledby': 'ov-sagas' });
  const plugins = h('section', { class: 'card', 'aria-labelledby': 'ov-plugins' });
  const stock = h('section', { class: 'card', 'aria-labelledby': 'ov-stock' });
  fill(main,
    h('h1', {}, 'Overview'),
    status,
    errors,
    h('div', { class: 'cards' }, orders, sagas, plugins, stock));

  const history = [];
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const [text, counts] = await Promise.all([metricsText(), get('/v1/sagas/counts')]);
      const samples = parse(text);
      const now = Date.now();
      const outcome = (o) => sum(samples, 'commerce_orders_total', { outcome: o });
      const point = {
        at: now,
        placed: outcome('placed'),
        confirmed: outcome('confirmed'),
        failed: outcome('failed') + outcome('rejected'),
      };
      history.push(point);
      while (history.length > 2 && now - history[0].at > WINDOW_MS) history.shift();
      const first = history[0];
      const seconds = (point.at - first.at) / 1000;
      const rate = seconds > 0 ? (point.placed - first.placed) / seconds : 0;
      const settled = (point.confirmed - first.confirmed) + (point.failed - first.failed);
      const recentFailure = settled > 0 ? (point.failed - first.failed) / settled : null;
      const settledTotal = point.confirmed + point.failed;
      const failureTotal = settledTotal > 0 ? point.failed / settledTotal : null;
      const pct = (x) => (x === null ? 'no orders settled' : `${(100 * x).toFixed(1)} %`);

      fill(orders, h('h2', { id: 'ov-orders' }, 'Orders'), figures([
        ['Orders per second (last 30 s)', rate.toFixed(2), 'ov-orders-rate'],
        ['Failure rate (last 30 s)', pct(recentFailure), 'ov-failure-recent'],
        ['Failure rate (since start)', pct(failureTotal), 'ov-failure-total'],
        ['Placed', outcome('placed'), 'ov-orders-placed'],
        ['Confirmed', outcome('confirmed'), 'ov-orders-confirmed'],
        ['Failed', outcome('failed'), 'ov-orders-failed'],
        ['Rejected', outcome('rejected'), 'ov-orders-rejected'],
        ['Cancelled', outcome('cancelled'), 'ov-orders-cancelled'],
        ['Refunded', outcome('refunded'), 'ov-orders-refunded'],
      ]));

      const attention = counts.counts.needs_attention || 0;
      fill(sagas, h('h2', { id: 'ov-sagas' }, 'Sagas by state'),
        figures(SAGA_STATES.map((state) => [state, counts.counts[state] ?? 0]).map(([state, n]) => [
          badge(state, n > 0 && state === 'needs_attention' ? 'bad' : toneOf(state)), n, `ov-sagas-${state}`])),
        attention > 0
          ? h('p', {}, h('a', { href: '#/sagas' }, `${attention} need${attention === 1 ? 's' : ''} an operator →`))
          : h('p', { class: 'muted' }, 'None needs an operator.'));

      const calls = byLabel(samples, 'commerce_plugin_calls_total', 'plugin');
      const rows = [...calls.keys()].sort().map((plugin) => {
        const total = sum(samples, 'commerce_plugin_calls_total', { plugin });
        const ok = sum(samples, 'commerce_plugin_calls_total', { plugin, outcome: 'ok' });
        return [plugin, total, total - ok];
      });
      fill(plugins, h('h2', { id: 'ov-plugins' }, 'Plugin calls'),
        table(null, ['Plugin', 'Calls', 'Failures'], rows));

      const drift = sum(samples, 'commerce_inventory_cache_mismatches_total');
      fill(stock, h('h2', { id: 'ov-stock' }, 'Stock'), figures([
        ['Stock-cache drift (entries repaired)', drift, 'ov-stock-drift'],
        ['Reservation re-reads (contention)', sum(samples, 'commerce_inventory_claim_rereads_total'), 'ov-stock-rereads'],
        ['Outbox lag (s)', sum(samples, 'commerce_outbox_lag_seconds'), 'ov-outbox-lag'],
      ]), h('p', { class: 'muted' }, drift > 0
        ? 'The Redis stock cache disagreed with the database and was repaired: see the InventoryMismatch runbook.'
        : 'The stock cache never disagreed with the database (or no cache is configured).'));

      fill(errors);
      fill(status, `This replica, updated ${new Date(now).toLocaleTimeString()}; refreshed every ${POLL_MS / 1000} s.`);
    } catch (e) {
      fill(errors, problem(e));
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

// Reading the Prometheus text exposition of `/metrics`: the same numbers
// the Grafana dashboard and the alert rules use.

/** Every sample: `{ name, labels, value }`. */
export function parse(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, '$1');
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of `name`'s samples whose labels include `where`. */
export function sum(samples, name, where = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

/** The sums of `name` grouped by one label's values. */
export function byLabel(samples, name, label) {
  const groups = new Map();
  for (const s of samples) {
    if (s.name !== name || !(label in s.labels)) continue;
    groups.set(s.labels[label], (groups.get(s.labels[label]) || 0) + s.value);
  }
  return groups;
}

// Building the page out of nodes, never out of markup strings: every value
// from the API lands as text, so nothing it holds can run or restyle the
// page (the Content-Security-Policy would refuse it anyway).

/** An element with attributes (`on...` are listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces what `el` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldIds = 0;

/** A labelled control; `hint` is tied to it with aria-describedby. */
export function field(label, control, hint) {
  const id = control.id || `field-${++fieldIds}`;
  control.id = id;
  const parts = [label, control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('span', { class: 'hint', id: hintId }, hint));
  }
  return h('label', { for: id }, ...parts);
}

/** A table in a horizontally scrolling box (narrow screens). */
export function table(caption, headers, rows) {
  return h('div', { class: 'scroll' },
    h('table', {},
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.length
        ? rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))
        : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'None.')))));
}

/** A list of label / value pairs. */
export function figures(pairs) {
  return h('dl', { class: 'figures' },
    pairs.map(([label, value, id]) => [h('dt', {}, label), h('dd', { id }, value)]));
}

/** The problem+json an API call failed with, as an alert. */
export function problem(err) {
  const title = err.title || 'Error';
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, `${title}${err.status ? ` (${err.status})` : ''}: `),
    h('span', { class: 'detail' }, err.message));
}

/** A success message, announced to screen readers. */
export function notice(text) {
  return h('div', { class: 'notice', role: 'status' }, text);
}

/** A state written out, with a colour that only repeats it. */
export function badge(text, tone = 'neutral') {
  return h('span', { class: `badge ${tone}` }, text.replaceAll('_', ' '));
}

/** The tone of an order or saga status. */
export function toneOf(status) {
  if (['confirmed', 'delivered', 'shipped', 'completed', 'paid', 'active'].includes(status)) return 'good';
  if (['failed', 'rejected', 'needs_attention'].includes(status)) return 'bad';
  if (['compensating', 'compensated', 'refunded', 'cancelled'].includes(status)) return 'warn';
  return 'neutral';
}

/** A time, in the browser's locale, with the ISO form as a tooltip. */
export function when(iso) {
  if (!iso) return '–';
  return h('time', { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

/**
 * Runs an action's request, says in `messages` how it went (the API's
 * problem detail when it failed), then reloads the page's data with
 * `reload`.
 */
export async function perform(messages, request, done, reload) {
  fill(messages);
  try {
    await request();
    messages.append(notice(done));
  } catch (e) {
    messages.append(problem(e));
  }
  try { await reload(); } catch (e) { messages.append(problem(e)); }
}

/** Runs `action` for a form's submit, with its button disabled meanwhile. */
export function onSubmit(form, action) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action(new FormData(form));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

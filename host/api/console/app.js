// The console's shell: sign-in gate, navigation, and routing by URL
// fragment (`#/orders/<id>`), so that every view has a link and the
// browser's back button works. Each page module exports
// `render(main, params)` and may return a function that stops its work
// (polling) when the operator leaves it.

import { session, whenUnauthorized } from './api.js';
import { fill, problem } from './dom.js';
import * as signin from './signin.js';
import * as overview from './overview.js';
import * as orders from './orders.js';
import * as sagas from './sagas.js';
import * as plugins from './plugins.js';
import * as stock from './stock.js';

const pages = { overview, orders, sagas, plugins, stock };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOut = document.getElementById('sign-out');
let stop = null;

function route() {
  if (stop) { stop(); stop = null; }
  const [name, ...params] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const signedIn = Boolean(session.token);
  nav.hidden = !signedIn;
  signOut.hidden = !signedIn;
  if (!signedIn) {
    document.title = 'Sign in · commerce console';
    signin.render(main, { reason: signinReason });
    signinReason = null;
    return;
  }
  const page = pages[name] ? name : 'overview';
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · commerce console`;
  try {
    stop = pages[page].render(fill(main), params.filter(Boolean)) || null;
  } catch (e) {
    fill(main, problem(e));
  }
  main.focus();
}

/** Why the operator is back at the sign-in page (an expired token). */
let signinReason = null;

whenUnauthorized((p) => {
  session.token = null;
  signinReason = p;
  route();
});

signOut.addEventListener('click', () => {
  session.token = null;
  location.hash = '#/';
  route();
});

window.addEventListener('console:signed-in', () => {
  if (location.hash === '#/overview') route();
  else location.hash = '#/overview';
});

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (event) => {
  // A failure no page caught still shows its detail, never a blank page.
  main.prepend(problem(event.reason instanceof Error ? event.reason : new Error(String(event.reason))));
});
route();

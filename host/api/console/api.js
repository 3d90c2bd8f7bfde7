// The console's only way to the service: its public REST API, with the
// operator's bearer token from session storage (gone when the tab closes).
// Errors are the API's problem+json, raised as `Problem` so that pages show
// its `detail`.

const TOKEN_KEY = 'commerce.console.token';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** A failed call: `message` is the problem's `detail`. */
export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.title = body.title;
    this.type = body.type;
    this.body = body;
  }
}

/** Called with every 401, so that the app can ask for a token again. */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

/**
 * Calls the API. `json` is sent as a JSON body, `body` as is (a file);
 * resolves to the parsed answer (null when empty).
 */
export async function call(method, path, { json, body, contentType, token } = {}) {
  const headers = {};
  const bearer = token ?? session.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (e) {
    throw new Problem(0, { title: 'Network error', detail: `the service did not answer (${e.message})` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    const problem = new Problem(response.status, data && typeof data === 'object'
      ? data : { title: response.statusText, detail: String(data || response.statusText) });
    if (response.status === 401 && token === undefined) onUnauthorized(problem);
    throw problem;
  }
  return data;
}

export const get = (path, options) => call('GET', path, options);
export const post = (path, json) => call('POST', path, { json });

/** A path segment or query value, encoded. */
export const enc = encodeURIComponent;

/** The service's own Prometheus exposition (`/metrics`, read as scrapers do). */
export async function metricsText() {
  let response;
  try {
    response = await fetch('/metrics');
  } catch (e) {
    throw new Problem(0, { title: 'Network error', detail: `the service did not answer (${e.message})` });
  }
  if (!response.ok) throw new Problem(response.status, { title: response.statusText, detail: 'the metrics could not be read' });
  return response.text();
}

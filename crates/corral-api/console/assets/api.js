// The console calls the same REST API as every other client; the session cookie
// authenticates it, and every unsafe request carries the session's CSRF token.

export class ApiError extends Error {
  constructor(status, reason, message, requestId, body) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.requestId = requestId;
    this.body = body;
  }
}

let csrf = '';
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrf = token || '';
}

/** Called with the error when a request answers 401 (the session ended). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * One API call; answers `{status, data, revision, requestId}`. A status >= 400 throws an
 * ApiError with the JSON body's `message` and the `X-Request-Id`.
 */
export async function call(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (!SAFE.has(method)) headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'Network error', `The server did not answer (${e.message}).`, null, null);
  }
  const requestId = resp.headers.get('X-Request-Id');
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (resp.status >= 400) {
    const message = (data && typeof data === 'object' && data.message) || (typeof data === 'string' && data) || resp.statusText;
    const reason = (data && typeof data === 'object' && data.error) || resp.statusText;
    const err = new ApiError(resp.status, reason, message, requestId, data);
    if (resp.status === 401 && !opts.quiet401) {
      onUnauthorized(err);
      err.handled = true;
    }
    throw err;
  }
  return { status: resp.status, data, revision: resp.headers.get('X-Corral-Revision'), requestId };
}

export const get = async (path, opts) => (await call('GET', path, undefined, opts)).data;
export const put = async (path, body) => (await call('PUT', path, body)).data;
export const post = async (path, body) => (await call('POST', path, body)).data;
export const del = async (path, body) => (await call('DELETE', path, body)).data;

/** Percent-encodes one path segment. */
export const seg = (s) => encodeURIComponent(s);

/**
 * Runs SQL statements through `POST /query`; answers one result per statement as
 * `{columns, rows: [object], raw}`; an SQL error throws with the server's message.
 */
export async function query(sql, parameters = []) {
  const results = await post('/query', [{ sql, parameters }]);
  return results.map((r) => {
    if (r.status !== 'success') throw new Error(`${r.status}: ${r.message}`);
    const columns = r.data.columnName;
    const rows = r.data.row.map((row) => Object.fromEntries(columns.map((c, i) => [c, row.value[i]])));
    return { columns, rows, raw: r };
  });
}

/** The rows of one statement. */
export async function rows(sql, parameters = []) {
  return (await query(sql, parameters))[0].rows;
}

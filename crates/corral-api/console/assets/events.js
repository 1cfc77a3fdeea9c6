// The change feed (`GET /events`, docs/events.md) as one shared EventSource. Pages subscribe
// with `subscribe(types, fn)`; `fn(event)` gets each JSON event of those types, and
// `fn({type: 'resync'})` when events may have been missed (a `lagged` cut-off, a log that
// no longer reaches back), so the page refetches instead of trusting its copy.

const TYPES = [
  'user', 'key', 'host', 'cluster', 'network', 'container_manager', 'operation', 'operation_step',
  'instance', 'image', 'namespace', 'app', 'service', 'service_run', 'service_instance',
];
const KINDS = TYPES.flatMap((t) => [`${t}.created`, `${t}.updated`, `${t}.deleted`]);

const subscribers = new Set();
let source = null;
let lastId = null;
let retry = null;
let failures = 0;
let statusFn = () => {};
let checkSession = async () => true;

/** `fn(state)` with 'live', 'connecting' or 'offline', for the header indicator. */
export function onStatus(fn) {
  statusFn = fn;
}

/** `fn()` answers whether the session is still valid (asked when the stream fails). */
export function setSessionCheck(fn) {
  checkSession = fn;
}

export function subscribe(types, fn) {
  const sub = { types: types ? new Set(types) : null, fn };
  subscribers.add(sub);
  return () => subscribers.delete(sub);
}

function dispatch(ev) {
  for (const s of subscribers) {
    if (ev.type === 'resync' || !s.types || s.types.has(ev.type)) {
      try {
        s.fn(ev);
      } catch (e) {
        console.error(e);
      }
    }
  }
}

function onMessage(msg) {
  if (msg.lastEventId) lastId = msg.lastEventId;
  let ev;
  try {
    ev = JSON.parse(msg.data);
  } catch {
    return;
  }
  failures = 0;
  dispatch(ev);
}

export function start() {
  if (source) return;
  open();
}

export function stop() {
  clearTimeout(retry);
  retry = null;
  if (source) source.close();
  source = null;
  lastId = null;
  statusFn('offline');
}

function open() {
  statusFn('connecting');
  // After a manual reconnect, resume exactly after the last event seen; the browser's own
  // reconnects send Last-Event-ID by themselves.
  const url = lastId ? `/events?since=${encodeURIComponent(lastId)}` : '/events';
  const es = new EventSource(url);
  source = es;
  es.addEventListener('open', () => {
    failures = 0;
    statusFn('live');
  });
  for (const k of KINDS) es.addEventListener(k, onMessage);
  es.addEventListener('lagged', (msg) => {
    // The server cut us off for falling behind: continue from what it says we got, and
    // let pages refetch what they show.
    try {
      const { resume_from: from } = JSON.parse(msg.data);
      if (from !== undefined) lastId = String(from);
    } catch {
      /* keep lastId */
    }
    es.close();
    source = null;
    dispatch({ type: 'resync' });
    open();
  });
  es.addEventListener('error', () => {
    if (es.readyState !== EventSource.CLOSED) {
      statusFn('connecting');
      return;
    }
    // The browser gave up (a 401, 410, 429 or the server gone): find out why, then retry.
    source = null;
    statusFn('offline');
    failures += 1;
    retry = setTimeout(async () => {
      retry = null;
      let ok = true;
      try {
        ok = await checkSession();
      } catch {
        ok = true;
      }
      if (!ok) return;
      if (failures >= 2 && lastId) {
        // Perhaps the log no longer reaches back to lastId (410): start from now and refetch.
        lastId = null;
        dispatch({ type: 'resync' });
      }
      open();
    }, Math.min(1000 * 2 ** failures, 15000));
  });
}

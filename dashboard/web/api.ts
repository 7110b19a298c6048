/**
 * The Kubernetes API as the dashboard's server forwards it (/k8s/…): reads,
 * actions that carry the login's CSRF token, and live lists (a list, then a
 * watch from its resourceVersion, relisting only when the watch expired).
 */
export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
}
export interface KObj { apiVersion?: string; kind?: string; metadata: Meta; spec?: any; status?: any; [k: string]: any }
export interface Whoami { user: string; server: string; csrfToken: string }

let csrfToken = '';
export const csrf = () => csrfToken;

export class ApiFailure extends Error {
  constructor(readonly code: number, message: string) { super(message); }
}

async function failureOf(r: Response, what: string): Promise<ApiFailure> {
  let message = `${what}: HTTP ${r.status}`;
  try {
    const body = await r.json();
    if (typeof body?.message === 'string') message = `${what}: ${body.message}`;
  } catch { /* not a Status */ }
  if (r.status === 401) message += ' (sign in again with a new address from `stevedore dashboard`)';
  return new ApiFailure(r.status, message);
}

export async function whoami(): Promise<Whoami> {
  const r = await fetch('/dashboard-api/whoami', { headers: { Accept: 'application/json' } });
  if (!r.ok) throw await failureOf(r, 'signing in');
  const me = (await r.json()) as Whoami;
  csrfToken = me.csrfToken;
  return me;
}

export async function get<T = KObj>(apiPath: string, signal?: AbortSignal): Promise<T> {
  const r = await fetch(`/k8s${apiPath}`, { headers: { Accept: 'application/json' }, signal });
  if (!r.ok) throw await failureOf(r, `GET ${apiPath}`);
  return (await r.json()) as T;
}

/** A write, as kubectl would make it; the server refuses it without the CSRF token. */
export async function act(method: 'DELETE' | 'PATCH' | 'POST' | 'PUT', apiPath: string, body?: unknown, contentType = 'application/merge-patch+json'): Promise<KObj> {
  const headers: Record<string, string> = { Accept: 'application/json', 'X-Stevedore-Csrf': csrfToken };
  if (body !== undefined) headers['Content-Type'] = contentType;
  const r = await fetch(`/k8s${apiPath}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw await failureOf(r, `${method} ${apiPath}`);
  return (await r.json()) as KObj;
}

/**
 * Read a streamed body line by line (watch events, followed logs) until it
 * ends or `signal` aborts. Streams go over a WebSocket of the dashboard
 * (dashboard/server.ts says why), not fetch.
 */
export function streamLines(apiPath: string, signal: AbortSignal, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve();
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/dashboard-api/stream?${new URLSearchParams({ path: apiPath })}`);
    let code = 0;
    let pending = '';
    let failure = '';
    signal.addEventListener('abort', () => { ws.close(); resolve(); });
    ws.onmessage = (ev) => {
      const data = String(ev.data);
      if (!code) { code = (JSON.parse(data) as { status: number }).status; return; }
      if (code >= 300) { failure += data; return; }
      pending += data;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    };
    ws.onclose = () => {
      if (signal.aborted) return resolve();
      if (!code) return reject(new ApiFailure(0, `GET ${apiPath}: the dashboard refused or lost the stream (signed out? reload the page)`));
      if (code >= 300) {
        let message = failure;
        try { message = (JSON.parse(failure) as { message?: string }).message ?? failure; } catch { /* not a Status */ }
        return reject(new ApiFailure(code, `GET ${apiPath}: ${message || `HTTP ${code}`}`));
      }
      if (pending) onLine(pending);
      resolve();
    };
  });
}

const keyOf = (o: KObj) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const sleep = (ms: number, signal: AbortSignal) => new Promise<void>((r) => { const t = setTimeout(r, ms); signal.addEventListener('abort', () => { clearTimeout(t); r(); }); });

/**
 * A list kept current by a watch. `onChange` runs at most every 100 ms
 * (a burst of events renders once); `onError` gets failures, after which it
 * retries every 2 s.
 */
export class LiveList {
  items = new Map<string, KObj>();
  loaded = false;
  private readonly abort = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly listPath: string, private readonly query: Record<string, string>, private readonly onChange: () => void, private readonly onError: (err: Error) => void) {
    void this.run();
  }

  get list(): KObj[] {
    return [...this.items.values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  }

  stop(): void {
    this.abort.abort();
    clearTimeout(this.timer);
  }

  private changed(): void {
    if (this.timer === undefined) this.timer = setTimeout(() => { this.timer = undefined; this.onChange(); }, 100);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const list = await get<{ items: KObj[]; metadata: { resourceVersion: string } }>(`${this.listPath}?${new URLSearchParams(this.query)}`, signal);
        this.items = new Map(list.items.map((o) => [keyOf(o), o]));
        this.loaded = true;
        clearTimeout(this.timer);
        this.timer = undefined;
        this.onChange();
        let rv = list.metadata.resourceVersion;
        let expired = false;
        while (!expired && !signal.aborted) {
          const q = new URLSearchParams({ ...this.query, watch: 'true', resourceVersion: rv, allowWatchBookmarks: 'true' });
          await streamLines(`${this.listPath}?${q}`, signal, (line) => {
            if (!line.trim()) return;
            const ev = JSON.parse(line) as { type: string; object: KObj };
            if (ev.type === 'ERROR') { expired = true; return; }
            rv = ev.object.metadata.resourceVersion ?? rv;
            if (ev.type === 'BOOKMARK') return;
            if (ev.type === 'DELETED') this.items.delete(keyOf(ev.object));
            else this.items.set(keyOf(ev.object), ev.object);
            this.changed();
          });
        }
      } catch (err) {
        if (signal.aborted) return;
        this.onError(err as Error);
        await sleep(2000, signal);
      }
    }
  }
}

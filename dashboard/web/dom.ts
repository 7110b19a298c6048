/**
 * The only way the dashboard makes DOM: text goes in through text nodes
 * (textContent), never through HTML parsing, so every name, label,
 * annotation and log line shows as the characters it is.
 */
export type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | boolean | undefined | ((ev: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** A table; rows of cells (each a Child). No rows: a muted "none". */
export function table(headers: string[], rows: Child[][], cls = ''): HTMLElement {
  if (!rows.length) return h('p', { class: `muted ${cls}`.trim() }, 'none');
  return h('table', { class: cls || undefined },
    h('thead', {}, h('tr', {}, ...headers.map((t) => h('th', {}, t)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))));
}

export function link(href: string, text: string): HTMLAnchorElement {
  return h('a', { href }, text);
}

export function badge(text: string, tone: 'ok' | 'warn' | 'bad' | 'muted' = 'muted'): HTMLSpanElement {
  return h('span', { class: `badge ${tone}` }, text);
}

/** key: value pairs (labels, annotations) as a definition list of text. */
export function pairs(obj: Record<string, string> | undefined): HTMLElement {
  const entries = Object.entries(obj ?? {});
  if (!entries.length) return h('span', { class: 'muted' }, 'none');
  return h('dl', { class: 'pairs' }, ...entries.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function age(ts: string | undefined): string {
  if (!ts) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

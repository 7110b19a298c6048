import { expandVars } from '../common/var-expansion.js';
import type { ContainerSpec } from '../runtime-api/pod-spec.js';

/** What pod.json holds instead of a value that carries Secret data. */
export const REDACTED = '(redacted: from a Secret)';

/**
 * Which of the container's variables carry Secret data (read from one, or
 * expanded from one), and which of its command and args do once expanded.
 */
export function secretTaint(c: ContainerSpec): { names: Set<string>; command: boolean[]; args: boolean[] } {
  const names = new Set<string>();
  const touchesSecret = (s: string) => {
    let touched = false;
    expandVars(s, (name) => { if (names.has(name)) touched = true; return undefined; });
    return touched;
  };
  for (const e of c.env ?? []) {
    if (e.fromSecret || (!e.valueFrom && e.value && touchesSecret(e.value))) names.add(e.name);
    else names.delete(e.name);
  }
  return { names, command: (c.command ?? []).map(touchesSecret), args: (c.args ?? []).map(touchesSecret) };
}

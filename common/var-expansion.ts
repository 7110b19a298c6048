/**
 * Kubernetes' `$(VAR)` expansion of a container's env values, command and
 * args, byte for byte as the kubelet does it (its forked
 * third_party/forked/golang/expansion): `$(NAME)` is replaced when NAME is
 * defined and kept literally when it is not; `$$` is an escaped `$`; a `$`
 * followed by anything else, an unclosed `$(`, or a trailing `$` stay as
 * they are.
 */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== '$' || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const next = input[cursor + 1];
    let advance = 1;
    if (next === '$') {
      out += '$';
    } else if (next === '(') {
      const close = input.indexOf(')', cursor + 2);
      if (close === -1) {
        out += '$(';
      } else {
        const name = input.slice(cursor + 2, close);
        out += lookup(name) ?? `$(${name})`;
        advance = close - cursor;
      }
    } else {
      out += `$${next}`;
    }
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

/**
 * A value that expansion must leave as it is (one read from a ConfigMap, a
 * Secret or the downward API, which the kubelet never expands): every `$`
 * doubled, so `expandVars(escapeVars(v), any) === v`.
 */
export function escapeVars(value: string): string {
  return value.replace(/\$/g, '$$$$');
}

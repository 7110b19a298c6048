/**
 * Image names. Records store fully qualified names `DOMAIN/PATH:TAG`; users
 * may type short ones. The rules (docker's, plus a local domain):
 *  - the first component is a domain if it contains '.' or ':' or is
 *    `localhost`; otherwise the name has no domain;
 *  - a missing tag is `latest`;
 *  - an unqualified name *given to us locally* (ImportOptions.name, OCI
 *    layout ref names, images we build) gets the domain `localhost`;
 *    an unqualified name from a docker-archive's RepoTags came from docker,
 *    so it gets docker's meaning: `docker.io/library/NAME` (`docker.io/NAME`
 *    when it already has a path, e.g. `user/app`);
 *  - resolving a short name tries `localhost/...` first, then `docker.io/...`.
 */
import { InvalidInput } from '../../common/errors.js';

export type DefaultDomain = 'localhost' | 'docker.io';

export interface ParsedName {
  domain: string | undefined;
  path: string;
  tag: string | undefined;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DOMAIN = /^(?:localhost|[A-Za-z0-9.-]+(?::[0-9]+)?)$/;

/** Parse `[domain/]path[:tag]`; undefined when it is not a valid name (digests `@sha256:` are not names). */
export function parseName(ref: string): ParsedName | undefined {
  if (ref.length === 0 || ref.length > 255 || ref.includes('@')) return undefined;
  const slash = ref.indexOf('/');
  let domain: string | undefined;
  let rest = ref;
  if (slash > 0) {
    const first = ref.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      if (!DOMAIN.test(first)) return undefined;
      domain = first;
      rest = ref.slice(slash + 1);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return undefined;
  }
  if (rest.length === 0 || !rest.split('/').every((c) => PATH_COMPONENT.test(c))) return undefined;
  return { domain, path: rest, tag };
}

export function formatName(n: ParsedName, defaultDomain: DefaultDomain): string {
  const domain = n.domain ?? defaultDomain;
  const p = domain === 'docker.io' && !n.path.includes('/') ? `library/${n.path}` : n.path;
  return `${domain}/${p}:${n.tag ?? 'latest'}`;
}

/** Fully qualify a name, or throw InvalidInput naming it. */
export function qualifyName(ref: string, defaultDomain: DefaultDomain): string {
  const parsed = parseName(ref);
  if (parsed === undefined) {
    throw new InvalidInput(`invalid image name ${JSON.stringify(ref)}`, 'names look like [registry/]path[:tag], lowercase, e.g. localhost/busybox:latest');
  }
  return formatName(parsed, defaultDomain);
}

/** The full names a user-typed reference may mean, most preferred first ([] when it is not a name). */
export function candidateNames(ref: string): string[] {
  const parsed = parseName(ref);
  if (parsed === undefined) return [];
  if (parsed.domain !== undefined) return [formatName(parsed, 'localhost')];
  return [formatName(parsed, 'localhost'), formatName(parsed, 'docker.io')];
}

/** True when the string can only be a tag (no path separator, no tag separator). */
export function isBareTag(s: string): boolean {
  return !s.includes('/') && !s.includes(':') && TAG.test(s);
}

/**
 * Image references for pulling: `[registry[:port]/]path[:tag][@sha256:<hex>]`.
 *
 * Unlike local names (names.ts, where an unqualified name means `localhost/…`
 * for images we were handed), a reference being *pulled* has docker's meaning:
 * no registry means Docker Hub, `docker.io/NAME` means `docker.io/library/NAME`,
 * and the Hub's API lives on `registry-1.docker.io`. No tag and no digest
 * means `:latest`.
 */
import { InvalidInput } from '../common/errors.js';

export const DOCKER_HUB_DOMAIN = 'docker.io';
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

export interface ImageReference {
  /** Registry domain as written in names: `docker.io`, `127.0.0.1:5000`, `registry.example.com`. */
  domain: string;
  /** Host[:port] the distribution API is reached at (`registry-1.docker.io` for docker.io). */
  apiHost: string;
  /** Repository path, e.g. `library/busybox`, `team/app`. */
  repository: string;
  /** The tag, if one was given, or `latest` when neither a tag nor a digest was given. */
  tag: string | undefined;
  /** `sha256:<hex>` when the reference pins a digest. */
  digest: string | undefined;
  /** True when the reference carried an explicit tag (for the pull-policy default). */
  explicitTag: boolean;
  /** `domain/repository:tag` when there is a tag, the name the store records. */
  name: string | undefined;
  /** `domain/repository` */
  repo: string;
  /** What the reference is resolved by on the registry: the digest if given, else the tag. */
  reference: string;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DOMAIN = /^(?:localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Hub aliases all mean docker.io. */
function canonicalDomain(d: string): string {
  const lower = d.toLowerCase();
  if (lower === 'index.docker.io' || lower === 'registry-1.docker.io' || lower === 'registry.hub.docker.com') return DOCKER_HUB_DOMAIN;
  return d;
}

function bad(ref: string, why: string): InvalidInput {
  return new InvalidInput(`invalid image reference ${JSON.stringify(ref)}: ${why}`, 'references look like [registry[:port]/]path[:tag][@sha256:<64 hex>], e.g. registry.example.com/team/app:1.4');
}

export function parseReference(input: string): ImageReference {
  const ref = input.trim();
  if (ref.length === 0) throw bad(input, 'empty');
  if (ref.length > 512) throw bad(input, 'too long');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(input, `unsupported digest ${JSON.stringify(digest)} (only sha256 is supported)`);
  }
  let domain = DOCKER_HUB_DOMAIN;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      if (!DOMAIN.test(first)) throw bad(input, `invalid registry host ${JSON.stringify(first)}`);
      domain = canonicalDomain(first);
      rest = rest.slice(slash + 1);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0 && !rest.slice(colon).includes('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest.length === 0 || !rest.split('/').every((c) => PATH_COMPONENT.test(c))) {
    throw bad(input, 'the repository path must be lowercase letters, digits and separators (. _ __ -)');
  }
  const repository = domain === DOCKER_HUB_DOMAIN && !rest.includes('/') ? `library/${rest}` : rest;
  const explicitTag = tag !== undefined;
  if (tag === undefined && digest === undefined) tag = 'latest';
  const repo = `${domain}/${repository}`;
  return {
    domain,
    apiHost: domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_API_HOST : domain,
    repository,
    tag,
    digest,
    explicitTag,
    name: tag !== undefined ? `${repo}:${tag}` : undefined,
    repo,
    reference: digest ?? (tag as string),
  };
}

/** `domain/repository@digest`, as recorded in ImageRecord.repoDigests. */
export function repoDigest(ref: ImageReference, digest: string): string {
  return `${ref.repo}@${digest}`;
}

/** True for hosts that are loopback addresses (plain HTTP is allowed there). */
export function isLoopbackHost(hostPort: string): boolean {
  let host = hostPort;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.includes(':')) host = host.slice(0, host.lastIndexOf(':'));
  host = host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Kubernetes image pull policy. Defaults as the API server applies them:
 * no imagePullPolicy and a `:latest` tag (or no tag and no digest) → Always;
 * anything else (a tag other than latest, or a digest without a tag) →
 * IfNotPresent. `name:latest@sha256:…` is Always, as in Kubernetes.
 */
import { InvalidInput } from '../common/errors.js';
import { parseReference } from './image-reference.js';

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export function defaultPullPolicy(ref: string): PullPolicy {
  const r = parseReference(ref);
  const tag = r.explicitTag ? r.tag : r.digest === undefined ? 'latest' : undefined;
  return tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/**
 * Whether to pull before running. `Never` with the image absent is the
 * caller's ErrImageNeverPull; `Always` pulls even when present (a cheap
 * manifest check when nothing changed: the store re-uses what it has).
 */
export function shouldPull(policy: PullPolicy | undefined, ref: string, present: boolean): boolean {
  const p = policy ?? defaultPullPolicy(ref);
  switch (p) {
    case 'Always':
      return true;
    case 'IfNotPresent':
      return !present;
    case 'Never':
      return false;
    default:
      throw new InvalidInput(`unknown imagePullPolicy ${JSON.stringify(p)}`, 'use Always, IfNotPresent or Never');
  }
}

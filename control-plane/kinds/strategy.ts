import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';

/**
 * What is particular to one kind, as kube-apiserver's per-kind strategies
 * hold it; everything else about a write (metadata, preconditions, dry run,
 * resourceVersions, the store) is the server's, the same for every kind.
 */
export interface KindStrategy {
  /** Status is written only through /status; writes to the main resource keep it. */
  statusSubresource?: boolean;
  /** Defaults and server-owned fields of a new object (status reset, defaults). */
  prepareForCreate?(obj: KObj): void;
  /** Defaults of an updated object (the main resource, not /status); `cur` is the stored one. */
  prepareForUpdate?(obj: KObj, cur: KObj): void;
  /** Field errors of a whole object, on create and on every update. */
  validate?(obj: KObj, causes: Cause[]): void;
  /** Field errors of a change (immutable fields) to the main resource. */
  validateUpdate?(obj: KObj, cur: KObj, causes: Cause[]): void;
}

/**
 * The usual shape of a kind with a status subresource: a new object starts
 * from `initialStatus` (whatever the client sent is the controllers' to
 * write), and `defaults` fill the spec on create and on every update.
 */
export function statusAndDefaults(initialStatus: () => KObj, defaults: (obj: KObj) => void): Pick<KindStrategy, 'statusSubresource' | 'prepareForCreate' | 'prepareForUpdate'> {
  return {
    statusSubresource: true,
    prepareForCreate(obj) {
      obj.status = initialStatus();
      defaults(obj);
    },
    prepareForUpdate: (obj) => defaults(obj),
  };
}

/**
 * policy/v1 PodDisruptionBudget as kube-apiserver validates it, and the
 * arithmetic the disruption controller and the eviction subresource share:
 * how many of a budget's pods must stay healthy.
 */
import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';
import { statusAndDefaults, type KindStrategy } from './strategy.js';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const PERCENT = /^(\d+)%$/;

/** An IntOrString budget as a count of `total` pods: percentages round up, as kube's GetScaledValueFromIntOrPercent(…, true). */
export function scaledCount(v: number | string, total: number): number {
  if (typeof v === 'number') return v;
  const m = PERCENT.exec(v);
  return m ? Math.ceil((Number(m[1]) * total) / 100) : Number.NaN;
}

function intOrPercentCauses(v: unknown, field: string, causes: Cause[]): void {
  if (v === undefined || v === null) return;
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${v}: must be greater than or equal to 0` });
    return;
  }
  const m = typeof v === 'string' ? PERCENT.exec(v) : null;
  if (!m) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(v)}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')` });
  else if (Number(m[1]) > 100) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(v)}: must not be greater than 100%` });
}

export const pdbStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({ disruptionsAllowed: 0, currentHealthy: 0, desiredHealthy: 0, expectedPods: 0 }), (pdb) => {
    pdb.spec ??= {};
    pdb.spec.unhealthyPodEvictionPolicy ??= 'IfHealthyBudget';
  }),
  validate(pdb, causes) {
    const spec = isObj(pdb.spec) ? pdb.spec : {};
    if (spec.minAvailable !== undefined && spec.maxUnavailable !== undefined) causes.push({ field: 'spec', reason: 'FieldValueInvalid', message: 'Invalid value: ...: minAvailable and maxUnavailable cannot be both set' });
    intOrPercentCauses(spec.minAvailable, 'spec.minAvailable', causes);
    intOrPercentCauses(spec.maxUnavailable, 'spec.maxUnavailable', causes);
    if (spec.selector !== undefined && !isObj(spec.selector)) causes.push({ field: 'spec.selector', reason: 'FieldValueInvalid', message: 'Invalid value: must be a label selector' });
    if (!['IfHealthyBudget', 'AlwaysAllow'].includes(spec.unhealthyPodEvictionPolicy)) causes.push({ field: 'spec.unhealthyPodEvictionPolicy', reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(spec.unhealthyPodEvictionPolicy)}: supported values: "AlwaysAllow", "IfHealthyBudget"` });
  },
};

/** kubectl's MIN AVAILABLE / MAX UNAVAILABLE cells: the value, or N/A. */
export const budgetCell = (v: unknown): string => (v === undefined || v === null ? 'N/A' : String(v));

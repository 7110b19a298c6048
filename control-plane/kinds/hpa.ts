/**
 * autoscaling/v2 HorizontalPodAutoscaler: defaults and validation as
 * kube-apiserver's strategy applies them, the autoscaling/v1 form kubectl
 * autoscale sends (converted on create: this server stores and serves v2),
 * and the TARGETS column kubectl prints.
 */
import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';
import { statusAndDefaults, type KindStrategy } from './strategy.js';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a v2 HPA with no metrics targets (the v1 default): 80 % CPU utilization. */
const DEFAULT_CPU_UTILIZATION = 80;

export const cpuUtilizationMetric = (percent: number): KObj => ({ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: percent } } });

/** An autoscaling/v1 HPA as the v2 object it means (targetCPUUtilizationPercentage → one Resource metric). */
export function hpaV1ToV2(v1: KObj): KObj {
  const spec = v1.spec ?? {};
  const { targetCPUUtilizationPercentage, ...rest } = spec;
  return {
    ...v1,
    apiVersion: 'autoscaling/v2',
    spec: { ...rest, ...(targetCPUUtilizationPercentage !== undefined ? { metrics: [cpuUtilizationMetric(targetCPUUtilizationPercentage)] } : {}) },
  };
}

/** The v1 form of a stored HPA (for a client that created it as v1): its CPU utilization target, if it has one. */
export function hpaV2ToV1(v2: KObj): KObj {
  const { metrics, behavior: _behavior, ...rest } = v2.spec ?? {};
  const cpu = (metrics ?? []).find((m: KObj) => m?.type === 'Resource' && m.resource?.name === 'cpu' && m.resource?.target?.type === 'Utilization');
  const current = (v2.status?.currentMetrics ?? []).find((m: KObj) => m?.resource?.name === 'cpu')?.resource?.current?.averageUtilization;
  const { currentMetrics: _m, conditions: _c, ...status } = v2.status ?? {};
  return {
    ...v2,
    apiVersion: 'autoscaling/v1',
    spec: { ...rest, ...(cpu ? { targetCPUUtilizationPercentage: cpu.resource.target.averageUtilization } : {}) },
    status: { ...status, ...(current !== undefined ? { currentCPUUtilizationPercentage: current } : {}) },
  };
}

const SUPPORTED_METRIC = 'Resource';
const RESOURCE_NAMES = ['cpu', 'memory'];

function defaultHpa(hpa: KObj): void {
  const spec = (hpa.spec ??= {});
  spec.minReplicas ??= 1;
  if (!Array.isArray(spec.metrics) || spec.metrics.length === 0) spec.metrics = [cpuUtilizationMetric(DEFAULT_CPU_UTILIZATION)];
  // SetDefaults_HorizontalPodAutoscalerBehavior: a behavior given in part gets the rest of kube's defaults.
  if (isObj(spec.behavior)) {
    const up = (spec.behavior.scaleUp ??= {});
    up.stabilizationWindowSeconds ??= 0;
    up.selectPolicy ??= 'Max';
    up.policies ??= [{ type: 'Pods', value: 4, periodSeconds: 15 }, { type: 'Percent', value: 100, periodSeconds: 15 }];
    const down = (spec.behavior.scaleDown ??= {});
    down.selectPolicy ??= 'Max';
    down.policies ??= [{ type: 'Percent', value: 100, periodSeconds: 15 }];
  }
}

function validatePolicies(rules: KObj | undefined, field: string, causes: Cause[]): void {
  if (rules === undefined || rules === null) return;
  const w = rules.stabilizationWindowSeconds;
  if (w !== undefined && (typeof w !== 'number' || w < 0 || w > 3600)) causes.push({ field: `${field}.stabilizationWindowSeconds`, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(w)}: must be greater than or equal to zero and less than or equal to 3600` });
  if (rules.selectPolicy !== undefined && !['Max', 'Min', 'Disabled'].includes(rules.selectPolicy)) causes.push({ field: `${field}.selectPolicy`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${rules.selectPolicy}": supported values: "Disabled", "Max", "Min"` });
  for (const [i, p] of (rules.policies ?? []).entries()) {
    const at = `${field}.policies[${i}]`;
    if (!['Pods', 'Percent'].includes(p?.type)) causes.push({ field: `${at}.type`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${p?.type}": supported values: "Percent", "Pods"` });
    if (typeof p?.value !== 'number' || p.value <= 0) causes.push({ field: `${at}.value`, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(p?.value)}: must be greater than zero` });
    if (typeof p?.periodSeconds !== 'number' || p.periodSeconds <= 0 || p.periodSeconds > 1800) causes.push({ field: `${at}.periodSeconds`, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(p?.periodSeconds)}: must be greater than zero and less than or equal to 1800` });
  }
}

export const hpaStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({ currentReplicas: 0, desiredReplicas: 0 }), defaultHpa),
  validate(hpa, causes) {
    const spec = hpa.spec ?? {};
    const ref = spec.scaleTargetRef;
    if (!isObj(ref)) causes.push({ field: 'spec.scaleTargetRef', reason: 'FieldValueRequired', message: 'Required value' });
    else {
      if (!ref.kind) causes.push({ field: 'spec.scaleTargetRef.kind', reason: 'FieldValueRequired', message: 'Required value' });
      if (!ref.name) causes.push({ field: 'spec.scaleTargetRef.name', reason: 'FieldValueRequired', message: 'Required value' });
    }
    if (typeof spec.minReplicas !== 'number' || spec.minReplicas < 1) causes.push({ field: 'spec.minReplicas', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(spec.minReplicas)}: must be greater than or equal to 1 (scaling to zero is an alpha feature this control plane does not implement)` });
    if (typeof spec.maxReplicas !== 'number' || spec.maxReplicas < 1) causes.push({ field: 'spec.maxReplicas', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(spec.maxReplicas)}: must be greater than 0` });
    else if (typeof spec.minReplicas === 'number' && spec.maxReplicas < spec.minReplicas) causes.push({ field: 'spec.maxReplicas', reason: 'FieldValueInvalid', message: `Invalid value: ${spec.maxReplicas}: must be greater than or equal to \`minReplicas\`` });
    for (const [i, m] of (spec.metrics ?? []).entries()) {
      const at = `spec.metrics[${i}]`;
      if (m?.type !== SUPPORTED_METRIC) {
        causes.push({ field: `${at}.type`, reason: 'FieldValueForbidden', message: `Forbidden: metrics of type "${m?.type}" are not implemented by this control plane (only Resource metrics, from metrics.k8s.io); remove it` });
        continue;
      }
      const name = m.resource?.name;
      if (!RESOURCE_NAMES.includes(name)) causes.push({ field: `${at}.resource.name`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${name}": supported values: "cpu", "memory"` });
      const target = m.resource?.target ?? {};
      if (target.type === 'Utilization') {
        if (typeof target.averageUtilization !== 'number' || target.averageUtilization <= 0) causes.push({ field: `${at}.resource.target.averageUtilization`, reason: 'FieldValueRequired', message: 'Required value: must be set to a positive number for Utilization' });
      } else if (target.type === 'AverageValue') {
        if (target.averageValue === undefined) causes.push({ field: `${at}.resource.target.averageValue`, reason: 'FieldValueRequired', message: 'Required value: must be set for AverageValue' });
      } else causes.push({ field: `${at}.resource.target.type`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${target.type}": supported values: "AverageValue", "Utilization" (a Resource metric)` });
    }
    validatePolicies(spec.behavior?.scaleUp, 'spec.behavior.scaleUp', causes);
    validatePolicies(spec.behavior?.scaleDown, 'spec.behavior.scaleDown', causes);
  },
};

/** kubectl's TARGETS cell: `cpu: 45%/50%`, `memory: 10Mi/20Mi`, `<unknown>` before the first measurement. */
export function hpaTargets(hpa: KObj): string {
  const specs: KObj[] = hpa.spec?.metrics ?? [];
  const current: KObj[] = hpa.status?.currentMetrics ?? [];
  const cells = specs.map((m, i) => {
    const name = m.resource?.name ?? '?';
    const cur = current[i]?.resource?.current ?? current.find((c) => c.resource?.name === name)?.resource?.current;
    const target = m.resource?.target ?? {};
    if (target.type === 'Utilization') return `${name}: ${cur?.averageUtilization !== undefined ? `${cur.averageUtilization}%` : '<unknown>'}/${target.averageUtilization}%`;
    return `${name}: ${cur?.averageValue ?? '<unknown>'}/${target.averageValue}`;
  });
  if (cells.length > 2) return `${cells.slice(0, 2).join(', ')} + ${cells.length - 2} more...`;
  return cells.join(', ') || '<none>';
}

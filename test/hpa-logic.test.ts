/** The HPA controller's arithmetic (kube's replica calculator, stabilization, rate limits) and the v1 form kubectl sends. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, rateLimit, replicasFor, stabilize, type PodSample } from '../control-plane/controllers/hpa.js';
import { hpaTargets, hpaV1ToV2, hpaV2ToV1 } from '../control-plane/kinds/hpa.js';

const ready = (name: string, usage: number | undefined, request = 100): PodSample => ({ name, ready: true, request, ...(usage !== undefined ? { usage } : {}) });
const cpu50 = { type: 'Utilization', averageUtilization: 50 } as const;

test('utilization: ceil(ratio × ready pods); within 10 % is no change', () => {
  assert.equal(replicasFor(1, [ready('a', 200)], cpu50), { replicas: 4, utilization: 200, averageValue: 200 });
  assert.is((replicasFor(2, [ready('a', 54), ready('b', 52)], cpu50) as { replicas: number }).replicas, 2, '53 % of a 50 % target is within tolerance');
  assert.is((replicasFor(4, [ready('a', 10), ready('b', 10), ready('c', 10), ready('d', 10)], cpu50) as { replicas: number }).replicas, 1);
});

test('pods not ready count as idle when scaling up; a missing measurement holds the target when scaling down', () => {
  // one busy ready pod, one starting: (200 + 0) / 200 = 100 % → ratio 2 → 4 pods, not ceil(4 × 2) from the ready one alone
  const up = replicasFor(2, [ready('a', 200), { name: 'b', ready: false, request: 100 }], cpu50) as { replicas: number };
  assert.is(up.replicas, 4);
  // scaling down with a pod not yet measured: it is assumed at the target, so the decision is milder
  const down = replicasFor(3, [ready('a', 10), ready('b', 10), ready('c', undefined)], cpu50) as { replicas: number };
  assert.is(down.replicas, 2, '(10 + 10 + 50) / 300 = 23 % → ratio 0.47 → ceil(1.4) = 2');
  // missing pods that would flip the direction: no change
  const flip = replicasFor(3, [ready('a', 60), ready('b', undefined), ready('c', undefined)], cpu50) as { replicas: number };
  assert.is(flip.replicas, 3);
});

test('errors: no ready pod with metrics; a pod without a request for a Utilization target', () => {
  assert.equal(replicasFor(1, [{ name: 'a', ready: false, request: 100 }], cpu50), { error: 'did not receive metrics for any ready pods' });
  assert.match((replicasFor(1, [ready('a', 100), { name: 'b', ready: true, usage: 5 }], cpu50) as { error: string }).error, 'missing request');
  assert.is((replicasFor(1, [{ name: 'a', ready: true, usage: 300 }], { type: 'AverageValue', averageValue: 100 }) as { replicas: number }).replicas, 3, 'AverageValue needs no request');
});

test('stabilization: up takes the lowest of its window, down the highest of its window', () => {
  const at = 1_000_000;
  const history = [{ at: at - 200_000, value: 6 }, { at: at - 10_000, value: 3 }];
  assert.is(stabilize(5, 2, history, 0, 300, at), 5, 'a lower recommendation within the 300 s down window holds at the highest seen (6 > current 5)');
  assert.is(stabilize(5, 2, history, 0, 60, at), 3, 'only the last minute counts: the highest there is 3');
  assert.is(stabilize(2, 8, history, 0, 0, at), 8, 'scale up at once');
  assert.is(stabilize(2, 8, history, 60, 0, at), 3, 'an up window takes the lowest recent recommendation');
});

test('rate limits: default up is max(4 pods, 100 %) per 15 s; down 100 % per 15 s; Disabled never moves', () => {
  const at = 1_000_000;
  assert.is(rateLimit(1, true, DEFAULT_SCALE_UP, [], at), 5, '1 + 4 pods beats 1 × 2');
  assert.is(rateLimit(10, true, DEFAULT_SCALE_UP, [], at), 20);
  assert.is(rateLimit(10, true, DEFAULT_SCALE_UP, [{ at: at - 5000, value: 6 }], at), 10, 'the 6 added 5 s ago count: start of period 4 → max(8, 8)');
  assert.is(rateLimit(10, false, DEFAULT_SCALE_DOWN, [], at), 0);
  assert.is(rateLimit(10, false, { ...DEFAULT_SCALE_DOWN, policies: [{ type: 'Pods', value: 1, periodSeconds: 60 }] }, [], at), 9);
  assert.is(rateLimit(3, true, { ...DEFAULT_SCALE_UP, selectPolicy: 'Disabled' }, [], at), 3);
});

test('autoscaling/v1 → v2, and the TARGETS column', () => {
  const v2 = hpaV1ToV2({ apiVersion: 'autoscaling/v1', kind: 'HorizontalPodAutoscaler', metadata: { name: 'web' }, spec: { scaleTargetRef: { kind: 'Deployment', name: 'web', apiVersion: 'apps/v1' }, minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 50 } });
  assert.equal(v2.spec.metrics, [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } } }]);
  assert.is(v2.apiVersion, 'autoscaling/v2');
  assert.not.ok('targetCPUUtilizationPercentage' in v2.spec);
  assert.is(hpaTargets(v2), 'cpu: <unknown>/50%');
  const back = hpaV2ToV1({ ...v2, status: { currentReplicas: 2, currentMetrics: [{ type: 'Resource', resource: { name: 'cpu', current: { averageUtilization: 70 } } }] } });
  assert.equal(back.spec, { scaleTargetRef: { kind: 'Deployment', name: 'web', apiVersion: 'apps/v1' }, minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 50 });
  assert.equal(back.status, { currentReplicas: 2, currentCPUUtilizationPercentage: 70 });
  assert.is(hpaTargets({ ...v2, status: { currentMetrics: [{ type: 'Resource', resource: { name: 'cpu', current: { averageUtilization: 23, averageValue: '23m' } } }] } }), 'cpu: 23%/50%');
});

test.run();

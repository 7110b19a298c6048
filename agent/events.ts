import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import type { KubeClients } from './kube.js';

/** Records Kubernetes Events about pods, as the kubelet does (best effort: a lost event never blocks a pod). */
export class EventRecorder {
  constructor(private readonly kube: KubeClients, private readonly nodeName: string, private readonly log: Logger) {}

  emit(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, message: string, fieldPath?: string): void {
    const md = pod.metadata!;
    const now = new Date();
    const body = {
      metadata: { generateName: `${md.name}.`, namespace: md.namespace },
      involvedObject: { kind: 'Pod', apiVersion: 'v1', name: md.name, namespace: md.namespace, uid: md.uid, fieldPath },
      reason, message, type,
      source: { component: 'kubelet', host: this.nodeName },
      reportingComponent: 'stevedore-agent', reportingInstance: this.nodeName,
      // No eventTime: it is a MicroTime, and client-node writes Dates with
      // millisecond precision, which kubectl refuses to decode.
      firstTimestamp: now, lastTimestamp: now, count: 1, action: reason,
    };
    this.kube.core.createNamespacedEvent({ namespace: md.namespace ?? 'default', body })
      .catch((err) => this.log.warn({ err: String(err), reason, pod: md.name }, 'could not record event'));
  }
}

import { randomBytes } from 'node:crypto';
import type { Logger } from '../../common/log.js';
import { RESOURCES, now, withNewMeta } from '../resources.js';
import type { KObj, Store } from '../store.js';

/** How controllers tell users what they did: core/v1 Events about an object, as kube-controller-manager's recorders write them. */
export class EventRecorder {
  private readonly def = RESOURCES.find((r) => r.name === 'events')!;

  constructor(private readonly store: Store, private readonly log: Logger) {}

  record(obj: KObj, type: 'Normal' | 'Warning', reason: string, message: string, component: string): void {
    const ns = obj.metadata.namespace || 'default';
    const name = `${obj.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`;
    const t = now();
    try {
      this.store.create('events', ns, name, withNewMeta(this.def, {
        metadata: { name },
        involvedObject: { kind: obj.kind, namespace: obj.metadata.namespace, name: obj.metadata.name, uid: obj.metadata.uid, apiVersion: obj.apiVersion, resourceVersion: obj.metadata.resourceVersion },
        reason, message, source: { component }, firstTimestamp: t, lastTimestamp: t, count: 1, type,
        eventTime: null, reportingComponent: component, reportingInstance: '',
      }, ns));
    } catch (err) {
      this.log.warn({ err }, 'recording event failed');
    }
  }
}

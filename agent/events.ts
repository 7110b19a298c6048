import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import type { KubeClients } from './kube.js';

/** How many events may wait to be sent; more are dropped (client-go's broadcaster queues 1000 the same way). */
export const MAX_QUEUED_EVENTS = 1000;

/** Where events go: one create call per event (the API in the agent, a recording fake in unit tests). */
export type EventSink = (namespace: string, body: Record<string, unknown>) => Promise<unknown>;

/**
 * Records Kubernetes Events about pods, as the kubelet does: best effort (a lost event never blocks a
 * pod), and sent in the background one at a time, in order, as client-go's event broadcaster writes
 * them to its sink from a single goroutine. A pod's start emits several events (Pulled, Created,
 * Started) beside its status write; sent all at once from every node they would queue ahead of the
 * status writes in the API server. Sent one by one, each node has at most one event call in flight.
 */
export class EventRecorder {
  private readonly queue: Array<{ namespace: string; body: Record<string, unknown>; reason: string; pod: string | undefined }> = [];
  private sending = false;
  private dropped = 0;
  private readonly sink: EventSink;

  constructor(kube: KubeClients | EventSink, private readonly nodeName: string, private readonly log: Logger) {
    this.sink = typeof kube === 'function' ? kube : (namespace, body) => kube.core.createNamespacedEvent({ namespace, body: body as never });
  }

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
    if (this.queue.length >= MAX_QUEUED_EVENTS) {
      // Said once per overflow, not once per event lost.
      if (this.dropped++ === 0) this.log.warn({ queued: this.queue.length }, 'event queue full: events are dropped until it drains');
      return;
    }
    this.queue.push({ namespace: md.namespace ?? 'default', body, reason, pod: md.name });
    if (!this.sending) void this.drain();
  }

  /** Events queued or being sent. */
  get pending(): number {
    return this.queue.length + (this.sending ? 1 : 0);
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        try {
          await this.sink(next.namespace, next.body);
        } catch (err) {
          this.log.warn({ err: String(err), reason: next.reason, pod: next.pod }, 'could not record event');
        }
      }
    } finally {
      this.sending = false;
      if (this.dropped) {
        this.log.warn({ dropped: this.dropped }, 'event queue drained; events were dropped while it was full');
        this.dropped = 0;
      }
    }
  }
}

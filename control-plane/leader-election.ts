import type { Logger } from '../common/log.js';
import type { ApiClient } from './controllers/client.js';
import type { ObjectStore, KObj } from './store.js';

/**
 * client-go's leader election over a coordination.k8s.io/v1 Lease, as
 * kube-controller-manager and kube-scheduler run it (--leader-elect): every
 * retry period a candidate reads the Lease; it takes it when the Lease is
 * absent, released, or unchanged for leaseDuration as this candidate saw it
 * (observed time, not the holder's clock), and the holder renews it. Writes
 * carry the resourceVersion read, so of two candidates only one wins (the
 * store's compare-and-swap: an etcd transaction on etcd). A holder that cannot
 * renew within the renew deadline stops leading.
 */
export interface LeaderElectionConfig {
  /** This candidate, unique among them (kube: hostname_uuid). */
  identity: string;
  namespace: string;
  name: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
}

export const DEFAULT_LEADER_ELECTION = { namespace: 'kube-system', name: 'stevedore-controller-manager', leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 };

export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenewed = 0;
  /** The Lease as last seen (its resourceVersion) and when this candidate saw it change. */
  private observedRv = '';
  private observedAt = 0;

  constructor(private store: ObjectStore, private client: ApiClient, private log: Logger, private cfg: LeaderElectionConfig,
    private callbacks: { startedLeading(): void; stoppedLeading(): void }) {
    if (!(cfg.leaseDurationSeconds > cfg.renewDeadlineSeconds && cfg.renewDeadlineSeconds > cfg.retryPeriodSeconds && cfg.retryPeriodSeconds > 0)) {
      throw new Error(`leader election needs lease duration (${cfg.leaseDurationSeconds}s) > renew deadline (${cfg.renewDeadlineSeconds}s) > retry period (${cfg.retryPeriodSeconds}s) > 0`);
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.cfg.retryPeriodSeconds * 1000);
  }

  /** Stops campaigning; a leader releases the Lease so another takes over at once rather than after leaseDuration. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = this.store.get('leases', this.cfg.namespace, this.cfg.name);
      if (lease?.spec?.holderIdentity === this.cfg.identity) {
        this.client.update('leases', this.cfg.namespace, { ...lease, spec: { ...lease.spec, holderIdentity: '', renewTime: micro(Date.now()) } });
      }
    } catch (err) {
      this.log.warn({ err }, 'could not release the leader Lease; another candidate takes it when it expires');
    }
  }

  private tick(): void {
    let ok = false;
    try {
      ok = this.tryAcquireOrRenew(Date.now());
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'leader election: Lease write failed');
    }
    if (ok) {
      this.lastRenewed = Date.now();
      if (!this.leading) this.setLeading(true);
    } else if (this.leading && Date.now() - this.lastRenewed > this.cfg.renewDeadlineSeconds * 1000) {
      this.log.error({ identity: this.cfg.identity }, 'leader election lost: the Lease was not renewed within the renew deadline');
      this.setLeading(false);
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.log.info({ identity: this.cfg.identity, lease: `${this.cfg.namespace}/${this.cfg.name}` }, leading ? 'became leader: starting controllers and the scheduler' : 'stopped leading: controllers and the scheduler stopped');
    try {
      if (leading) this.callbacks.startedLeading();
      else this.callbacks.stoppedLeading();
    } catch (err) {
      this.log.error({ err }, 'leader election callback failed');
    }
  }

  /** One round of client-go's tryAcquireOrRenew; true when this candidate holds the Lease afterwards. */
  private tryAcquireOrRenew(now: number): boolean {
    const { namespace, name, identity, leaseDurationSeconds } = this.cfg;
    const lease = this.store.get('leases', namespace, name);
    if (!lease) {
      this.client.create('leases', namespace, {
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: micro(now), renewTime: micro(now), leaseTransitions: 0 },
      });
      return true;
    }
    const rv = lease.metadata.resourceVersion as string;
    if (rv !== this.observedRv) {
      this.observedRv = rv;
      this.observedAt = now;
    }
    const holder: string = lease.spec?.holderIdentity ?? '';
    const duration = (lease.spec?.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (holder && holder !== identity && this.observedAt + duration > now) return false;
    const spec: KObj = { ...lease.spec, holderIdentity: identity, leaseDurationSeconds, renewTime: micro(now) };
    if (holder !== identity) {
      spec.acquireTime = micro(now);
      spec.leaseTransitions = (lease.spec?.leaseTransitions ?? 0) + 1;
    }
    const updated = this.client.update('leases', namespace, { ...lease, spec });
    this.observedRv = updated.metadata.resourceVersion;
    this.observedAt = now;
    return true;
  }
}

/** metav1.MicroTime as the API writes it. */
function micro(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

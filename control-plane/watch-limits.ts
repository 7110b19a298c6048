/**
 * Bounds on open watches. Each watch holds a connection, a store listener and
 * buffers, so without a bound one client can exhaust the control plane.
 * kube-apiserver bounds long-running requests through its inflight limits and
 * gives every watch a lifetime (--min-request-timeout, 1800 s, randomised up
 * to twice that so clients do not reconnect in lockstep); this does the same.
 */
export interface WatchLimitOptions {
  maxTotal: number;
  maxPerClient: number;
  /** A watch ends after at most this many seconds, whatever timeoutSeconds asks. */
  maxTimeoutSeconds: number;
}

export const DEFAULT_WATCH_LIMITS: WatchLimitOptions = { maxTotal: 2000, maxPerClient: 250, maxTimeoutSeconds: 3600 };

export class WatchLimits {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(readonly opts: WatchLimitOptions = DEFAULT_WATCH_LIMITS) {}

  /** A release function for the slot, or why there is none. */
  acquire(client: string): { release: () => void } | { refused: string } {
    const mine = this.perClient.get(client) ?? 0;
    if (this.total >= this.opts.maxTotal) return { refused: `too many watches open on the server (${this.opts.maxTotal}); try again later` };
    if (mine >= this.opts.maxPerClient) return { refused: `too many watches open by this client (${this.opts.maxPerClient}); close some and try again` };
    this.total++;
    this.perClient.set(client, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = (this.perClient.get(client) ?? 1) - 1;
        if (left > 0) this.perClient.set(client, left);
        else this.perClient.delete(client);
      },
    };
  }

  /** The watch's lifetime in seconds: the asked timeoutSeconds capped, or a random one in [max/2, max]. */
  timeoutSeconds(asked: number | undefined): number {
    const max = this.opts.maxTimeoutSeconds;
    if (asked !== undefined && asked > 0) return Math.min(asked, max);
    return Math.round((max / 2) * (1 + Math.random()));
  }
}

/**
 * Cluster IPs from the service CIDR and node ports from the node-port range,
 * as kube-apiserver's allocators hand them out. What is taken is read from the
 * stored Services on every allocation (the store is the only record: nothing
 * to repair after a crash or restart, no bitmap that can drift from the
 * objects). Writes are synchronous in this process, so two creates cannot
 * pick the same address.
 */
import { randomInt } from 'node:crypto';
import { UserError } from '../common/errors.js';
import type { Cause } from './resources.js';
import type { KObj } from './store.js';
import { HEADLESS, hasNodePorts } from './kinds/services.js';

export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';
export const DEFAULT_NODE_PORT_RANGE = '30000-32767';

export interface ServiceReader { list(resource: string, namespace?: string): KObj[] }

const ipToInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const intToIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

export interface Cidr { base: number; size: number; text: string }

/** An IPv4 CIDR of at least 8 addresses (the network and broadcast addresses are never given out). */
export function parseServiceCidr(text: string): Cidr {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(text);
  const bits = m ? Number(m[2]) : NaN;
  if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || bits < 8 || bits > 29) {
    throw new UserError(`invalid service CIDR "${text}"`, { hint: 'give an IPv4 CIDR between /8 and /29 that does not overlap the pod CIDR, e.g. 10.96.0.0/16' });
  }
  const size = 2 ** (32 - bits);
  const base = ipToInt(m[1]!) - (ipToInt(m[1]!) % size);
  return { base, size, text: `${intToIp(base)}/${bits}` };
}

export function parsePortRange(text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text);
  const lo = Number(m?.[1]), hi = Number(m?.[2]);
  if (!m || lo < 1 || hi > 65535 || lo > hi) throw new UserError(`invalid node port range "${text}"`, { hint: 'give FIRST-LAST, e.g. 30000-32767' });
  return [lo, hi];
}

export class ServiceAllocator {
  readonly cidr: Cidr;
  readonly ports: [number, number];

  constructor(private readonly services: ServiceReader, cidr = DEFAULT_SERVICE_CIDR, portRange = DEFAULT_NODE_PORT_RANGE) {
    this.cidr = parseServiceCidr(cidr);
    this.ports = parsePortRange(portRange);
  }

  inRange(ip: string): boolean {
    const n = ipToInt(ip);
    return n > this.cidr.base && n < this.cidr.base + this.cidr.size - 1;
  }

  private used(except?: KObj): { ips: Set<string>; ports: Set<number> } {
    const ips = new Set<string>();
    const ports = new Set<number>();
    for (const s of this.services.list('services')) {
      if (except && s.metadata.uid === except.metadata?.uid) continue;
      if (s.spec?.clusterIP && s.spec.clusterIP !== HEADLESS) ips.add(s.spec.clusterIP);
      for (const p of s.spec?.ports ?? []) if (p.nodePort) ports.add(p.nodePort);
    }
    return { ips, ports };
  }

  /**
   * Fill in (or check) the cluster IP and node ports of a Service being created or updated
   * (`cur`: the stored one). Returns the causes of a refusal (422), nothing allocated then.
   */
  assign(svc: KObj, cur?: KObj): Cause[] {
    const spec = svc.spec;
    const causes: Cause[] = [];
    if (spec.type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
      for (const p of spec.ports ?? []) delete p.nodePort;
      return causes;
    }
    const { ips, ports } = this.used(cur ?? svc);
    const keepIp = cur && cur.spec?.type !== 'ExternalName' ? cur.spec?.clusterIP : undefined;
    const asked: string | undefined = spec.clusterIP || undefined;
    if (asked === HEADLESS) {
      spec.clusterIPs = [HEADLESS];
    } else if (asked && asked === keepIp) {
      spec.clusterIPs = [asked];
    } else if (asked) {
      if (!this.inRange(asked)) causes.push({ field: 'spec.clusterIPs', reason: 'FieldValueInvalid', message: `Invalid value: ["${asked}"]: failed to allocate IP ${asked}: the provided IP (${asked}) is not in the valid range. The range of valid IPs is ${this.cidr.text}` });
      else if (ips.has(asked)) causes.push({ field: 'spec.clusterIPs', reason: 'FieldValueInvalid', message: `Invalid value: ["${asked}"]: failed to allocate IP ${asked}: provided IP is already allocated` });
      else spec.clusterIPs = [asked];
    } else {
      const ip = this.freeIp(ips);
      if (!ip) causes.push({ field: 'spec.clusterIPs', reason: 'FieldValueInvalid', message: `Invalid value: []: failed to allocate a serviceIP: range is full (${this.cidr.text}); delete Services or start the control plane with a larger --service-cluster-ip-range` });
      else {
        spec.clusterIP = ip;
        spec.clusterIPs = [ip];
      }
    }
    const [lo, hi] = this.ports;
    (spec.ports ?? []).forEach((p: KObj, i: number) => {
      if (!hasNodePorts(svc)) {
        delete p.nodePort;
        return;
      }
      const mine = (cur?.spec?.ports ?? []).some((o: KObj) => o.nodePort && o.nodePort === p.nodePort);
      if (p.nodePort && mine) return;
      if (p.nodePort) {
        if (p.nodePort < lo || p.nodePort > hi) causes.push({ field: `spec.ports[${i}].nodePort`, reason: 'FieldValueInvalid', message: `Invalid value: ${p.nodePort}: provided port is not in the valid range. The range of valid ports is ${lo}-${hi}` });
        else if (ports.has(p.nodePort)) causes.push({ field: `spec.ports[${i}].nodePort`, reason: 'FieldValueInvalid', message: `Invalid value: ${p.nodePort}: provided port is already allocated` });
        else ports.add(p.nodePort);
        return;
      }
      const port = this.freePort(ports);
      if (port === undefined) causes.push({ field: `spec.ports[${i}].nodePort`, reason: 'FieldValueInvalid', message: `Invalid value: 0: failed to allocate a nodePort: range is full (${lo}-${hi})` });
      else {
        p.nodePort = port;
        ports.add(port);
      }
    });
    return causes;
  }

  /** A random free address (random like kube's allocator, so a deleted Service's IP is not reused at once). */
  private freeIp(used: Set<string>): string | undefined {
    const first = this.cidr.base + 1, count = this.cidr.size - 2;
    if (used.size >= count) return undefined;
    for (let i = 0; i < 64; i++) {
      const ip = intToIp(first + randomInt(count));
      if (!used.has(ip)) return ip;
    }
    const start = randomInt(count);
    for (let i = 0; i < count; i++) {
      const ip = intToIp(first + ((start + i) % count));
      if (!used.has(ip)) return ip;
    }
    return undefined;
  }

  private freePort(used: Set<number>): number | undefined {
    const [lo, hi] = this.ports;
    const count = hi - lo + 1;
    const start = randomInt(count);
    for (let i = 0; i < count; i++) {
      const p = lo + ((start + i) % count);
      if (!used.has(p)) return p;
    }
    return undefined;
  }
}

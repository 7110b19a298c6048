import type * as https from 'node:https';
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { UserError } from '../common/errors.js';

export interface KubeClients {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
  node: k8s.NodeV1Api;
}

export function kubeClients(kubeconfigPath: string): KubeClients {
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(kubeconfigPath);
  } catch (err) {
    throw new UserError(`cannot load kubeconfig ${kubeconfigPath}: ${(err as Error).message}`, { hint: 'pass --kubeconfig with the file the control plane wrote for nodes' });
  }
  reuseConnections(kc, controlPlanesOf(kubeconfigPath, kc));
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api), coordination: kc.makeApiClient(k8s.CoordinationV1Api), node: kc.makeApiClient(k8s.NodeV1Api) };
}

/**
 * client-node makes a new https.Agent for every request, so every call (each status patch,
 * event and Lease renewal) opened its own TLS connection with a client-certificate handshake:
 * CPU on both ends, and the latency of a handshake per call. One keep-alive agent per
 * kubeconfig keeps connections open between calls, as the kubelet's one HTTP/2 connection does.
 */
function reuseConnections(kc: k8s.KubeConfig, controlPlanes: URL[]): void {
  const config = kc as unknown as { createAgent(cluster: unknown, options: https.AgentOptions): https.Agent };
  const make = config.createAgent.bind(kc);
  let agent: https.Agent | undefined;
  config.createAgent = (cluster, options) => {
    if (agent) return agent;
    agent = make(cluster, { ...options, keepAlive: true, ...sharedSecureContext(options) });
    if (controlPlanes.length > 1) failOver(agent, controlPlanes);
    return agent;
  };
}

/**
 * The control planes a kubeconfig lists in its cluster's `stevedore.io/control-planes` extension
 * (`up --control-planes 3` writes it: control-plane/pki.ts), the server first; empty when it lists none.
 * client-node drops cluster extensions when it loads a kubeconfig, so the file is read again here.
 */
function controlPlanesOf(kubeconfigPath: string, kc: k8s.KubeConfig): URL[] {
  try {
    const doc = YAML.parse(readFileSync(kubeconfigPath, 'utf8')) as { clusters?: Array<{ name?: string; cluster?: { extensions?: Array<{ name?: string; extension?: { servers?: unknown } }> } }> };
    const cluster = doc.clusters?.find((c) => c.name === kc.getCurrentCluster()?.name);
    const servers = cluster?.cluster?.extensions?.find((e) => e.name === 'stevedore.io/control-planes')?.extension?.servers;
    if (!Array.isArray(servers)) return [];
    return servers.map((s) => new URL(String(s)));
  } catch (err) {
    throw new UserError(`cannot read the control planes listed in kubeconfig ${kubeconfigPath}: ${(err as Error).message}`, { hint: 'its stevedore.io/control-planes extension must list https:// URLs' });
  }
}

const DIAL_TIMEOUT_MS = 3000;

/**
 * Client-side failover over several control planes, as k3s's agents keep a list of servers: each new
 * connection of the pool dials the control plane that answered last, and on a refused connection,
 * a TLS failure or no answer within 3 s, the next one in the list. They serve the same certificate
 * (its SANs are addresses, not ports), so the TLS check is the same whichever answers. Connections
 * already open stay on theirs until it closes them (it died): the call in flight fails, the next
 * one dials again. Node's http.Agent accepts a connection handed over later through the callback.
 */
function failOver(agent: https.Agent, servers: URL[]): void {
  type Create = (options: https.RequestOptions & net.TcpNetConnectOpts, callback?: (err: Error | null, socket?: net.Socket) => void) => net.Socket | undefined;
  const pooled = agent as unknown as { createConnection: Create };
  const dial = pooled.createConnection.bind(agent);
  let preferred = 0;
  pooled.createConnection = (options, callback) => {
    let attempt = 0;
    const next = (lastError?: Error) => {
      if (attempt >= servers.length) { callback?.(lastError ?? new Error('no control plane answered')); return; }
      const index = (preferred + attempt++) % servers.length;
      const target = servers[index]!;
      const socket = dial({ ...options, host: target.hostname, port: Number(target.port || 443) });
      if (!socket) { next(new Error('no socket')); return; }
      const timer = setTimeout(() => socket.destroy(new Error(`${target.host} did not answer within ${DIAL_TIMEOUT_MS / 1000} s`)), DIAL_TIMEOUT_MS);
      const failed = (err: Error) => {
        clearTimeout(timer);
        socket.removeListener('secureConnect', connected);
        socket.destroy();
        next(err);
      };
      const connected = () => {
        clearTimeout(timer);
        socket.removeListener('error', failed);
        preferred = index;
        callback?.(null, socket);
      };
      socket.once('error', failed);
      socket.once('secureConnect', connected);
    };
    next();
    return undefined;
  };
}

/**
 * One TLS context (CA, client certificate and key) for every connection of the agent: given only
 * the PEMs, each new socket builds its own context and parses the private key again, which was most
 * of a hollow node's CPU while 1000 pods started (every concurrent call opens a connection).
 * Verification is unchanged: the CA is the context's, and rejectUnauthorized/servername stay options.
 */
function sharedSecureContext(options: https.AgentOptions): { secureContext?: tls.SecureContext } {
  if (options.secureContext || options.pfx || !(options.ca || options.cert || options.key)) return {};
  return { secureContext: tls.createSecureContext({ ca: options.ca, cert: options.cert, key: options.key, passphrase: options.passphrase }) };
}

export const patchAs = (type: 'merge' | 'strategic') =>
  k8s.setHeaderOptions('Content-Type', type === 'merge' ? k8s.PatchStrategy.MergePatch : k8s.PatchStrategy.StrategicMergePatch);

/** HTTP status of a client-node error, if it came from the API server. */
export function apiStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** MicroTime as the API server formats it (microseconds, six digits). */
export function microTime(ms = Date.now()): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

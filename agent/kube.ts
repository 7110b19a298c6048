import type * as https from 'node:https';
import * as tls from 'node:tls';
import * as k8s from '@kubernetes/client-node';
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
  reuseConnections(kc);
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api), coordination: kc.makeApiClient(k8s.CoordinationV1Api), node: kc.makeApiClient(k8s.NodeV1Api) };
}

/**
 * client-node makes a new https.Agent for every request, so every call (each status patch,
 * event and Lease renewal) opened its own TLS connection with a client-certificate handshake:
 * CPU on both ends, and the latency of a handshake per call. One keep-alive agent per
 * kubeconfig keeps connections open between calls, as the kubelet's one HTTP/2 connection does.
 */
function reuseConnections(kc: k8s.KubeConfig): void {
  const config = kc as unknown as { createAgent(cluster: unknown, options: https.AgentOptions): unknown };
  const make = config.createAgent.bind(kc);
  let agent: unknown;
  config.createAgent = (cluster, options) => (agent ??= make(cluster, { ...options, keepAlive: true, ...sharedSecureContext(options) }));
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

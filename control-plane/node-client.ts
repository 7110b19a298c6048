/**
 * How the control plane connects to a node API (the kubelet's port): verified TLS with the
 * cluster CA as the only trust root, the node's serving certificate checked against the address
 * the control plane dials (the Node's InternalIP) and against the node's name, and the control
 * plane's own client certificate. The request (path, headers) is written only after the
 * handshake has verified the peer, so an address that a Node's status names but that is not that
 * node learns nothing but the TLS handshake.
 */
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { RequestOptions } from 'node:https';
import { NODE_USER_PREFIX } from './pki.js';

export interface NodeClientTls {
  caCertPem: string;
  clientCertPem: string;
  clientKeyPem: string;
}

const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

/** Why `cert` is not the serving certificate of node `nodeName` at `host`, or undefined if it is. */
export function nodeServingCertProblem(nodeName: string, host: string, cert: tls.PeerCertificate): Error | undefined {
  const mismatch = tls.checkServerIdentity(host, cert);
  if (mismatch) return new Error(`x509: the certificate is not valid for ${host}: ${mismatch.message}`);
  if (!(cert.ext_key_usage ?? []).includes(SERVER_AUTH_OID)) return new Error('x509: the certificate is not for server authentication (no serverAuth extended key usage)');
  const want = `${NODE_USER_PREFIX}${nodeName}`;
  if (cert.subject?.CN !== want) return new Error(`x509: the certificate is issued to "${String(cert.subject?.CN ?? '')}", not to node ${nodeName} ("${want}")`);
  return undefined;
}

/** https.request options for `path` on node `nodeName` at host:port. */
export function nodeRequestOptions(nodeName: string, host: string, port: number, path: string, creds: NodeClientTls): RequestOptions {
  return {
    host, port, path, method: 'GET',
    ca: creds.caCertPem, cert: creds.clientCertPem, key: creds.clientKeyPem,
    rejectUnauthorized: true,
    // No connection reuse across nodes: each verification is for one node name and address.
    agent: false,
    checkServerIdentity: (_host, cert) => nodeServingCertProblem(nodeName, host, cert),
    headers: { Accept: '*/*' },
  };
}

const TLS_VERIFY_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE']);

/** True when a connection error means the peer failed verification (not that it was unreachable). */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  return TLS_VERIFY_CODES.has(code) || /x509|certificate/i.test((err as Error)?.message ?? '');
}

/** Where a registered Node's API answers: its InternalIP (else Hostname, else first address) and kubelet port. */
export function nodeEndpoint(node: { status?: { addresses?: Array<{ type?: string; address?: string }>; daemonEndpoints?: { kubeletEndpoint?: { Port?: number } } } }): { ip?: string; port: number } {
  const addrs = node.status?.addresses ?? [];
  const ip = (addrs.find((a) => a.type === 'InternalIP') ?? addrs.find((a) => a.type === 'Hostname') ?? addrs[0])?.address;
  const port = Number(node.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 10250) || 10250;
  return { ip, port };
}

/** GET a JSON document from a node API (verified as above); rejects on a non-2xx answer, a bad certificate or the timeout. */
export function fetchNodeJson(nodeName: string, host: string, port: number, path: string, creds: NodeClientTls, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = https.request({ ...nodeRequestOptions(nodeName, host, port, path, creds), timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300) return reject(new Error(`node ${nodeName} answered ${res.statusCode} for ${path}: ${text.trim().slice(0, 300)}`));
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new Error(`node ${nodeName} answered ${path} with something that is not JSON`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`node ${nodeName} did not answer ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

import type { IncomingMessage } from 'node:http';
import type { TLSSocket, PeerCertificate } from 'node:tls';
import { timingSafeEqual } from 'node:crypto';

/** Who made a request, as kube-apiserver's authenticators report it. */
export interface UserInfo {
  name: string;
  groups: string[];
  /** A ServiceAccount's uid (token users). */
  uid?: string;
  /** Extra attributes an authenticator adds (a bound token's pod name and uid, its credential id). */
  extra?: Record<string, string[]>;
}

/** Bearer tokens other than the admin's: ServiceAccount tokens (serviceaccount-tokens.ts). */
export interface TokenAuthenticator {
  authenticate(token: string): UserInfo | undefined;
}

export const MASTERS_GROUP = 'system:masters';
const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/** The admin token's user: what kubeadm's admin.conf is (cluster-admin through system:masters). */
const ADMIN: UserInfo = { name: 'admin', groups: [MASTERS_GROUP, 'system:authenticated'] };

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/**
 * A client certificate the TLS layer verified against the cluster CA (the server asks for one
 * but lets clients without one in, for the admin token): user = CN, groups = O, as
 * kube-apiserver's x509 authenticator. The certificate must be meant for clients (extended key
 * usage clientAuth), so a node's serving certificate cannot stand in for its client one.
 */
function fromCertificate(req: IncomingMessage): UserInfo | undefined {
  const socket = req.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function' || !socket.authorized) return undefined;
  // A connection's certificate is fixed once the handshake is done: read it once per connection
  // (getPeerCertificate builds the whole certificate object each time; agents send many calls per connection).
  if (certificateUsers.has(socket)) return certificateUsers.get(socket);
  const user = userOfCertificate(socket.getPeerCertificate());
  certificateUsers.set(socket, user);
  return user;
}

const certificateUsers = new WeakMap<TLSSocket, UserInfo | undefined>();

function userOfCertificate(cert: PeerCertificate): UserInfo | undefined {
  const cn = cert?.subject?.CN;
  if (!cn || typeof cn !== 'string') return undefined;
  if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH_OID)) return undefined;
  return { name: cn, groups: [...asList(cert.subject.O), 'system:authenticated'] };
}

function fromBearerToken(req: IncomingMessage, adminToken: string, tokens?: TokenAuthenticator): UserInfo | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return undefined;
  const got = Buffer.from(m[1]!);
  const want = Buffer.from(adminToken);
  if (got.length === want.length && timingSafeEqual(got, want)) return ADMIN;
  return tokens?.authenticate(m[1]!);
}

/** The request's user, or undefined (the caller answers 401, as kube-apiserver without anonymous auth). */
export function authenticate(req: IncomingMessage, adminToken: string, tokens?: TokenAuthenticator): UserInfo | undefined {
  return fromCertificate(req) ?? fromBearerToken(req, adminToken, tokens);
}

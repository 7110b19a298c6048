/**
 * Bound ServiceAccount tokens, as kube-apiserver issues them for TokenRequest
 * (`POST …/serviceaccounts/NAME/token`, `kubectl create token`) and accepts them as bearer
 * tokens: a JWS (ES256, the key in `<data dir>/pki/sa.key`, made at first start; its `kid` the
 * base64url SHA-256 of the public key's DER) with the claims
 * `iss` (https://kubernetes.default.svc.cluster.local), `sub` (`system:serviceaccount:NS:NAME`),
 * `aud`, `exp`, `iat`, `nbf`, `jti` and `kubernetes.io: { namespace, serviceaccount: {name, uid},
 * pod?: {name, uid}, node?: {name, uid} }`. A token stops working when its ServiceAccount (or
 * bound pod) is deleted or replaced by one with another uid, or when it expires.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { exists } from '../common/fsutil.js';
import type { UserInfo } from './authn.js';
import type { ObjectReader } from './node-authorizer.js';
import { SERVICE_ACCOUNT_PREFIX } from './rbac-authorizer.js';

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
/** kube-apiserver's --api-audiences default: the issuer. A token for other audiences is not accepted here. */
export const API_AUDIENCES = [SERVICE_ACCOUNT_ISSUER];
export const DEFAULT_EXPIRATION_SECONDS = 3600;
export const MIN_EXPIRATION_SECONDS = 600;
/** A pod may stay a little after its deletion started; its tokens then stop (kube's 60 s). */
const DELETED_POD_GRACE_MS = 60_000;

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export interface IssueRequest {
  namespace: string;
  serviceAccount: { name: string; uid: string };
  audiences: string[];
  expirationSeconds: number;
  pod?: { name: string; uid: string };
  node?: { name: string; uid: string };
}

export class ServiceAccountTokens {
  private readonly kid: string;

  private constructor(private readonly privateKey: KeyObject, readonly publicKey: KeyObject) {
    this.kid = b64url(createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest());
  }

  /** The signing key from `pkiDir/sa.key` (and `sa.pub`), made on first use (0600). */
  static async load(pkiDir: string): Promise<ServiceAccountTokens> {
    const keyFile = path.join(pkiDir, 'sa.key');
    if (!(await exists(keyFile))) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      await fs.writeFile(`${keyFile}.tmp`, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      await fs.rename(`${keyFile}.tmp`, keyFile);
      await fs.writeFile(path.join(pkiDir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
    }
    const privateKey = createPrivateKey(await fs.readFile(keyFile, 'utf8'));
    return new ServiceAccountTokens(privateKey, createPublicKey(privateKey));
  }

  issue(r: IssueRequest, nowMs = Date.now()): { token: string; expirationTimestamp: string } {
    const iat = Math.floor(nowMs / 1000);
    const exp = iat + r.expirationSeconds;
    const claims = {
      aud: r.audiences,
      exp, iat, nbf: iat,
      iss: SERVICE_ACCOUNT_ISSUER,
      jti: randomUUID(),
      'kubernetes.io': {
        namespace: r.namespace,
        ...(r.node ? { node: r.node } : {}),
        ...(r.pod ? { pod: r.pod } : {}),
        serviceaccount: r.serviceAccount,
      },
      sub: `${SERVICE_ACCOUNT_PREFIX}${r.namespace}:${r.serviceAccount.name}`,
    };
    const signingInput = `${b64url(JSON.stringify({ alg: 'ES256', kid: this.kid }))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key: this.privateKey, dsaEncoding: 'ieee-p1363' });
    return { token: `${signingInput}.${b64url(signature)}`, expirationTimestamp: new Date(exp * 1000).toISOString().replace(/\.\d+Z$/, 'Z') };
  }

  /**
   * The ServiceAccount a bearer token stands for, or undefined when it is not one of ours, is
   * expired, is for other audiences, or names objects that are gone (kube's token validator).
   */
  authenticate(token: string, objects: ObjectReader, nowMs = Date.now()): UserInfo | undefined {
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    let header: any, claims: any;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (header?.alg !== 'ES256' || (header.kid !== undefined && header.kid !== this.kid)) return undefined;
    const ok = verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), { key: this.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(parts[2]!, 'base64url'));
    if (!ok || claims?.iss !== SERVICE_ACCOUNT_ISSUER) return undefined;
    const now = Math.floor(nowMs / 1000);
    if (typeof claims.exp !== 'number' || claims.exp <= now) return undefined;
    if (typeof claims.nbf === 'number' && claims.nbf > now + 60) return undefined;
    const aud: string[] = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.some((a) => API_AUDIENCES.includes(a))) return undefined;
    const k = claims['kubernetes.io'];
    const ns = k?.namespace, sa = k?.serviceaccount;
    if (typeof ns !== 'string' || typeof sa?.name !== 'string') return undefined;
    const account = objects.get('serviceaccounts', ns, sa.name);
    if (!account || account.metadata.uid !== sa.uid || account.metadata.deletionTimestamp) return undefined;
    const extra: Record<string, string[]> = { 'authentication.kubernetes.io/credential-id': [`JTI=${claims.jti}`] };
    if (k.pod) {
      const pod = objects.get('pods', ns, String(k.pod.name));
      if (!pod || pod.metadata.uid !== k.pod.uid) return undefined;
      const deleting = pod.metadata.deletionTimestamp ? Date.parse(pod.metadata.deletionTimestamp) : NaN;
      if (deleting < nowMs - DELETED_POD_GRACE_MS) return undefined;
      extra['authentication.kubernetes.io/pod-name'] = [k.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [k.pod.uid];
    }
    if (k.node) {
      extra['authentication.kubernetes.io/node-name'] = [k.node.name];
      extra['authentication.kubernetes.io/node-uid'] = [k.node.uid];
    }
    return {
      name: `${SERVICE_ACCOUNT_PREFIX}${ns}:${sa.name}`,
      uid: sa.uid,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
      extra,
    };
  }

  /** The OpenID discovery document and key set (`/.well-known/openid-configuration`, `/openid/v1/jwks`). */
  openidConfiguration(): object {
    return { issuer: SERVICE_ACCOUNT_ISSUER, jwks_uri: `${SERVICE_ACCOUNT_ISSUER}/openid/v1/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['ES256'] };
  }

  jwks(): object {
    return { keys: [{ ...this.publicKey.export({ format: 'jwk' }), use: 'sig', kid: this.kid, alg: 'ES256' }] };
  }
}

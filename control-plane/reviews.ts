/**
 * The create-only APIs that answer from the request and store nothing, as kube-apiserver's:
 *
 * - authorization.k8s.io/v1 SelfSubjectAccessReview (`kubectl auth can-i VERB RESOURCE`),
 *   SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview and
 *   LocalSubjectAccessReview (the same question about someone else, for admins; `kubectl auth can-i
 *   --as` impersonates instead: rbac-authorizer.ts `impersonate`);
 * - authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`);
 * - the TokenRequest subresource of ServiceAccounts (`kubectl create token`).
 */
import { ApiError, invalid, type Cause, type ResourceDef } from './resources.js';
import type { KObj } from './store.js';
import type { UserInfo } from './authn.js';
import { serviceAccountOf, type ObjectReader } from './node-authorizer.js';
import { decide, rulesFor, type Attributes } from './rbac-authorizer.js';
import { API_AUDIENCES, DEFAULT_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS, type ServiceAccountTokens } from './serviceaccount-tokens.js';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown) => (typeof v === 'string' ? v : '');

function checkKind(r: ResourceDef, body: unknown, apiVersion: string): KObj {
  if (!isObj(body)) throw new ApiError(400, 'BadRequest', `the request body must be a ${r.kind} object`);
  if (body.kind !== undefined && body.kind !== r.kind) throw new ApiError(400, 'BadRequest', `the request body is a ${body.kind}; ${r.name} takes a ${r.kind}`);
  if (body.apiVersion !== undefined && body.apiVersion !== apiVersion) throw new ApiError(400, 'BadRequest', `the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersion})`);
  return body;
}

/** The request attributes an access review asks about (exactly one of resourceAttributes and nonResourceAttributes). */
function attributesOf(r: ResourceDef, spec: KObj, namespace?: string): Attributes {
  const ra = spec.resourceAttributes, nra = spec.nonResourceAttributes;
  if (isObj(ra) === isObj(nra)) {
    throw invalid({ ...r, group: 'authorization.k8s.io' }, '', [{ field: 'spec.resourceAttributes', reason: 'FieldValueInvalid', message: 'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified' }]);
  }
  if (isObj(nra)) return { verb: str(nra.verb), path: str(nra.path) };
  const ns = str(ra.namespace);
  if (namespace !== undefined && ns && ns !== namespace) {
    throw invalid({ ...r, group: 'authorization.k8s.io' }, '', [{ field: 'spec.resourceAttributes.namespace', reason: 'FieldValueInvalid', message: `Invalid value: "${ns}": must be the namespace of the LocalSubjectAccessReview ("${namespace}")` }]);
  }
  return {
    verb: str(ra.verb), group: str(ra.group), resource: str(ra.resource),
    ...(ra.subresource ? { subresource: str(ra.subresource) } : {}),
    namespace: namespace ?? ns,
    ...(ra.name ? { name: str(ra.name) } : {}),
  };
}

function accessReviewStatus(user: UserInfo, a: Attributes, objects: ObjectReader): KObj {
  const d = decide(user, a, objects);
  return { allowed: d.allowed, ...(d.reason ? { reason: d.reason } : {}) };
}

/** Answer one review create (the caller has authorized `create` on it). */
export function reviewRequest(r: ResourceDef, namespace: string, sent: unknown, user: UserInfo, objects: ObjectReader): KObj {
  const apiVersion = `${r.group}/${r.version}`;
  const body = checkKind(r, sent, apiVersion);
  const spec: KObj = isObj(body.spec) ? body.spec : {};
  const meta = { ...(isObj(body.metadata) ? body.metadata : {}), creationTimestamp: null, ...(r.namespaced ? { namespace } : {}) };
  const answer = (status: KObj, withSpec = true) => ({ kind: r.kind, apiVersion, metadata: meta, ...(withSpec ? { spec } : {}), status });
  switch (r.kind) {
    case 'SelfSubjectAccessReview':
      return answer(accessReviewStatus(user, attributesOf(r, spec), objects));
    case 'SubjectAccessReview':
    case 'LocalSubjectAccessReview': {
      const causes: Cause[] = [];
      if (!spec.user && !(Array.isArray(spec.groups) && spec.groups.length)) causes.push({ field: 'spec.user', reason: 'FieldValueInvalid', message: 'Invalid value: "": at least one of user or group must be specified' });
      if (causes.length) throw invalid({ ...r, group: 'authorization.k8s.io' }, '', causes);
      const subject: UserInfo = { name: str(spec.user), groups: Array.isArray(spec.groups) ? spec.groups.map(String) : [], ...(spec.uid ? { uid: str(spec.uid) } : {}) };
      return answer(accessReviewStatus(subject, attributesOf(r, spec, r.kind === 'LocalSubjectAccessReview' ? namespace : undefined), objects));
    }
    case 'SelfSubjectRulesReview': {
      if (!str(spec.namespace)) {
        throw invalid({ ...r, group: 'authorization.k8s.io' }, '', [{ field: 'spec.namespace', reason: 'FieldValueRequired', message: 'Required value: no namespace on request' }]);
      }
      const rules = rulesFor(user, str(spec.namespace), objects);
      return answer({ resourceRules: rules.resourceRules, nonResourceRules: rules.nonResourceRules, incomplete: rules.incomplete, ...(rules.evaluationError ? { evaluationError: rules.evaluationError } : {}) });
    }
    case 'SelfSubjectReview':
      return answer({ userInfo: { username: user.name, ...(user.uid ? { uid: user.uid } : {}), groups: user.groups, ...(user.extra ? { extra: user.extra } : {}) } }, false);
    default:
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
  }
}

/**
 * TokenRequest: a signed token for the ServiceAccount, for `audiences` (default: this API
 * server), `expirationSeconds` (default 3600, at least 600), optionally bound to a Pod, Secret
 * or Node that must exist (and have the uid given); a pod's node is named in the token too.
 */
export function tokenRequest(namespace: string, name: string, sent: unknown, objects: ObjectReader, tokens: ServiceAccountTokens, _dryRun: boolean): KObj {
  const tr: ResourceDef = { name: 'serviceaccounts', singular: '', kind: 'TokenRequest', group: 'authentication.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: {} as never };
  const body = checkKind(tr, sent, 'authentication.k8s.io/v1');
  const sa = objects.get('serviceaccounts', namespace, name);
  if (!sa) throw new ApiError(404, 'NotFound', `serviceaccounts "${name}" not found`, { name, kind: 'serviceaccounts' });
  const spec: KObj = isObj(body.spec) ? structuredClone(body.spec) : {};
  spec.expirationSeconds ??= DEFAULT_EXPIRATION_SECONDS;
  if (!Array.isArray(spec.audiences) || spec.audiences.length === 0) spec.audiences = [...API_AUDIENCES];
  const causes: Cause[] = [];
  const exp = spec.expirationSeconds;
  if (typeof exp !== 'number' || !Number.isInteger(exp)) causes.push({ field: 'spec.expirationSeconds', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(exp)}: must be a whole number of seconds` });
  else if (exp < MIN_EXPIRATION_SECONDS) causes.push({ field: 'spec.expirationSeconds', reason: 'FieldValueInvalid', message: `Invalid value: ${exp}: may not specify a duration less than 10 minutes` });
  else if (exp > 2 ** 32) causes.push({ field: 'spec.expirationSeconds', reason: 'FieldValueTooLong', message: `Invalid value: ${exp}: may not specify a duration larger than 2^32 seconds` });
  if (spec.audiences.some((a: unknown) => typeof a !== 'string' || !a)) causes.push({ field: 'spec.audiences', reason: 'FieldValueInvalid', message: 'Invalid value: audiences must be non-empty strings' });
  if (causes.length) throw invalid(tr, name, causes);

  let pod: { name: string; uid: string } | undefined;
  let node: { name: string; uid: string } | undefined;
  const ref = spec.boundObjectRef;
  if (isObj(ref)) {
    const kind = str(ref.kind), apiVersion = str(ref.apiVersion) || 'v1', refName = str(ref.name);
    let obj: KObj | undefined;
    if (apiVersion === 'v1' && kind === 'Pod') {
      obj = objects.get('pods', namespace, refName);
      if (!obj) throw new ApiError(404, 'NotFound', `pods "${refName}" not found`, { name: refName, kind: 'pods' });
      if (serviceAccountOf(obj) !== name) throw new ApiError(400, 'BadRequest', `cannot bind token for serviceaccount "${name}" to pod running with different serviceaccount name.`);
      pod = { name: refName, uid: obj.metadata.uid };
      const n = obj.spec?.nodeName ? objects.get('nodes', '', obj.spec.nodeName) : undefined;
      if (n) node = { name: n.metadata.name, uid: n.metadata.uid };
    } else if (apiVersion === 'v1' && kind === 'Secret') {
      obj = objects.get('secrets', namespace, refName);
      if (!obj) throw new ApiError(404, 'NotFound', `secrets "${refName}" not found`, { name: refName, kind: 'secrets' });
    } else if (apiVersion === 'v1' && kind === 'Node') {
      obj = objects.get('nodes', '', refName);
      if (!obj) throw new ApiError(404, 'NotFound', `nodes "${refName}" not found`, { name: refName, kind: 'nodes' });
      node = { name: refName, uid: obj.metadata.uid };
    } else {
      throw new ApiError(400, 'BadRequest', `cannot bind token to object of type ${apiVersion === 'v1' ? '' : apiVersion.split('/')[0]}/${apiVersion.split('/').pop()}, Kind=${kind}`);
    }
    if (ref.uid && ref.uid !== obj.metadata.uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${kind} "${refName}": the UID in the bound object reference (${ref.uid}) does not match the UID in record. The object might have been deleted and then recreated`);
    }
    spec.boundObjectRef = { kind, apiVersion, name: refName, uid: obj.metadata.uid };
  } else spec.boundObjectRef = null;
  const issued = tokens.issue({ namespace, serviceAccount: { name, uid: sa.metadata.uid }, audiences: spec.audiences, expirationSeconds: exp, pod, node });
  return {
    kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1',
    metadata: { name, namespace, creationTimestamp: null },
    spec,
    status: { token: issued.token, expirationTimestamp: issued.expirationTimestamp },
  };
}

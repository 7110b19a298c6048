/**
 * v1 Service, v1 Endpoints and discovery.k8s.io/v1 EndpointSlice: defaults and
 * validation as kube-apiserver's core and discovery strategies apply them, for
 * the parts this cluster implements (ClusterIP, NodePort, headless, session
 * affinity, traffic policies). What it does not implement (ExternalName's DNS
 * CNAME aside from storage, externalIPs, load balancers' source ranges, IPv6
 * services) is refused with a message naming the field, never dropped.
 * Cluster IPs and node ports are assigned by `service-allocator.ts`.
 */
import type { Cause } from '../resources.js';
import { DNS1123_LABEL } from '../resources.js';
import type { KObj } from '../store.js';
import type { KindStrategy } from './strategy.js';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
/** An IANA service name, as a container port's name (validation.IsValidPortName). */
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
export const HEADLESS = 'None';

export const isHeadless = (svc: KObj) => svc.spec?.clusterIP === HEADLESS;
/** Types that get node ports. */
export const hasNodePorts = (svc: KObj) => svc.spec?.type === 'NodePort' || svc.spec?.type === 'LoadBalancer';

/** SetDefaults_Service: type, sessionAffinity, ports' protocol and targetPort, traffic policies, IP families. */
export function defaultService(svc: KObj): void {
  const spec = (svc.spec ??= {});
  if (!isObj(spec)) return;
  spec.type ??= 'ClusterIP';
  if (spec.type === 'ExternalName') return;
  spec.sessionAffinity ??= 'None';
  if (spec.sessionAffinity === 'ClientIP') {
    spec.sessionAffinityConfig ??= {};
    if (isObj(spec.sessionAffinityConfig)) {
      spec.sessionAffinityConfig.clientIP ??= {};
      if (isObj(spec.sessionAffinityConfig.clientIP)) spec.sessionAffinityConfig.clientIP.timeoutSeconds ??= DEFAULT_AFFINITY_TIMEOUT_SECONDS;
    }
  }
  for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
    if (!isObj(p)) continue;
    p.protocol ??= 'TCP';
    if (p.targetPort === undefined || p.targetPort === 0 || p.targetPort === '') p.targetPort = p.port;
  }
  spec.internalTrafficPolicy ??= 'Cluster';
  if (hasNodePorts(svc)) spec.externalTrafficPolicy ??= 'Cluster';
  if (spec.type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;
  spec.ipFamilies ??= ['IPv4'];
  spec.ipFamilyPolicy ??= 'SingleStack';
}

const cause = (causes: Cause[], field: string, reason: string, message: string) => causes.push({ field, reason, message });
const notSupported = (causes: Cause[], field: string, value: unknown, supported: string[]) =>
  cause(causes, field, 'FieldValueNotSupported', `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported.map((s) => `"${s}"`).join(', ')}`);
const notImplemented = (causes: Cause[], field: string, what: string) =>
  cause(causes, field, 'FieldValueForbidden', `Forbidden: ${what} is not implemented by this cluster's service proxy; remove the field`);

function validPortNumber(n: unknown): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function validateTargetPort(tp: unknown, at: string, causes: Cause[]): void {
  if (typeof tp === 'number') {
    if (!validPortNumber(tp)) cause(causes, at, 'FieldValueInvalid', `Invalid value: ${tp}: must be between 1 and 65535, inclusive`);
  } else if (typeof tp === 'string') {
    if (/^\d+$/.test(tp)) {
      if (!validPortNumber(Number(tp))) cause(causes, at, 'FieldValueInvalid', `Invalid value: "${tp}": must be between 1 and 65535, inclusive`);
    } else if (tp.length > 15 || !PORT_NAME.test(tp) || !/[a-z]/.test(tp) || tp.includes('--')) {
      cause(causes, at, 'FieldValueInvalid', `Invalid value: "${tp}": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at least one letter, no more than 15 characters`);
    }
  } else cause(causes, at, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(tp)}: must be a port number or a port name`);
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
export const isIPv4 = (s: unknown): s is string => typeof s === 'string' && IPV4.test(s);

/** ValidateService, for what this cluster implements. */
export function validateService(svc: KObj, causes: Cause[]): void {
  const spec = svc.spec;
  if (!isObj(spec)) return void cause(causes, 'spec', 'FieldValueRequired', 'Required value');
  if (!SERVICE_TYPES.includes(spec.type)) notSupported(causes, 'spec.type', spec.type, SERVICE_TYPES);
  const ports: unknown[] = spec.ports ?? [];
  if (!Array.isArray(ports)) return void cause(causes, 'spec.ports', 'FieldValueTypeInvalid', 'Invalid value: must be a list');
  if (spec.type === 'ExternalName') {
    if (typeof spec.externalName !== 'string' || !spec.externalName) cause(causes, 'spec.externalName', 'FieldValueRequired', 'Required value');
    if (spec.clusterIP) cause(causes, 'spec.clusterIP', 'FieldValueForbidden', 'Forbidden: may not be set for ExternalName services');
    return;
  }
  if (spec.externalName) cause(causes, 'spec.externalName', 'FieldValueForbidden', 'Forbidden: may not be set unless type is ExternalName');
  const headless = spec.clusterIP === HEADLESS;
  if (ports.length === 0 && !headless) cause(causes, 'spec.ports', 'FieldValueRequired', 'Required value');
  if (headless && hasNodePorts(svc)) cause(causes, 'spec.clusterIPs[0]', 'FieldValueInvalid', `Invalid value: "None": may not be set to 'None' for ${spec.type} services`);
  if (spec.clusterIP !== undefined && spec.clusterIP !== '' && !headless && !isIPv4(spec.clusterIP)) {
    cause(causes, 'spec.clusterIPs[0]', 'FieldValueInvalid', `Invalid value: "${spec.clusterIP}": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`);
  }
  if (Array.isArray(spec.clusterIPs) && spec.clusterIPs.length > 0 && spec.clusterIP && spec.clusterIPs[0] !== spec.clusterIP) {
    cause(causes, 'spec.clusterIPs[0]', 'FieldValueInvalid', `Invalid value: "${spec.clusterIPs[0]}": must match clusterIP when both are specified`);
  }
  if (Array.isArray(spec.clusterIPs) && spec.clusterIPs.length > 1) notImplemented(causes, 'spec.clusterIPs', 'a second cluster IP (dual-stack)');
  const names = new Set<string>();
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    const at = `spec.ports[${i}]`;
    if (!isObj(p)) return void cause(causes, at, 'FieldValueTypeInvalid', 'Invalid value: must be an object');
    if (ports.length > 1 || p.name) {
      if (!p.name) cause(causes, `${at}.name`, 'FieldValueRequired', 'Required value');
      else if (typeof p.name !== 'string' || p.name.length > 63 || !DNS1123_LABEL.test(p.name)) {
        cause(causes, `${at}.name`, 'FieldValueInvalid', `Invalid value: "${p.name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${DNS1123_LABEL.source.slice(1, -1)}')`);
      } else if (names.has(p.name)) cause(causes, `${at}.name`, 'FieldValueDuplicate', `Duplicate value: "${p.name}"`);
      else names.add(p.name);
    }
    if (!validPortNumber(p.port)) cause(causes, `${at}.port`, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(p.port)}: must be between 1 and 65535, inclusive`);
    if (!PROTOCOLS.includes(p.protocol)) notSupported(causes, `${at}.protocol`, p.protocol, PROTOCOLS);
    else if (p.protocol === 'SCTP') notImplemented(causes, `${at}.protocol`, 'SCTP');
    const key = `${p.port}/${p.protocol}`;
    if (seen.has(key)) cause(causes, `${at}`, 'FieldValueDuplicate', `Duplicate value: {"port":${p.port},"protocol":"${p.protocol}"}`);
    seen.add(key);
    if (!headless || p.targetPort !== undefined) validateTargetPort(p.targetPort, `${at}.targetPort`, causes);
    if (p.nodePort !== undefined && p.nodePort !== 0) {
      if (!hasNodePorts(svc)) cause(causes, `${at}.nodePort`, 'FieldValueForbidden', 'Forbidden: may not be used when `type` is \'ClusterIP\'');
      else if (!validPortNumber(p.nodePort)) cause(causes, `${at}.nodePort`, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(p.nodePort)}: must be between 1 and 65535, inclusive`);
    }
    if (p.appProtocol !== undefined && typeof p.appProtocol !== 'string') cause(causes, `${at}.appProtocol`, 'FieldValueInvalid', 'Invalid value: must be a string');
  });
  if (spec.selector !== undefined && spec.selector !== null) {
    if (!isObj(spec.selector)) cause(causes, 'spec.selector', 'FieldValueTypeInvalid', 'Invalid value: must be a map of strings');
    else for (const [k, v] of Object.entries(spec.selector)) if (typeof v !== 'string') cause(causes, `spec.selector[${k}]`, 'FieldValueTypeInvalid', 'Invalid value: must be a string');
  }
  if (!['None', 'ClientIP'].includes(spec.sessionAffinity)) notSupported(causes, 'spec.sessionAffinity', spec.sessionAffinity, ['ClientIP', 'None']);
  if (spec.sessionAffinity === 'ClientIP') {
    const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
    if (typeof t !== 'number' || !Number.isInteger(t) || t <= 0 || t > 86400) {
      cause(causes, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 'FieldValueInvalid', `Invalid value: ${JSON.stringify(t)}: must be greater than 0 and less than 86400`);
    }
    if (headless) cause(causes, 'spec.sessionAffinity', 'FieldValueForbidden', 'Forbidden: must be None when clusterIP is None');
  } else if (spec.sessionAffinityConfig !== undefined && spec.sessionAffinityConfig !== null) {
    cause(causes, 'spec.sessionAffinityConfig', 'FieldValueInvalid', `Invalid value: ${JSON.stringify(spec.sessionAffinityConfig)}: must not be set when session affinity is None`);
  }
  if (!['Cluster', 'Local'].includes(spec.internalTrafficPolicy)) notSupported(causes, 'spec.internalTrafficPolicy', spec.internalTrafficPolicy, ['Cluster', 'Local']);
  if (hasNodePorts(svc)) {
    if (!['Cluster', 'Local'].includes(spec.externalTrafficPolicy)) notSupported(causes, 'spec.externalTrafficPolicy', spec.externalTrafficPolicy, ['Cluster', 'Local']);
  } else if (spec.externalTrafficPolicy !== undefined && spec.externalTrafficPolicy !== '') {
    cause(causes, 'spec.externalTrafficPolicy', 'FieldValueInvalid', `Invalid value: "${spec.externalTrafficPolicy}": may only be set for externally-accessible services`);
  }
  if (spec.publishNotReadyAddresses !== undefined && typeof spec.publishNotReadyAddresses !== 'boolean') cause(causes, 'spec.publishNotReadyAddresses', 'FieldValueTypeInvalid', 'Invalid value: must be a boolean');
  const families: unknown[] = Array.isArray(spec.ipFamilies) ? spec.ipFamilies : [];
  if (families.some((f) => f !== 'IPv4')) notImplemented(causes, 'spec.ipFamilies', 'an IPv6 service');
  if (spec.ipFamilyPolicy !== 'SingleStack') notImplemented(causes, 'spec.ipFamilyPolicy', `ipFamilyPolicy ${JSON.stringify(spec.ipFamilyPolicy)} (dual-stack)`);
  if ((spec.externalIPs ?? []).length > 0) notImplemented(causes, 'spec.externalIPs', 'externalIPs');
  if ((spec.loadBalancerSourceRanges ?? []).length > 0) notImplemented(causes, 'spec.loadBalancerSourceRanges', 'loadBalancerSourceRanges');
  if (spec.loadBalancerIP) notImplemented(causes, 'spec.loadBalancerIP', 'loadBalancerIP');
  if (spec.healthCheckNodePort) notImplemented(causes, 'spec.healthCheckNodePort', 'healthCheckNodePort');
  if (spec.trafficDistribution) notImplemented(causes, 'spec.trafficDistribution', 'trafficDistribution');
}

/** ValidateServiceUpdate: the cluster IP stays (unless the type changes to or from ExternalName). */
export function validateServiceUpdate(svc: KObj, cur: KObj, causes: Cause[]): void {
  const was = cur.spec?.type, now = svc.spec?.type;
  if (was === 'ExternalName' || now === 'ExternalName') return;
  const before = cur.spec?.clusterIP ?? '';
  const after = svc.spec?.clusterIP ?? '';
  if (after !== '' && after !== before) cause(causes, 'spec.clusterIPs[0]', 'FieldValueInvalid', `Invalid value: "${after}": field is immutable`);
}

export const serviceStrategy: KindStrategy = {
  statusSubresource: true,
  prepareForCreate(svc) {
    svc.status = { loadBalancer: {} };
    defaultService(svc);
  },
  prepareForUpdate(svc, cur) {
    defaultService(svc);
    // kubectl apply leaves out what the server filled: keep the allocated IP and node ports.
    const spec = svc.spec;
    if (!isObj(spec) || spec.type === 'ExternalName' || cur.spec?.type === 'ExternalName') return;
    if ((spec.clusterIP === undefined || spec.clusterIP === '') && cur.spec?.clusterIP) {
      spec.clusterIP = cur.spec.clusterIP;
      spec.clusterIPs = cur.spec.clusterIPs ?? [cur.spec.clusterIP];
    }
    if (hasNodePorts(svc) && hasNodePorts(cur)) {
      for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
        if (!isObj(p) || p.nodePort) continue;
        const old = (cur.spec?.ports ?? []).find((o: KObj) => o.port === p.port && (o.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
        if (old?.nodePort) p.nodePort = old.nodePort;
      }
    }
  },
  validate: validateService,
  validateUpdate: validateServiceUpdate,
};

// ------------------------------------------------------------------ Endpoints, EndpointSlices

function validateEndpointPorts(ports: unknown, at: string, causes: Cause[], requireName: boolean): void {
  if (ports === undefined || ports === null) return;
  if (!Array.isArray(ports)) return void cause(causes, at, 'FieldValueTypeInvalid', 'Invalid value: must be a list');
  ports.forEach((p, i) => {
    if (!isObj(p)) return void cause(causes, `${at}[${i}]`, 'FieldValueTypeInvalid', 'Invalid value: must be an object');
    if (p.port !== undefined && p.port !== null && !validPortNumber(p.port)) cause(causes, `${at}[${i}].port`, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(p.port)}: must be between 1 and 65535, inclusive`);
    if (requireName && ports.length > 1 && !p.name) cause(causes, `${at}[${i}].name`, 'FieldValueRequired', 'Required value');
    if (p.protocol !== undefined && !PROTOCOLS.includes(p.protocol)) notSupported(causes, `${at}[${i}].protocol`, p.protocol, PROTOCOLS);
  });
}

export const endpointsStrategy: KindStrategy = {
  prepareForCreate: defaultEndpoints,
  prepareForUpdate: defaultEndpoints,
  validate(ep, causes) {
    const subsets = ep.subsets ?? [];
    if (!Array.isArray(subsets)) return void cause(causes, 'subsets', 'FieldValueTypeInvalid', 'Invalid value: must be a list');
    subsets.forEach((s: KObj, i: number) => {
      for (const kind of ['addresses', 'notReadyAddresses']) {
        (s?.[kind] ?? []).forEach((a: KObj, j: number) => {
          if (!isIPv4(a?.ip)) cause(causes, `subsets[${i}].${kind}[${j}].ip`, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(a?.ip)}: must be a valid IPv4 address`);
        });
      }
      validateEndpointPorts(s?.ports, `subsets[${i}].ports`, causes, true);
    });
  },
};

function defaultEndpoints(ep: KObj): void {
  for (const s of Array.isArray(ep.subsets) ? ep.subsets : []) for (const p of s?.ports ?? []) if (isObj(p)) p.protocol ??= 'TCP';
}

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'];

export const endpointSliceStrategy: KindStrategy = {
  prepareForCreate: defaultSlice,
  prepareForUpdate: defaultSlice,
  validate(slice, causes) {
    if (!ADDRESS_TYPES.includes(slice.addressType)) notSupported(causes, 'addressType', slice.addressType, ADDRESS_TYPES);
    const endpoints = slice.endpoints ?? [];
    if (!Array.isArray(endpoints)) return void cause(causes, 'endpoints', 'FieldValueTypeInvalid', 'Invalid value: must be a list');
    if (endpoints.length > 1000) cause(causes, 'endpoints', 'FieldValueTooMany', `Too many: ${endpoints.length}: must have at most 1000 items`);
    endpoints.forEach((e: KObj, i: number) => {
      const addrs = e?.addresses;
      if (!Array.isArray(addrs) || addrs.length === 0) cause(causes, `endpoints[${i}].addresses`, 'FieldValueRequired', 'Required value: must contain at least 1 address');
      else if (addrs.length > 100) cause(causes, `endpoints[${i}].addresses`, 'FieldValueTooMany', 'Too many: must have at most 100 items');
      else if (slice.addressType === 'IPv4') addrs.forEach((a: unknown, j: number) => { if (!isIPv4(a)) cause(causes, `endpoints[${i}].addresses[${j}]`, 'FieldValueInvalid', `Invalid value: ${JSON.stringify(a)}: must be a valid IPv4 address`); });
    });
    validateEndpointPorts(slice.ports, 'ports', causes, false);
  },
  validateUpdate(slice, cur, causes) {
    if (slice.addressType !== cur.addressType) cause(causes, 'addressType', 'FieldValueInvalid', `Invalid value: "${slice.addressType}": field is immutable`);
  },
};

function defaultSlice(slice: KObj): void {
  for (const p of Array.isArray(slice.ports) ? slice.ports : []) if (isObj(p)) p.protocol ??= 'TCP';
}

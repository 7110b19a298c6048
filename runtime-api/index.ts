/**
 * The neutral runtime interface (the kubelet's kubecontainer package): the
 * agent and every runtime speak in these types, and the agent imports nothing
 * else of a runtime's.
 */
export type { ContainerRuntime, ContainerUsage, PodUsage, RuntimeFactory, RuntimeOpenOptions } from './runtime.js';
export type { AppState, AppStatus, PodState, PodStatus, Termination } from './status.js';
export { formatTimestamp, type LogLine, type LogQuery } from './logs.js';
export type { ExecExit, ExecOptions, ExecProcess, PortConnection, PortDialOptions, PortForwardTarget, TerminalSize } from './streams.js';
export type { PodNetworkOptions } from './network.js';
export type { Pod, PodSpec, ContainerSpec, Volume, VolumeMount, EnvVar, HostPathType, RestartPolicy } from './pod-spec.js';
export { validatePod, restartPolicyOf } from './pod-spec.js';
export type { RegistryKeyring, RegistryCredentials } from './registry-auth.js';
export { keyringFromPullSecrets } from './registry-auth.js';
export { shouldPull } from './pull-policy.js';
export type { ImageLimits } from './image-limits.js';
export { ISOLATION_HANDLERS, KVM_ACCEL_MODES, type IsolationHandler, type KvmAccelMode } from './handlers.js';
export { ContainerConfigError, HandlerNotOffered, ImageNotFound, PodNotFound, UserError } from './errors.js';

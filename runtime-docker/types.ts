/**
 * Every type runtime-docker takes from the agent's runtime interface, in one
 * place: when the neutral interface module lands, only this file changes.
 */
export type { ContainerRuntime, PodUsage, ContainerUsage, ExecOptions, ExecProcess, TerminalSize, PortConnection } from '../agent/runtime.js';
export type { Pod, ContainerSpec, Volume, VolumeMount, RestartPolicy, ContainerSecurityContext } from '../runtime-rkt/manifest.js';
export type { PodStatus, AppStatus, PodState, AppState, Termination } from '../runtime-rkt/status.js';
export type { LogQuery, LogLine } from '../runtime-rkt/logs.js';
export type { ExecExit } from '../runtime-rkt/exec.js';
export type { RegistryKeyring, RegistryCredentials } from '../runtime-rkt/image/auth.js';
export type { PodNetworkOptions } from '../runtime-rkt/network.js';

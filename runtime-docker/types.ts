/**
 * Every type runtime-docker takes from the neutral runtime interface
 * (runtime-api/), in one place.
 */
export type {
  ContainerRuntime, PodUsage, ContainerUsage, ExecOptions, ExecProcess, ExecExit, TerminalSize, PortForwardTarget, RuntimeOpenOptions, RuntimeFactory,
  Pod, ContainerSpec, Volume, VolumeMount, RestartPolicy, PodStatus, AppStatus, PodState, AppState, Termination, LogQuery, LogLine,
  RegistryKeyring, RegistryCredentials, PodNetworkOptions,
} from '../runtime-api/index.js';

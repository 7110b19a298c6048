/**
 * What a runtime reports about its pods, in terms every runtime shares (the
 * kubelet's kubecontainer.PodStatus). Pod states are named as rkt's
 * api-service names them; a runtime without one of them never reports it.
 */
export type PodState = 'embryo' | 'preparing' | 'aborted-prepare' | 'prepared' | 'running' | 'exited' | 'deleting' | 'garbage';
export type AppState = 'waiting' | 'running' | 'exited' | 'unknown';

export interface AppStatus {
  name: string;
  image: { id: string; name: string };
  /** The runtime's handle on this container (rkt: its systemd unit; docker: the container ID). */
  unit: string;
  state: AppState;
  /** Why it is waiting or exited: Completed, Error, OOMKilled, CrashLoopBackOff, LaunchInterrupted… */
  reason?: string;
  restartCount: number;
  mainPid?: number;
  exitCode?: number;
  /** Signal number when the process died by a signal. */
  signal?: number;
  startedAt?: number;
  finishedAt?: number;
  /** What an exited app wrote at its terminationMessagePath (at most 4 KiB; namespaces stage1). */
  terminationMessage?: string;
  /** The run before the current one, as Kubernetes' lastState.terminated has it. */
  lastTermination?: Termination;
}

export interface Termination {
  exitCode: number;
  signal?: number;
  reason: string;
  finishedAt: number;
  invocation: string;
}

export interface PodStatus {
  uuid: string;
  state: PodState;
  /** The runtime handler the pod runs under (rkt: its stage1 fly, namespaces or kvm; docker: runc). */
  handler?: string;
  /** The pod shares the node's network namespace (hostNetwork, or rkt's fly stage1): it has no IP of its own. */
  hostNetwork?: boolean;
  name?: string;
  namespace?: string;
  /** Kubernetes pod UID when the pod came from an API server. */
  uid?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  /** ms since epoch */
  createdAt?: number;
  startedAt?: number;
  gcMarkedAt?: number;
  slice?: string;
  /** The pod's own IPs from its CNI network, primary first; absent for host-network (fly, hostNetwork) and unnetworked pods. */
  podIPs?: string[];
  networks?: Array<{ name: string; ifName: string; ips: string[] }>;
  /** kvm pods: the VM the pod got; accel tcg means emulation, not a hardware isolation boundary. */
  vm?: { accel: 'kvm' | 'tcg'; accelReason: string; memoryMiB: number; cpus: number; kernel: string };
  apps: AppStatus[];
}


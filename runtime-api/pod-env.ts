import { ContainerConfigError } from '../common/errors.js';
import { expandVars } from '../common/var-expansion.js';
import type { ContainerSpec, Pod } from './pod-spec.js';

/**
 * The pod's own environment, as every runtime makes it: `$(VAR)` expansion of
 * env values (against the variables defined before them), command and args
 * (against all of them), as the kubelet does; and `status.podIP`/`podIPs`,
 * the one downward-API value only the runtime knows, since it sets up the pod
 * network. Every other source (ConfigMaps, Secrets, the rest of the downward
 * API, resources, envFrom) is the agent's to resolve (it reads the API); the
 * runtime refuses a pod that still has one, naming it.
 */
export const POD_IP_FIELDS = ['status.podIP', 'status.podIPs'];

const podIPField = (c: ContainerSpec, i: number) => c.env?.[i]?.valueFrom?.fieldRef?.fieldPath;

/** Whether any container reads the pod's IP from the downward API. */
export function usesPodIP(pod: Pod): boolean {
  return pod.spec.containers.some((c) => (c.env ?? []).some((_, i) => POD_IP_FIELDS.includes(podIPField(c, i) ?? '')));
}

/** The env sources only an agent can resolve, one line each (empty: the runtime can run the pod). */
export function unresolvedEnvSources(pod: Pod): string[] {
  const problems: string[] = [];
  pod.spec.containers.forEach((c, ci) => {
    if (c.envFrom?.length) problems.push(`spec.containers[${ci}].envFrom: ConfigMaps and Secrets are read by the agent, which turns envFrom into env; the runtime alone cannot read them`);
    (c.env ?? []).forEach((e, ei) => {
      if (!e.valueFrom) return;
      const fieldPath = e.valueFrom.fieldRef?.fieldPath;
      if (fieldPath && POD_IP_FIELDS.includes(fieldPath)) return;
      const source = Object.keys(e.valueFrom).join(', ');
      problems.push(`spec.containers[${ci}].env[${ei}].valueFrom.${source}${fieldPath ? ` ${fieldPath}` : ''}: resolved by the agent (it reads the API and knows the node); the runtime alone fills only status.podIP and status.podIPs`);
    });
  });
  return problems;
}

export function checkRuntimeEnv(pod: Pod): void {
  const problems = unresolvedEnvSources(pod);
  if (problems.length) throw new ContainerConfigError(problems.join('; '), 'run the pod through the agent, or give those variables a value');
}

/**
 * The container's variables in the pod's order, expanded; `podIPs` (primary
 * first) fill status.podIP/podIPs (empty when the pod has no IP of its own).
 */
export function podEnv(c: ContainerSpec, podIPs: string[]): Map<string, string> {
  const env = new Map<string, string>();
  const lookup = (name: string) => env.get(name);
  (c.env ?? []).forEach((e, i) => {
    const fieldPath = podIPField(c, i);
    if (fieldPath === 'status.podIP') env.set(e.name, podIPs[0] ?? '');
    else if (fieldPath === 'status.podIPs') env.set(e.name, podIPs.join(','));
    else env.set(e.name, e.value ? expandVars(e.value, lookup) : '');
  });
  return env;
}

/** The container's command and args with `$(VAR)` expanded against its env (the image's Entrypoint and Cmd are never expanded). */
export function expandCommand(c: ContainerSpec, env: Map<string, string>): { command?: string[]; args?: string[] } {
  const lookup = (name: string) => env.get(name);
  return {
    ...(c.command ? { command: c.command.map((s) => expandVars(s, lookup)) } : {}),
    ...(c.args ? { args: c.args.map((s) => expandVars(s, lookup)) } : {}),
  };
}


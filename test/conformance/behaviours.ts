/**
 * The runtime conformance suite's rows: each behaviour the agent relies on,
 * driven through `ContainerRuntime` (runtime-api) alone, so every runtime is
 * held to the same words. A behaviour a runtime cannot provide throws
 * NotProvided with the reason; the table lists it, it is never skipped in
 * silence. Later issues add rows here.
 */
import { eventually } from '../helpers/assert.js';
import type { ContainerRuntime, Pod, PodStatus } from '../../runtime-api/index.js';
import { HandlerNotOffered, UserError } from '../../runtime-api/index.js';

export class NotProvided extends Error {}

export interface Subject {
  /** Column name, e.g. rkt/namespaces. */
  name: string;
  rt: ContainerRuntime;
  /** The handler to run pods with. */
  handler: string;
  image: string;
  /** The pod network's subnet prefix (pod IPs start with it). */
  subnetPrefix: string;
  /** Pods this row started (removed by the harness whatever happens). */
  started: string[];
  /** Close the runtime and open it again, as an agent restart does; `rt` is the new one afterwards. */
  reopen(): Promise<void>;
}

export interface Behaviour {
  name: string;
  run(s: Subject): Promise<void>;
}

function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Error(what);
}

const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 45_000): Promise<T> => eventually(what, fn, timeoutMs);

let seq = 0;
function pod(s: Subject, name: string, containers: Pod['spec']['containers'], spec: Partial<Pod['spec']> = {}): Pod {
  seq++;
  return { metadata: { name: `${name}-${seq}`, namespace: 'conformance', uid: `uid-${name}-${seq}-${process.pid}` }, spec: { containers, terminationGracePeriodSeconds: 3, ...spec } };
}

async function run(s: Subject, p: Pod): Promise<string> {
  const uuid = await s.rt.runPod(p, { handler: s.handler });
  s.started.push(uuid);
  return uuid;
}

const statusOf = async (s: Subject, uuid: string): Promise<PodStatus | undefined> => (await s.rt.listPods()).find((p) => p.uuid === uuid);

const allRunning = (s: Subject, uuid: string) => until('the pod running', async () => {
  const st = await statusOf(s, uuid);
  return st?.state === 'running' && st.apps.length > 0 && st.apps.every((a) => a.state === 'running') ? st : undefined;
});

async function lines(s: Subject, uuid: string, container: string, extra: { tail?: number } = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const l of s.rt.logs({ podUuid: uuid, container, ...extra })) out.push(l.message);
  return out;
}

export const BEHAVIOURS: Behaviour[] = [
  {
    name: 'lifecycle: run → Running with a pod IP (none on the node\'s network) → stop → exited → remove → gone',
    async run(s) {
      const uuid = await run(s, pod(s, 'life', [{ name: 'app', image: s.image, command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'] }]));
      const st = await allRunning(s, uuid);
      // A pod on the node's network (rkt's fly) has no IP of its own, as a hostNetwork pod.
      if (st.hostNetwork) check(!st.podIPs?.length, `a pod on the node's network reports IPs ${st.podIPs?.join(',')}`);
      else check(st.podIPs?.[0]?.startsWith(s.subnetPrefix), `pod IP ${st.podIPs?.[0]} is not in ${s.subnetPrefix}*`);
      await s.rt.stopPod(uuid, 5);
      const stopped = await until('the pod exited', async () => {
        const x = await statusOf(s, uuid);
        return x && x.state !== 'running' ? x : undefined;
      }, 15_000);
      check(stopped.apps.every((a) => a.state === 'exited'), `apps after stop: ${JSON.stringify(stopped.apps.map((a) => a.state))}`);
      await s.rt.removePod(uuid);
      check(!(await statusOf(s, uuid)), 'the pod is still listed after removePod');
    },
  },
  {
    name: 'exit codes: 7 → Error, 0 → Completed (restartPolicy Never)',
    async run(s) {
      const uuid = await run(s, pod(s, 'exit', [
        { name: 'seven', image: s.image, command: ['sh', '-c', 'exit 7'] },
        { name: 'zero', image: s.image, command: ['true'] },
      ], { restartPolicy: 'Never' }));
      const st = await until('both exited', async () => {
        const x = await statusOf(s, uuid);
        return x?.apps.every((a) => a.state === 'exited') ? x : undefined;
      });
      const by = Object.fromEntries(st.apps.map((a) => [a.name, a]));
      check(by.seven?.exitCode === 7 && by.seven.reason === 'Error', `seven: ${by.seven?.exitCode} ${by.seven?.reason}`);
      check(by.zero?.exitCode === 0 && by.zero.reason === 'Completed', `zero: ${by.zero?.exitCode} ${by.zero?.reason}`);
    },
  },
  {
    name: 'limits: over its memory limit → OOMKilled, exit code 137',
    async run(s) {
      const uuid = await run(s, pod(s, 'oom', [{ name: 'hog', image: s.image, command: ['tail', '/dev/zero'], resources: { limits: { memory: '16Mi' } } }], { restartPolicy: 'Never' }));
      const app = await until('the hog exited', async () => {
        const a = (await statusOf(s, uuid))?.apps[0];
        return a?.state === 'exited' ? a : undefined;
      });
      check(app.reason === 'OOMKilled' && app.exitCode === 137, `hog: ${app.exitCode} ${app.reason}`);
    },
  },
  {
    name: 'restartPolicy OnFailure: restarted, restartCount and lastState',
    async run(s) {
      const uuid = await run(s, pod(s, 'restart', [{ name: 'fails', image: s.image, command: ['sh', '-c', 'sleep 0.2; exit 1'] }], { restartPolicy: 'OnFailure' }));
      const app = await until('a restart with its last state', async () => {
        const a = (await statusOf(s, uuid))?.apps[0];
        return a && a.restartCount >= 1 && a.lastTermination ? a : undefined;
      }, 60_000);
      check(app.lastTermination?.exitCode === 1, `lastTermination: ${JSON.stringify(app.lastTermination)}`);
    },
  },
  {
    name: 'logs: per container, in order, tail',
    async run(s) {
      const uuid = await run(s, pod(s, 'logs', [
        { name: 'a', image: s.image, command: ['sh', '-c', 'echo one; echo two; echo three; sleep 3600'] },
        { name: 'b', image: s.image, command: ['sh', '-c', 'echo other; sleep 3600'] },
      ]));
      await allRunning(s, uuid);
      const all = await until('three lines', async () => {
        const l = await lines(s, uuid, 'a');
        return l.length >= 3 ? l : undefined;
      });
      check(JSON.stringify(all) === JSON.stringify(['one', 'two', 'three']), `a: ${JSON.stringify(all)}`);
      const tail = await lines(s, uuid, 'a', { tail: 1 });
      check(JSON.stringify(tail) === JSON.stringify(['three']), `tail 1: ${JSON.stringify(tail)}`);
      const b = await until('b\'s line', async () => ((await lines(s, uuid, 'b')).length ? lines(s, uuid, 'b') : undefined));
      check(JSON.stringify(b) === JSON.stringify(['other']), `b: ${JSON.stringify(b)}`);
    },
  },
  {
    name: 'exec: stdout and stderr apart, the exit code passed on',
    async run(s) {
      const uuid = await run(s, pod(s, 'exec', [{ name: 'app', image: s.image, command: ['sleep', '3600'] }]));
      await allRunning(s, uuid);
      const proc = await s.rt.exec(uuid, 'app', ['sh', '-c', 'echo out; echo err >&2; exit 3'], { stdin: false, tty: false });
      let out = '';
      let err = '';
      proc.stdout.on('data', (d) => { out += d; });
      proc.stderr?.on('data', (d) => { err += d; });
      const { code } = await proc.exit;
      check(code === 3 && out === 'out\n' && err === 'err\n', `exit ${code}, stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
      // A probe's command (runInContainer) runs in the container's cgroups, as an exec does: its limits and device rules hold.
      const viaExec = await s.rt.exec(uuid, 'app', ['cat', '/proc/self/cgroup'], { stdin: false, tty: false });
      let execCgroups = '';
      viaExec.stdout.on('data', (d) => { execCgroups += d; });
      await viaExec.exit;
      const probe = await s.rt.runInContainer(uuid, 'app', ['cat', '/proc/self/cgroup'], 5000);
      check(probe.exitCode === 0 && probe.output === execCgroups, `a probe's cgroups ${JSON.stringify(probe.output)} are not an exec's ${JSON.stringify(execCgroups)}`);
    },
  },
  {
    name: 'multi-container: containers share the pod\'s localhost',
    async run(s) {
      const uuid = await run(s, pod(s, 'multi', [
        { name: 'srv', image: s.image, command: ['busybox', 'nc', '-ll', '-p', '8080', '-e', 'echo', 'hi-from-srv'] },
        { name: 'client', image: s.image, command: ['sleep', '3600'] },
      ]));
      await allRunning(s, uuid);
      const r = await until('the client reached the server', async () => {
        const x = await s.rt.runInContainer(uuid, 'client', ['sh', '-c', 'nc 127.0.0.1 8080 </dev/null'], 5000);
        return x.output.includes('hi-from-srv') ? x : undefined;
      }, 20_000);
      check(r.exitCode === 0, `nc exited ${r.exitCode}`);
    },
  },
  {
    name: 'volumes: an emptyDir shared by two containers',
    async run(s) {
      const uuid = await run(s, pod(s, 'vol', [
        { name: 'writer', image: s.image, command: ['sh', '-c', 'echo shared > /data/f; sleep 3600'], volumeMounts: [{ name: 'scratch', mountPath: '/data' }] },
        { name: 'reader', image: s.image, command: ['sleep', '3600'], volumeMounts: [{ name: 'scratch', mountPath: '/in', readOnly: true }] },
      ], { volumes: [{ name: 'scratch', emptyDir: {} }] }));
      await allRunning(s, uuid);
      const r = await until('the reader sees the file', async () => {
        const x = await s.rt.runInContainer(uuid, 'reader', ['cat', '/in/f'], 5000);
        return x.exitCode === 0 ? x : undefined;
      }, 15_000);
      check(r.output.trim() === 'shared', `reader read ${JSON.stringify(r.output)}`);
      const ro = await s.rt.runInContainer(uuid, 'reader', ['sh', '-c', 'echo x > /in/g'], 5000);
      check(ro.exitCode !== 0, 'a readOnly mount was writable');
    },
  },
  {
    name: 'deletion with a grace period: SIGTERM ignored → killed after the grace period',
    async run(s) {
      const uuid = await run(s, pod(s, 'grace', [{ name: 'stubborn', image: s.image, command: ['sh', '-c', 'trap "" TERM; echo trapped; while :; do sleep 1; done'] }]));
      await allRunning(s, uuid);
      // Running is reported once the process exists, which can be before the shell has run `trap`;
      // a SIGTERM then would end it at once. The log line says the trap is in place.
      await until('the trap installed', async () => (await lines(s, uuid, 'stubborn')).includes('trapped'));
      const t0 = Date.now();
      await s.rt.stopPod(uuid, 2);
      const took = (Date.now() - t0) / 1000;
      check(took >= 1.5 && took < 12, `stopPod(grace 2 s) took ${took.toFixed(1)} s`);
      const st = await statusOf(s, uuid);
      check(st?.apps[0]?.state === 'exited', `after stop: ${st?.apps[0]?.state}`);
    },
  },
  {
    name: 'status after a runtime restart (an agent restart): the same pod, the same run',
    async run(s) {
      const uuid = await run(s, pod(s, 'adopt', [{ name: 'app', image: s.image, command: ['sleep', '3600'] }]));
      const before = (await allRunning(s, uuid)).apps[0]!;
      await s.reopen();
      const after = (await allRunning(s, uuid)).apps[0]!;
      check(after.startedAt === before.startedAt && after.restartCount === before.restartCount, `before ${before.startedAt}/${before.restartCount}, after ${after.startedAt}/${after.restartCount}`);
    },
  },
  {
    name: 'bad input: a handler the runtime does not offer is refused, nothing left behind',
    async run(s) {
      const before = (await s.rt.listPods()).length;
      // Through an async wrapper: a runtime that throws before returning its promise refuses too (rkt's runPod does).
      const err = await (async () => s.rt.runPod(pod(s, 'bad', [{ name: 'x', image: s.image }]), { handler: 'no-such-handler' }))().then(() => undefined, (e: unknown) => e);
      check(err instanceof HandlerNotOffered || err instanceof UserError, `runPod with handler no-such-handler: ${String(err)}`);
      check((await s.rt.listPods()).length === before, 'a refused pod left something in the runtime');
    },
  },
];

/**
 * Bench-only tracing: wraps methods of the runtime's classes (on their
 * prototypes, at run time; no source changes) and every child process spawn,
 * recording wall-clock spans. Used to show where the time of one `pod run`
 * goes. Installing it is global to the process: only the profiling runs use it.
 */
import { ChildProcess } from 'node:child_process';
import { nowMs } from './stats.js';

export interface Span {
  name: string;
  /** wall-clock ms (see nowMs) */
  start: number;
  end: number;
}

export class Tracer {
  spans: Span[] = [];
  private installed = false;

  add(name: string, start: number, end: number): void {
    this.spans.push({ name, start, end });
  }

  reset(): void {
    this.spans = [];
  }

  /** Wrap obj[method] (sync or async) so every call is recorded as a span named label. */
  wrap(obj: object, method: string, label: string): void {
    const target = obj as Record<string, unknown>;
    const orig = target[method];
    if (typeof orig !== 'function') throw new Error(`trace: ${label}: no method ${method}`);
    const tracer = this;
    target[method] = function (this: unknown, ...args: unknown[]) {
      const start = nowMs();
      let result: unknown;
      try {
        result = (orig as (...a: unknown[]) => unknown).apply(this, args);
      } catch (err) {
        tracer.add(label, start, nowMs());
        throw err;
      }
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        return (result as Promise<unknown>).finally(() => tracer.add(label, start, nowMs()));
      }
      tracer.add(label, start, nowMs());
      return result;
    };
  }

  /** Record every child process from spawn() to its exit (execa and child_process alike go through ChildProcess#spawn). */
  hookSpawn(): void {
    if (this.installed) return;
    this.installed = true;
    const proto = ChildProcess.prototype as unknown as { spawn: (opts: { file: string; args: string[] }) => unknown };
    const orig = proto.spawn;
    const tracer = this;
    proto.spawn = function (this: ChildProcess, opts: { file: string; args: string[] }) {
      const start = nowMs();
      const r = orig.call(this, opts);
      const label = `exec ${[opts.file, ...(opts.args ?? []).slice(1)].join(' ').replace(/\s+/g, ' ').slice(0, 90)}`;
      this.once('exit', () => tracer.add(label, start, nowMs()));
      return r;
    };
  }
}

/** Install spans on the runtime's classes. Imports are dynamic so the caller decides when the module graph loads. */
export async function instrumentRuntime(tracer: Tracer, distRoot: string): Promise<void> {
  const imp = (p: string) => import(new URL(p, distRoot).href);
  const { SystemdClient } = await imp('common/systemd.js');
  const { RktRuntime } = await imp('runtime-rkt/runtime.js');
  const { PodStore } = await imp('runtime-rkt/pod-store.js');
  const { ImageStore } = await imp('runtime-rkt/image/store.js');
  const { NamespacesStage1 } = await imp('stage1/namespaces.js');
  const { FlyStage1 } = await imp('stage1/fly.js');
  tracer.wrap(SystemdClient, 'connect', 'dbus connect');
  for (const m of ['subscribe', 'startTransientUnit', 'waitForJob', 'stopUnit', 'listUnitsByPatterns', 'resetFailedUnit', 'unitProperties']) {
    tracer.wrap(SystemdClient.prototype, m, `dbus ${m}`);
  }
  tracer.wrap(RktRuntime, 'open', 'RktRuntime.open');
  for (const m of ['runPod', 'launch', 'reconcile']) tracer.wrap(RktRuntime.prototype, m, `runtime.${m}`);
  for (const m of ['createEmbryo', 'move', 'list']) tracer.wrap(PodStore.prototype, m, `pods.${m}`);
  for (const m of ['resolve', 'layerRootfsPaths', 'markUsed']) tracer.wrap(ImageStore.prototype, m, `images.${m}`);
  for (const m of ['prepare', 'appUnit']) tracer.wrap(NamespacesStage1.prototype, m, `stage1(namespaces).${m}`);
  tracer.wrap(FlyStage1.prototype, 'appUnit', 'stage1(fly).appUnit');
  tracer.hookSpawn();
}

/** Render spans relative to t0, nested by containment, with gaps that no span covers at top level. */
export function renderTimeline(spans: Span[], t0: number, marks: Array<{ name: string; at: number }> = []): string {
  const items = [
    ...spans.map((s) => ({ ...s, mark: false })),
    ...marks.map((m) => ({ name: m.name, start: m.at, end: m.at, mark: true })),
  ].sort((a, b) => a.start - b.start || b.end - a.end);
  const lines: string[] = [];
  const stack: Array<{ start: number; end: number }> = [];
  // A span nests under the innermost open span that contains it.
  for (const s of items) {
    while (stack.length && !(s.start >= stack[stack.length - 1]!.start && s.end <= stack[stack.length - 1]!.end)) stack.pop();
    const indent = '  '.repeat(stack.length);
    const at = `+${(s.start - t0).toFixed(1)}`.padStart(8);
    lines.push(s.mark ? `${at}          ${indent}* ${s.name}` : `${at} ${(s.end - s.start).toFixed(1).padStart(7)}ms ${indent}${s.name}`);
    if (!s.mark) stack.push({ start: s.start, end: s.end });
  }
  return lines.join('\n');
}

/**
 * The components' dependencies point one way (docs/architecture.md): agent →
 * runtime-api ← runtimes → stage1. Read from the sources' import lines, so a
 * shortcut through another component's internals fails here, not in review.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** Components a component must not import, and why. */
const FORBIDDEN: Record<string, { components: string[]; why: string }> = {
  'agent': { components: ['runtime-rkt', 'runtime-docker', 'runtime-hollow', 'stage1', 'api-service', 'control-plane'], why: 'the agent drives runtimes only through runtime-api' },
  'runtime-api': { components: ['agent', 'runtime-rkt', 'runtime-docker', 'runtime-hollow', 'stage1', 'cni', 'api-service', 'control-plane', 'cli'], why: 'the neutral interface depends on nothing but common/' },
  'runtime-rkt': { components: ['agent', 'runtime-docker', 'runtime-hollow', 'api-service', 'control-plane', 'cli'], why: 'a runtime imports nothing above it, and no other runtime' },
  'runtime-docker': { components: ['agent', 'runtime-rkt', 'runtime-hollow', 'stage1', 'api-service', 'control-plane', 'cli'], why: 'a runtime imports nothing above it, and no other runtime' },
  'runtime-hollow': { components: ['agent', 'runtime-rkt', 'runtime-docker', 'stage1', 'cni', 'api-service', 'control-plane', 'cli'], why: 'a runtime imports nothing above it, and no other runtime; the hollow one touches no network either' },
  'stage1': { components: ['agent', 'runtime-rkt', 'runtime-docker', 'runtime-hollow', 'api-service', 'control-plane', 'cli'], why: 'stage1 sits below the runtimes' },
  'cni': { components: ['agent', 'runtime-api', 'runtime-rkt', 'runtime-docker', 'runtime-hollow', 'stage1', 'control-plane', 'cli'], why: 'cni is a self-contained library' },
  'dashboard': { components: ['agent', 'runtime-api', 'runtime-rkt', 'runtime-docker', 'runtime-hollow', 'stage1', 'cni', 'api-service', 'control-plane'], why: 'the dashboard speaks to the cluster only through the Kubernetes API, as kubectl' },
  'common': { components: ['agent', 'runtime-api', 'runtime-rkt', 'runtime-docker', 'runtime-hollow', 'stage1', 'cni', 'api-service', 'control-plane', 'cli'], why: 'common is the bottom layer' },
};

function sources(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every relative import of a file, as the top-level component it lands in. */
export function importedComponents(file: string, text: string): Array<{ component: string; spec: string }> {
  const out: Array<{ component: string; spec: string }> = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = path.relative(ROOT, path.resolve(path.dirname(file), m[1]!));
    out.push({ component: target.split(path.sep)[0]!, spec: m[1]! });
  }
  return out;
}

test('the import matcher sees static and dynamic relative imports', () => {
  const file = path.join(ROOT, 'agent', 'x.ts');
  const found = importedComponents(file, "import { a } from '../runtime-rkt/runtime.js';\nconst m = await import('../stage1/kvm.js');\nimport type { B } from './y.js';");
  assert.equal(found.map((f) => f.component), ['runtime-rkt', 'stage1', 'agent']);
});

for (const [component, rule] of Object.entries(FORBIDDEN)) {
  test(`${component} imports none of ${rule.components.join(', ')}`, () => {
    const offences: string[] = [];
    for (const file of sources(path.join(ROOT, component))) {
      for (const imp of importedComponents(file, fs.readFileSync(file, 'utf8'))) {
        if (rule.components.includes(imp.component)) offences.push(`${path.relative(ROOT, file)} imports ${imp.spec}`);
      }
    }
    assert.equal(offences, [], `${rule.why}:\n${offences.join('\n')}`);
  });
}

test.run();

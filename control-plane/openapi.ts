/**
 * OpenAPI v3 schemas of the kinds this control plane serves, for `kubectl explain` (and any
 * client that reads /openapi/v3). Built, the first time a document is asked for, from the
 * OpenAPI-generated models that `@kubernetes/client-node` ships (Kubernetes' own definitions:
 * each model's attribute types and formats from the table in its .js, descriptions and required
 * fields from its .d.ts), so nothing here is written by hand and the schemas follow the client library's
 * Kubernetes version. Only types reachable from a served kind are included.
 */
import { createRequire } from 'node:module';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { KObj } from './store.js';

interface Attribute { name: string; baseName: string; type: string; format: string }
interface Model { attributes: Attribute[]; description?: string; propertyDescriptions: Map<string, string>; required: string[] }

let modelsDir: string | undefined;
function modelDir(): string {
  if (!modelsDir) {
    const main = createRequire(import.meta.url).resolve('@kubernetes/client-node');
    modelsDir = path.join(path.dirname(main), 'gen', 'models');
  }
  return modelsDir;
}

/** The doc comment above a declaration, as one line of text. */
const commentText = (c: string) => c.split('\n').map((l) => l.replace(/^\s*\*?\s?/, '')).join('\n').replace(/^\s*\/\*\*|\*\/\s*$/g, '').replace(/\\(['"\\])/g, '$1').trim();

async function loadModel(name: string): Promise<Model | undefined> {
  const dir = modelDir();
  let js: string;
  let dts: string;
  try {
    js = await fs.readFile(path.join(dir, `${name}.js`), 'utf8');
    dts = await fs.readFile(path.join(dir, `${name}.d.ts`), 'utf8');
  } catch {
    return undefined;
  }
  // The attribute table is a JSON array literal; read as text rather than imported, so that none
  // of the few hundred model modules stays loaded in the control plane once the schemas are made.
  const table = /\.attributeTypeMap = (\[[\s\S]*?\]);/.exec(js);
  if (!table) return undefined;
  let attributes: Attribute[];
  try {
    attributes = JSON.parse(table[1]!) as Attribute[];
  } catch {
    return undefined;
  }
  const model: Model = { attributes, propertyDescriptions: new Map(), required: [] };
  const classDoc = /\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*export declare class/.exec(dts.slice(dts.indexOf('*/') + 2));
  if (classDoc) model.description = commentText(classDoc[1]!);
  // `/** doc */ 'name'?: Type;` — the doc is optional; no `?` means required.
  const prop = /(?:\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*)?'([^']+)'(\??):/g;
  for (const m of dts.matchAll(prop)) {
    if (m[1]) model.propertyDescriptions.set(m[2]!, commentText(m[1]));
    if (!m[3]) model.required.push(m[2]!);
  }
  return model;
}

/** The Go package of a served group, as kube names schemas (io.k8s.api.<package>.<version>.<Type>). */
const packageOf = (group: string) => (group === '' ? 'core' : group.split('.')[0]!);
/** Types of apimachinery's meta/v1, whoever refers to them. */
const META_TYPES = new Set(['ObjectMeta', 'ListMeta', 'LabelSelector', 'LabelSelectorRequirement', 'OwnerReference', 'ManagedFieldsEntry', 'Condition', 'Status', 'StatusDetails', 'StatusCause', 'DeleteOptions', 'Preconditions']);

/** `V1PodSpec` → version v1, type PodSpec; `CoreV1EndpointPort` → package core too. */
function splitModelName(model: string): { pkg?: string; version: string; type: string } | undefined {
  const m = /^([A-Z][a-z]+)?V(\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$/.exec(model);
  if (!m) return undefined;
  return { pkg: m[1]?.toLowerCase(), version: `v${m[2]}`, type: m[3]! };
}

export interface ServedKind { group: string; version: string; kind: string }

/** All the schemas, by schema name, and which served GVs need which. */
interface Built { schemas: Map<string, KObj>; perGv: Map<string, Set<string>> }
let built: Promise<Built> | undefined;

/** Go's int formats are integers; float formats are numbers. */
function scalar(type: string, format: string): KObj | undefined {
  if (type === 'string') return { type: 'string', ...(format ? { format } : {}) };
  if (type === 'number') return format === 'double' || format === 'float' ? { type: 'number', format } : { type: 'integer', ...(format ? { format } : {}) };
  if (type === 'boolean') return { type: 'boolean' };
  if (type === 'Date') return { type: 'string', format: format || 'date-time' };
  if (type === 'IntOrString') return { 'x-kubernetes-int-or-string': true };
  if (type === 'any') return { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  return undefined;
}

async function build(kinds: ServedKind[]): Promise<Built> {
  const schemas = new Map<string, KObj>();
  const nameOf = new Map<string, string>(); // model → schema name
  const perGv = new Map<string, Set<string>>();
  const models = new Map<string, Model | undefined>();
  const model = async (m: string) => {
    if (!models.has(m)) models.set(m, await loadModel(m));
    return models.get(m);
  };

  /** A schema built for another group-version's kinds: it and all it refers to are needed here too. */
  const addClosure = (name: string, used: Set<string>): void => {
    if (used.has(name)) return;
    used.add(name);
    for (const ref of JSON.stringify(schemas.get(name) ?? {}).matchAll(/#\/components\/schemas\/([\w.-]+)/g)) addClosure(ref[1]!, used);
  };
  // Depth-first from each kind; a type is placed in the package of the first kind reaching it (core kinds come first).
  const ordered = [...kinds].sort((a, b) => Number(a.group !== '') - Number(b.group !== ''));
  const visit = async (m: string, pkg: string, used: Set<string>): Promise<string | undefined> => {
    let name = nameOf.get(m);
    if (name) {
      addClosure(name, used);
      return name;
    }
    const parts = splitModelName(m);
    const md = parts && await model(m);
    if (!parts || !md) return undefined;
    name = META_TYPES.has(parts.type) && parts.version === 'v1' && !parts.pkg ? `io.k8s.apimachinery.pkg.apis.meta.v1.${parts.type}` : `io.k8s.api.${parts.pkg ?? pkg}.${parts.version}.${parts.type}`;
    nameOf.set(m, name);
    const schema: KObj = { ...(md.description ? { description: md.description } : {}), type: 'object' };
    schemas.set(name, schema);
    used.add(name);
    const properties: KObj = {};
    const typeSchema = async (type: string, format: string): Promise<KObj> => {
      const s = scalar(type, format);
      if (s) return s;
      const arr = /^Array<(.+)>$/.exec(type);
      if (arr) return { type: 'array', items: await typeSchema(arr[1]!, format) };
      const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
      if (map) return { type: 'object', additionalProperties: await typeSchema(map[1]!, format) };
      const ref = await visit(type, pkg, used);
      return ref ? { allOf: [{ $ref: `#/components/schemas/${ref}` }] } : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    };
    for (const a of md.attributes) {
      const s = await typeSchema(a.type, a.format);
      const description = md.propertyDescriptions.get(a.baseName);
      properties[a.baseName] = { ...(description ? { description } : {}), ...s };
    }
    schema.properties = properties;
    const required = md.required.filter((r) => md.attributes.some((a) => a.baseName === r));
    if (required.length) schema.required = required;
    return name;
  };
  for (const k of ordered) {
    const gv = k.group ? `${k.group}/${k.version}` : k.version;
    const used = perGv.get(gv) ?? new Set<string>();
    perGv.set(gv, used);
    // The model is `V1Pod`, or with the package in front where two groups have the kind (`CoreV1Event`).
    const pkg = packageOf(k.group);
    const plain = `V${k.version.slice(1)}${k.kind}`;
    const top = await visit(plain, pkg, used) ?? await visit(pkg[0]!.toUpperCase() + pkg.slice(1) + plain, pkg, used);
    if (!top) continue;
    const schema = schemas.get(top)!;
    const gvks: KObj[] = schema['x-kubernetes-group-version-kind'] ?? [];
    if (!gvks.some((g) => g.group === k.group && g.kind === k.kind && g.version === k.version)) gvks.push({ group: k.group, kind: k.kind, version: k.version });
    schema['x-kubernetes-group-version-kind'] = gvks;
  }
  return { schemas, perGv };
}

/**
 * The component schemas of one group-version's document: its kinds and every type they
 * refer to (kube's documents also carry the core types their kinds use).
 */
export async function openApiSchemas(kinds: ServedKind[], gv: string): Promise<Record<string, KObj>> {
  built ??= build(kinds);
  const { schemas, perGv } = await built;
  const out: Record<string, KObj> = {};
  for (const name of [...(perGv.get(gv) ?? [])].sort()) {
    const s = schemas.get(name);
    if (s) out[name] = s;
  }
  return out;
}

/**
 * The OpenAPI v2 (Swagger 2.0) document at /openapi/v2, made from the OpenAPI v3 documents of
 * every served group-version (openapi.ts and the server's paths stay the one source of truth),
 * and its protobuf form: client-go's discovery asks for `/openapi/v2` only as gnostic's
 * `openapi.v2.Document` protobuf, and kubectl reads it for `kubectl explain --output
 * plaintext-openapiv2`, for client-side validation (`--validate=strict` when the server cannot
 * validate a kind, e.g. the items of a `kind: List`) and for the fieldValidation fallback.
 *
 * Also the content negotiation and conditional-request rules kube-apiserver (kube-openapi's
 * handler) applies to this path: JSON, the protobuf under its two media type names, 406 for
 * anything else; one ETag (SHA-512 of the JSON) for every representation, with `Vary: Accept`.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import protobuf from 'protobufjs';
import { stringify as yamlStringify } from 'yaml';
import type { KObj } from './store.js';

const V3_REF = '#/components/schemas/';
const V2_REF = '#/definitions/';

/** Keywords of OpenAPI v3 schemas that Swagger 2.0 cannot say; none occurs in the schemas made today. */
const V3_ONLY = new Set(['oneOf', 'anyOf', 'not', 'nullable', 'writeOnly', 'deprecated']);

function ref(v3: string): string {
  if (!v3.startsWith(V3_REF)) throw new Error(`OpenAPI v2: reference ${v3} does not point into components/schemas`);
  return V2_REF + v3.slice(V3_REF.length);
}

/** One v3 component schema as a v2 definition. */
export function schemaToV2(s: KObj): KObj {
  const out: KObj = {};
  for (const [k, v] of Object.entries(s)) {
    if (V3_ONLY.has(k)) throw new Error(`OpenAPI v2: schema keyword ${k} has no Swagger 2.0 form`);
    if (k === 'allOf' && v.length === 1 && typeof v[0].$ref === 'string' && Object.keys(v[0]).length === 1) {
      // v3 wraps a reference in allOf so that a description may stand beside it; v2 (and
      // kube-apiserver's v2 document) puts the description beside $ref itself.
      out.$ref = ref(v[0].$ref);
    } else if (k === 'allOf') out.allOf = v.map(schemaToV2);
    else if (k === '$ref') out.$ref = ref(v);
    else if (k === 'properties') out.properties = Object.fromEntries(Object.entries<KObj>(v).map(([n, p]) => [n, schemaToV2(p)]));
    else if (k === 'items') out.items = schemaToV2(v);
    else if (k === 'additionalProperties') out.additionalProperties = typeof v === 'boolean' ? v : schemaToV2(v);
    else out[k] = v;
  }
  // IntOrString: v3 says it with the extension alone; v2 has no untyped primitive, and kube's v2
  // document types it `string` with format `int-or-string` (kubectl's validation lets a string
  // schema take a number).
  if (s['x-kubernetes-int-or-string'] === true && s.type === undefined) Object.assign(out, { type: 'string', format: 'int-or-string' });
  return out;
}

function parameterToV2(p: KObj): KObj {
  const { schema, ...rest } = p;
  if (schema && (schema.$ref || schema.type === 'object' || schema.type === 'array')) throw new Error(`OpenAPI v2: parameter ${p.name} has a schema that is not a primitive`);
  return { ...rest, ...schema };
}

function operationToV2(op: KObj): KObj {
  const out: KObj = {};
  for (const [k, v] of Object.entries(op)) {
    if (k === 'requestBody') throw new Error(`OpenAPI v2: operation ${op.operationId} has a requestBody (it would need a body parameter and consumes)`);
    if (k === 'parameters') out.parameters = v.map(parameterToV2);
    else if (k === 'responses') {
      out.responses = Object.fromEntries(Object.entries<KObj>(v).map(([code, r]) => {
        if (r.content) throw new Error(`OpenAPI v2: response ${code} of ${op.operationId} has content`);
        return [code, r];
      }));
    } else out[k] = v;
  }
  // No `consumes` on purpose, above all on PATCH: kubectl apply reads the PATCH consumes of a
  // kind from this document and, when it lists strategic-merge-patch, computes the patch from
  // these schemas, which lack the patch strategies and merge keys. Without it, kubectl keeps
  // computing strategic merge patches from its built-in types, as it does with the v3 documents.
  return out;
}

/** Swagger 2.0 from the v3 documents of every served group-version. */
export function openApiV2FromV3(v3Docs: KObj[], info: { title: string; version: string }): KObj {
  const paths: KObj = {};
  const definitions: KObj = {};
  for (const doc of v3Docs) {
    for (const [p, item] of Object.entries<KObj>(doc.paths ?? {})) {
      paths[p] = Object.fromEntries(Object.entries<KObj>(item).map(([method, op]) => [method, method === 'parameters' ? op.map(parameterToV2) : operationToV2(op)]));
    }
    // A type used by several group-versions is the same schema in each of their documents.
    for (const [name, s] of Object.entries<KObj>(doc.components?.schemas ?? {})) definitions[name] ??= schemaToV2(s);
  }
  const sorted = (o: KObj) => Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
  return { swagger: '2.0', info, paths: sorted(paths), definitions: sorted(definitions) };
}

// ---------------------------------------------------------------- gnostic protobuf

/**
 * The messages of gnostic's openapiv2/OpenAPIv2.proto (package openapi.v2) that a document
 * made here uses, with gnostic's field numbers; written here, not generated, and kept to that
 * subset. An Any carries its value as YAML text (field 2), which is how gnostic stores vendor
 * extensions, defaults and enums and how kube-openapi reads them back.
 */
export const OPENAPI_V2_PROTO = `
syntax = "proto3";
package openapi.v2;
message Document {
  string swagger = 1; Info info = 2; string host = 3; string base_path = 4; repeated string schemes = 5;
  repeated string consumes = 6; repeated string produces = 7; Paths paths = 8; Definitions definitions = 9;
  repeated NamedAny vendor_extension = 16;
}
message Info { string title = 1; string version = 2; string description = 3; repeated NamedAny vendor_extension = 7; }
message Any { string yaml = 2; }
message NamedAny { string name = 1; Any value = 2; }
message Paths { repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2; }
message NamedPathItem { string name = 1; PathItem value = 2; }
message PathItem {
  string _ref = 1; Operation get = 2; Operation put = 3; Operation post = 4; Operation delete = 5;
  Operation options = 6; Operation head = 7; Operation patch = 8; repeated ParametersItem parameters = 9;
  repeated NamedAny vendor_extension = 10;
}
message Operation {
  repeated string tags = 1; string summary = 2; string description = 3; string operation_id = 5;
  repeated string produces = 6; repeated string consumes = 7; repeated ParametersItem parameters = 8;
  Responses responses = 9; repeated string schemes = 10; bool deprecated = 11; repeated NamedAny vendor_extension = 13;
}
message ParametersItem { oneof oneof { Parameter parameter = 1; } }
message Parameter { oneof oneof { BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2; } }
message BodyParameter {
  string description = 1; string name = 2; string in = 3; bool required = 4; Schema schema = 5;
  repeated NamedAny vendor_extension = 6;
}
message NonBodyParameter {
  oneof oneof { QueryParameterSubSchema query_parameter_sub_schema = 3; PathParameterSubSchema path_parameter_sub_schema = 4; }
}
message QueryParameterSubSchema {
  bool required = 1; string in = 2; string description = 3; string name = 4; bool allow_empty_value = 5;
  string type = 6; string format = 7; bool unique_items = 20; repeated NamedAny vendor_extension = 23;
}
message PathParameterSubSchema {
  bool required = 1; string in = 2; string description = 3; string name = 4; string type = 5; string format = 6;
  bool unique_items = 19; repeated NamedAny vendor_extension = 22;
}
message Responses { repeated NamedResponseValue response_code = 1; repeated NamedAny vendor_extension = 2; }
message NamedResponseValue { string name = 1; ResponseValue value = 2; }
message ResponseValue { oneof oneof { Response response = 1; } }
message Response { string description = 1; SchemaItem schema = 2; repeated NamedAny vendor_extension = 5; }
message SchemaItem { oneof oneof { Schema schema = 1; } }
message Definitions { repeated NamedSchema additional_properties = 1; }
message NamedSchema { string name = 1; Schema value = 2; }
message Properties { repeated NamedSchema additional_properties = 1; }
message AdditionalPropertiesItem { oneof oneof { Schema schema = 1; bool boolean = 2; } }
message TypeItem { repeated string value = 1; }
message ItemsItem { repeated Schema schema = 1; }
message Schema {
  string _ref = 1; string format = 2; string title = 3; string description = 4; Any default = 5;
  double multiple_of = 6; double maximum = 7; bool exclusive_maximum = 8; double minimum = 9; bool exclusive_minimum = 10;
  int64 max_length = 11; int64 min_length = 12; string pattern = 13; int64 max_items = 14; int64 min_items = 15;
  bool unique_items = 16; int64 max_properties = 17; int64 min_properties = 18; repeated string required = 19;
  repeated Any enum = 20; AdditionalPropertiesItem additional_properties = 21; TypeItem type = 22; ItemsItem items = 23;
  repeated Schema all_of = 24; Properties properties = 25; string discriminator = 26; bool read_only = 27;
  Any example = 30; repeated NamedAny vendor_extension = 31;
}
`;

let root: protobuf.Root | undefined;
/** The message types, parsed once on first use (keepCase: the field names are gnostic's). */
export function openApiV2Type(name: string): protobuf.Type {
  root ??= protobuf.parse(OPENAPI_V2_PROTO, { keepCase: true }).root;
  return root.lookupType(`openapi.v2.${name}`);
}

const anyOf = (v: unknown) => ({ yaml: yamlStringify(v) });
const isExtension = (k: string) => k.startsWith('x-');

/** Where a JSON key lands in a message: a renamed scalar, or handled by the caller. */
function scalars(o: KObj, names: Record<string, string>, what: string, handled: string[] = []): KObj {
  const out: KObj = {};
  const ext: KObj[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (handled.includes(k)) continue;
    if (isExtension(k)) ext.push({ name: k, value: anyOf(v) });
    else if (k in names) out[names[k]!] = v;
    else throw new Error(`OpenAPI v2 protobuf: ${what} field ${k} has no place in the message`);
  }
  if (ext.length) out.vendor_extension = ext;
  return out;
}

const SCHEMA_SCALARS: Record<string, string> = {
  $ref: '_ref', format: 'format', title: 'title', description: 'description', multipleOf: 'multiple_of', maximum: 'maximum',
  exclusiveMaximum: 'exclusive_maximum', minimum: 'minimum', exclusiveMinimum: 'exclusive_minimum', maxLength: 'max_length',
  minLength: 'min_length', pattern: 'pattern', maxItems: 'max_items', minItems: 'min_items', uniqueItems: 'unique_items',
  maxProperties: 'max_properties', minProperties: 'min_properties', required: 'required', discriminator: 'discriminator', readOnly: 'read_only',
};

function schemaMessage(s: KObj): KObj {
  const out = scalars(s, SCHEMA_SCALARS, 'schema', ['default', 'enum', 'additionalProperties', 'type', 'items', 'allOf', 'properties', 'example']);
  if (s.default !== undefined) out.default = anyOf(s.default);
  if (s.example !== undefined) out.example = anyOf(s.example);
  if (s.enum) out.enum = s.enum.map(anyOf);
  if (s.additionalProperties !== undefined) out.additional_properties = typeof s.additionalProperties === 'boolean' ? { boolean: s.additionalProperties } : { schema: schemaMessage(s.additionalProperties) };
  if (s.type !== undefined) out.type = { value: Array.isArray(s.type) ? s.type : [s.type] };
  if (s.items) out.items = { schema: (Array.isArray(s.items) ? s.items : [s.items]).map(schemaMessage) };
  if (s.allOf) out.all_of = s.allOf.map(schemaMessage);
  if (s.properties) out.properties = { additional_properties: Object.entries<KObj>(s.properties).map(([name, p]) => ({ name, value: schemaMessage(p) })) };
  return out;
}

function parameterMessage(p: KObj): KObj {
  if (p.in === 'body') return { parameter: { body_parameter: { ...scalars(p, { description: 'description', name: 'name', in: 'in', required: 'required' }, 'body parameter', ['schema']), ...(p.schema ? { schema: schemaMessage(p.schema) } : {}) } } };
  const common = { required: 'required', in: 'in', description: 'description', name: 'name', type: 'type', format: 'format', uniqueItems: 'unique_items' };
  if (p.in === 'query') return { parameter: { non_body_parameter: { query_parameter_sub_schema: scalars(p, { ...common, allowEmptyValue: 'allow_empty_value' }, 'query parameter') } } };
  if (p.in === 'path') return { parameter: { non_body_parameter: { path_parameter_sub_schema: scalars(p, common, 'path parameter') } } };
  throw new Error(`OpenAPI v2 protobuf: parameter ${p.name} in ${p.in} has no message here`);
}

function operationMessage(op: KObj): KObj {
  const out = scalars(op, { tags: 'tags', summary: 'summary', description: 'description', operationId: 'operation_id', produces: 'produces', consumes: 'consumes', schemes: 'schemes', deprecated: 'deprecated' }, 'operation', ['parameters', 'responses']);
  if (op.parameters) out.parameters = op.parameters.map(parameterMessage);
  if (op.responses) {
    const responses = scalars(op.responses, {}, 'responses', Object.keys(op.responses).filter((k) => !isExtension(k)));
    responses.response_code = Object.entries<KObj>(op.responses).filter(([k]) => !isExtension(k)).map(([name, r]) => ({
      name,
      value: { response: { ...scalars(r, { description: 'description' }, 'response', ['schema']), ...(r.schema ? { schema: { schema: schemaMessage(r.schema) } } : {}) } },
    }));
    out.responses = responses;
  }
  return out;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];

/** A Swagger 2.0 JSON document as gnostic's Document message (a plain object for protobufjs). */
export function gnosticDocument(doc: KObj): KObj {
  const out = scalars(doc, { swagger: 'swagger', host: 'host', basePath: 'base_path', schemes: 'schemes', consumes: 'consumes', produces: 'produces' }, 'document', ['info', 'paths', 'definitions']);
  if (doc.info) out.info = scalars(doc.info, { title: 'title', version: 'version', description: 'description' }, 'info');
  if (doc.paths) {
    const paths = scalars(doc.paths, {}, 'paths', Object.keys(doc.paths).filter((k) => !isExtension(k)));
    paths.path = Object.entries<KObj>(doc.paths).filter(([k]) => !isExtension(k)).map(([name, item]) => {
      const value = scalars(item, { $ref: '_ref' }, 'path item', [...METHODS, 'parameters']);
      for (const m of METHODS) if (item[m]) value[m] = operationMessage(item[m]);
      if (item.parameters) value.parameters = item.parameters.map(parameterMessage);
      return { name, value };
    });
    out.paths = paths;
  }
  if (doc.definitions) out.definitions = { additional_properties: Object.entries<KObj>(doc.definitions).map(([name, s]) => ({ name, value: schemaMessage(s) })) };
  return out;
}

/** The protobuf bytes of a Swagger 2.0 JSON document. */
export function encodeOpenApiV2(doc: KObj): Buffer {
  const type = openApiV2Type('Document');
  const message = gnosticDocument(doc);
  const invalid = type.verify(message);
  if (invalid) throw new Error(`OpenAPI v2 protobuf: ${invalid}`);
  return Buffer.from(type.encode(message).finish());
}

// ---------------------------------------------------------------- serving

export const OPENAPI_V2_JSON = 'application/json';
/** kube-openapi's current name for the protobuf, and the older one client-go still sends (answered under the current name). */
export const OPENAPI_V2_PROTOBUF = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf';
export const OPENAPI_V2_PROTOBUF_OLD = 'application/com.github.proto-openapi.spec.v2@v1.0+protobuf';

/**
 * Which representation an Accept header gets, as kube-openapi picks it: clauses by quality, then
 * by how specific they are; the first clause that names (or wildcards) a representation wins;
 * none: undefined (406). No Accept is `*∕*`, so JSON. A clause with q=0 refuses, as RFC 9110 says.
 */
export function negotiateOpenApiV2(accept: string | undefined): 'json' | 'protobuf' | undefined {
  const clauses = (accept?.trim() ? accept : '*/*').split(',').map((c, index) => {
    const [range = '', ...params] = c.split(';').map((x) => x.trim());
    const [type = '', subtype = ''] = range.toLowerCase().split('/');
    const qParam = params.find((x) => /^q=/i.test(x));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    const specificity = type === '*' ? 0 : subtype === '*' ? 1 : 2;
    return { type, subtype, q: Number.isFinite(q) ? q : 0, specificity, index };
  }).filter((c) => c.q > 0);
  clauses.sort((a, b) => b.q - a.q || b.specificity - a.specificity || a.index - b.index);
  const offered: Array<[string, 'json' | 'protobuf']> = [[OPENAPI_V2_JSON, 'json'], [OPENAPI_V2_PROTOBUF_OLD, 'protobuf'], [OPENAPI_V2_PROTOBUF, 'protobuf']];
  for (const c of clauses) {
    for (const [media, kind] of offered) {
      const [type, subtype] = media.split('/');
      if ((c.type === type || c.type === '*') && (c.subtype === subtype || c.subtype === '*')) return kind;
    }
  }
  return undefined;
}

/** One representation of a document, kept as the bytes sent (and their gzip, made on first ask). */
export class CachedRepresentation {
  private gzipped: Buffer | undefined;
  constructor(readonly body: Buffer, readonly contentType: string, readonly etag: string, readonly lastModified: Date) {}

  /** The ETag kube-openapi gives: the SHA-512 of the JSON, upper-case hex, quoted. */
  static etagOf(json: Buffer | string): string {
    return `"${createHash('sha512').update(json).digest('hex').toUpperCase()}"`;
  }

  /**
   * Send it as net/http's ServeContent does for kube-apiserver: 304 when If-None-Match names the
   * ETag (or when, without If-None-Match, If-Modified-Since is not older than the document), and
   * gzip when the client accepts it (kube-openapi's handler is behind a gzip handler).
   */
  send(req: IncomingMessage, res: ServerResponse, extraHeaders: Record<string, string> = {}): void {
    const headers: Record<string, string | number> = { 'Content-Type': this.contentType, ETag: this.etag, 'Last-Modified': this.lastModified.toUTCString(), Vary: 'Accept, Accept-Encoding', 'Cache-Control': 'no-cache, private', ...extraHeaders };
    const noneMatch = req.headers['if-none-match'];
    const since = req.headers['if-modified-since'];
    const weak = (t: string) => t.trim().replace(/^W\//, '');
    const notModified = noneMatch !== undefined
      ? noneMatch.split(',').some((t) => t.trim() === '*' || weak(t) === weak(this.etag))
      : since !== undefined && !Number.isNaN(Date.parse(since)) && Math.floor(this.lastModified.getTime() / 1000) <= Date.parse(since) / 1000;
    if (notModified) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    let body = this.body;
    if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      this.gzipped ??= gzipSync(this.body);
      body = this.gzipped;
      headers['Content-Encoding'] = 'gzip';
    }
    headers['Content-Length'] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

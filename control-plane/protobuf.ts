/**
 * Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed
 * clients send (`kubectl create secret …` and `kubectl create namespace` post
 * `application/vnd.kubernetes.protobuf` and do not fall back to JSON): the
 * `k8s\0` envelope (runtime.Unknown), v1 Secret and v1 Namespace with the
 * ObjectMeta fields a create carries. Everything else is a
 * 415 that names the media types this server speaks. Replies stay JSON
 * (clients accept it: they send `Accept: …protobuf, application/json`).
 */
import { ApiError } from './resources.js';
import type { KObj } from './store.js';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

interface Field { no: number; wire: number; value: bigint | Buffer }

/** Decode one message level into its fields (varint, 64-bit, length-delimited, 32-bit). */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length || shift > 63n) throw new Error('truncated or overlong varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error('length-delimited field runs past the end');
      out.push({ no, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (i > buf.length) throw new Error('field runs past the end');
  }
  return out;
}

const bytesOf = (f: Field) => (Buffer.isBuffer(f.value) ? f.value : Buffer.alloc(0));
const str = (f: Field) => bytesOf(f).toString('utf8');

function mapEntry(f: Field): [string, Buffer] {
  let k = '';
  let v: Buffer = Buffer.alloc(0);
  for (const e of fields(bytesOf(f))) {
    if (e.no === 1) k = str(e);
    else if (e.no === 2) v = bytesOf(e);
  }
  return [k, v];
}

function objectMeta(buf: Buffer): KObj {
  const meta: KObj = {};
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: meta.name = str(f); break;
      case 2: meta.generateName = str(f); break;
      case 3: meta.namespace = str(f); break;
      case 6: meta.resourceVersion = str(f); break;
      case 11: { const [k, v] = mapEntry(f); (meta.labels ??= {})[k] = v.toString('utf8'); break; }
      case 12: { const [k, v] = mapEntry(f); (meta.annotations ??= {})[k] = v.toString('utf8'); break; }
      case 14: (meta.finalizers ??= []).push(str(f)); break;
      default: break; // uid, timestamps, owner references…: a create does not need them
    }
  }
  for (const k of ['name', 'generateName', 'namespace', 'resourceVersion']) if (meta[k] === '') delete meta[k];
  return meta;
}

function secret(buf: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'Secret', metadata: {} };
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: obj.metadata = objectMeta(bytesOf(f)); break;
      case 2: { const [k, v] = mapEntry(f); (obj.data ??= {})[k] = v.toString('base64'); break; }
      case 3: obj.type = str(f); break;
      case 4: { const [k, v] = mapEntry(f); (obj.stringData ??= {})[k] = v.toString('utf8'); break; }
      case 5: obj.immutable = f.value !== 0n; break;
      default: break;
    }
  }
  return obj;
}

function namespace(buf: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'Namespace', metadata: {} };
  for (const f of fields(buf)) {
    if (f.no === 1) obj.metadata = objectMeta(bytesOf(f));
    else if (f.no === 2) for (const s of fields(bytesOf(f))) if (s.no === 1) ((obj.spec ??= {}).finalizers ??= []).push(str(s));
  }
  return obj;
}

/** The kinds kubectl's typed clients create here: `kubectl create secret …`, `kubectl create namespace`. */
const DECODERS: Record<string, (b: Buffer) => KObj> = { 'v1/Secret': secret, 'v1/Namespace': namespace };

/** A protobuf request body as the JSON object it encodes; 415 for kinds this server cannot decode. */
export function decodeProtobufBody(buf: Buffer): KObj {
  if (buf.length < 4 || !buf.subarray(0, 4).equals(MAGIC)) throw new ApiError(400, 'BadRequest', 'the protobuf request body does not start with the k8s envelope');
  try {
    let apiVersion = '';
    let kind = '';
    let raw: Buffer = Buffer.alloc(0);
    for (const f of fields(buf.subarray(4))) {
      if (f.no === 1) for (const t of fields(bytesOf(f))) t.no === 1 ? (apiVersion = str(t)) : t.no === 2 ? (kind = str(t)) : undefined;
      else if (f.no === 2) raw = bytesOf(f);
    }
    const decode = DECODERS[`${apiVersion}/${kind}`];
    if (!decode) {
      throw new ApiError(415, 'UnsupportedMediaType', `this control plane decodes protobuf only for v1 Secret and Namespace, not ${apiVersion}/${kind}; send application/json or application/yaml`);
    }
    return decode(raw);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(400, 'BadRequest', `the protobuf request body cannot be decoded: ${(err as Error).message}`);
  }
}

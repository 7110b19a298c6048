import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The .proto files live in the source tree (api-service/), next to this
 * module's source; compiled code runs from dist/api-service/, so resolve them
 * from the repository root either way.
 */
const here = fileURLToPath(new URL('.', import.meta.url));
const root = here.includes('/dist/') ? here.slice(0, here.lastIndexOf('/dist/')) : fileURLToPath(new URL('..', import.meta.url));
export const V1ALPHA_PROTO = `${root}/api-service/v1alpha.proto`;
export const HEALTH_PROTO = `${root}/api-service/health.proto`;

/**
 * How messages look in JavaScript, for the server and for clients of this
 * repository: field names as in the .proto (`Key`, `created_at`), enums as
 * their names, 64-bit integers as decimal strings (ns timestamps do not fit a
 * double), every field present with its default.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  oneofs: true,
};

export function loadDefinitions(): protoLoader.PackageDefinition {
  return protoLoader.loadSync([V1ALPHA_PROTO, HEALTH_PROTO], LOADER_OPTIONS);
}

export const POD_STATES = ['POD_STATE_UNDEFINED', 'POD_STATE_EMBRYO', 'POD_STATE_PREPARING', 'POD_STATE_PREPARED', 'POD_STATE_RUNNING',
  'POD_STATE_ABORTED_PREPARE', 'POD_STATE_EXITED', 'POD_STATE_DELETING', 'POD_STATE_GARBAGE'] as const;
export type PodStateName = (typeof POD_STATES)[number];
export const EVENT_TYPES = ['EVENT_TYPE_UNDEFINED', 'EVENT_TYPE_POD_PREPARED', 'EVENT_TYPE_POD_PREPARE_ABORTED', 'EVENT_TYPE_POD_STARTED',
  'EVENT_TYPE_POD_EXITED', 'EVENT_TYPE_POD_GARBAGE_COLLECTED', 'EVENT_TYPE_APP_STARTED', 'EVENT_TYPE_APP_EXITED',
  'EVENT_TYPE_IMAGE_IMPORTED', 'EVENT_TYPE_IMAGE_REMOVED'] as const;
export type EventTypeName = (typeof EVENT_TYPES)[number];
export type AppStateName = 'APP_STATE_UNDEFINED' | 'APP_STATE_RUNNING' | 'APP_STATE_EXITED';
export type ImageTypeName = 'IMAGE_TYPE_UNDEFINED' | 'IMAGE_TYPE_APPC' | 'IMAGE_TYPE_DOCKER' | 'IMAGE_TYPE_OCI';

// ---- message shapes (as LOADER_OPTIONS decode them) ------------------------

export interface KeyValue { Key: string; value: string }
export interface ImageFormatMsg { type: ImageTypeName; version: string }
export interface ImageMsg {
  base_format: ImageFormatMsg | null; id: string; name: string; version: string; import_timestamp: string;
  manifest: Buffer; size: string; annotations: KeyValue[]; labels: KeyValue[];
}
export interface NetworkMsg { name: string; ipv4: string; ipv6: string }
export interface AppMsg { name: string; image: ImageMsg | null; state: AppStateName; exit_code: number; annotations: KeyValue[] }
export interface PodMsg {
  id: string; pid: number; state: PodStateName; apps: AppMsg[]; networks: NetworkMsg[]; manifest: Buffer;
  annotations: KeyValue[]; cgroup: string; created_at: string; started_at: string; gc_marked_at: string;
}
export interface PodFilterMsg {
  ids: string[]; states: Array<PodStateName | number>; app_names: string[]; image_ids: string[]; network_names: string[];
  annotations: KeyValue[]; cgroups: string[]; pod_sub_cgroups: string[];
}
export interface ImageFilterMsg {
  ids: string[]; prefixes: string[]; base_names: string[]; keywords: string[]; labels: KeyValue[];
  imported_after: string; imported_before: string; annotations: KeyValue[]; full_names: string[];
}
export interface EventMsg { type: EventTypeName; id: string; from: string; time: string; data: KeyValue[] }
export interface EventFilterMsg { types: Array<EventTypeName | number>; ids: string[]; names: string[]; since_time: string; until_time: string }
export interface GetLogsRequestMsg { pod_id: string; app_name: string; lines: number; follow: boolean; since_time: string; until_time: string }

/**
 * runtime-docker: the agent's ContainerRuntime on a Docker Engine started
 * inside the node (see README.md).
 */
import * as path from 'node:path';
import type { ClusterDnsConfig } from './pod-env.js';
import { UserError } from '../common/errors.js';
import { EngineClient } from './engine-api.js';
import { enginePaths, ensureEngine, ping, stopEngine, type EngineOptions } from './engine.js';
import { DockerRuntime } from './runtime.js';
import type { PodNetworkOptions, RuntimeFactory, RuntimeOpenOptions } from './types.js';

export { DockerRuntime, DOCKER_HANDLERS, LABEL } from './runtime.js';
export { EngineClient, EngineError, demultiplex } from './engine-api.js';
export { dockerImageGc, type DockerImageGcOptions, type DockerImageGcResult } from './image-gc.js';
export { ensureEngine, stopEngine, enginePaths, DEFAULT_ENGINE_UNIT } from './engine.js';
export { PAUSE_IMAGE, busyboxRootfsTar, importImage, importDemoImage, type RootfsEntry } from './infra.js';

export interface DockerRuntimeOpenOptions {
  /** The node's data dir: our engine lives in <dataDir>/docker/engine, pod files in <dataDir>/docker/pods. */
  dataDir: string;
  /** The node's systemd, which runs our dockerd as a unit. */
  dbusAddress?: string;
  network?: PodNetworkOptions;
  clusterDns?: ClusterDnsConfig;
  /** An engine someone else runs (its unix socket): used as it is, never started or stopped by us. */
  dockerEndpoint?: string;
  engineUnit?: string;
}

export const dockerDirs = (dataDir: string) => ({ root: path.join(dataDir, 'docker'), engine: path.join(dataDir, 'docker', 'engine') });

export function engineOptions(opts: DockerRuntimeOpenOptions): EngineOptions {
  return { dir: dockerDirs(opts.dataDir).engine, dbusAddress: opts.dbusAddress, ...(opts.engineUnit ? { unit: opts.engineUnit } : {}) };
}

/** Start (or find) the node's engine and return the runtime over it, following the engine's events. */
export async function openDockerRuntime(opts: DockerRuntimeOpenOptions): Promise<DockerRuntime> {
  const engine = opts.dockerEndpoint ? await existingEngine(opts.dockerEndpoint.replace(/^unix:\/\//, '')) : await ensureEngine(engineOptions(opts));
  const version = (await engine.call<{ Version: string }>('GET', '/version')).Version;
  const rt = new DockerRuntime(engine, version, { dir: dockerDirs(opts.dataDir).root, network: opts.network, clusterDns: opts.clusterDns });
  await rt.loadEnded();
  void rt.watchEvents();
  await rt.advanceAll();
  return rt;
}

/**
 * The node's docker pods for a reader (`stevedore pod list|status`): the
 * engine at `dockerEndpoint`, else the node's own one under dataDir. Never
 * starts an engine, follows no events and changes nothing: a node without a
 * running engine gets an error saying so.
 */
export async function connectDockerRuntime(opts: { dataDir: string; dockerEndpoint?: string }): Promise<DockerRuntime> {
  const socket = opts.dockerEndpoint ? opts.dockerEndpoint.replace(/^unix:\/\//, '') : enginePaths(dockerDirs(opts.dataDir).engine).socket;
  const engine = new EngineClient(socket);
  if (!(await ping(engine))) {
    throw new UserError(`no docker engine answers on ${socket}`, {
      hint: opts.dockerEndpoint ? 'start dockerd there, or check --docker-endpoint' : 'is this node running with --container-runtime=docker (`stevedore up --container-runtime=docker`), and is --dir its data dir?',
    });
  }
  const version = (await engine.call<{ Version: string }>('GET', '/version')).Version;
  const rt = new DockerRuntime(engine, version, { dir: dockerDirs(opts.dataDir).root });
  await rt.loadEnded();
  return rt;
}

async function existingEngine(socket: string): Promise<EngineClient> {
  const engine = new EngineClient(socket);
  if (!(await ping(engine))) throw new UserError(`no docker engine answers on ${socket}`, { hint: 'start dockerd there, or leave --docker-endpoint out to have the agent run its own' });
  return engine;
}

/** The agent's factory for --container-runtime=docker (the composition root maps the name to it). */
export const dockerRuntimeFactory: RuntimeFactory = (opts: RuntimeOpenOptions) => openDockerRuntime(opts);

/**
 * Take a node's docker pods apart (`stevedore down`): every pod removed (its
 * containers, CNI attachment, files), then our dockerd stopped. An engine
 * that does not answer has nothing left to remove.
 */
export async function teardownDockerNode(opts: { dataDir: string; dbusAddress?: string; engineUnit?: string }): Promise<void> {
  const engine = new EngineClient(enginePaths(dockerDirs(opts.dataDir).engine).socket);
  if (await ping(engine)) {
    const rt = new DockerRuntime(engine, '', { dir: dockerDirs(opts.dataDir).root });
    for (const pod of await rt.listPods()) await rt.removePod(pod.uuid);
    await rt.gc();
  }
  await stopEngine(engineOptions(opts));
}

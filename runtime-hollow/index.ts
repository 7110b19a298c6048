/**
 * runtime-hollow: the agent's ContainerRuntime for hollow nodes, whose pods
 * only pretend to run (see README.md). Imports runtime-api and common only.
 */
export { HollowRuntime, IpPool, hollowRuntimeFactory, createdStatus, startedStatus, stoppedStatus, imageId, DEFAULT_START_DELAY_MS, HOLLOW_NODE_LABEL, HOLLOW_VERSION, type HollowRuntimeOptions } from './runtime.js';

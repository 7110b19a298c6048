/**
 * --docker-endpoint (the kubelet's flag): the agent's config takes a unix
 * socket for --container-runtime=docker and refuses anything else with a
 * reason; runtime-docker uses the endpoint as it is (never starts an engine
 * there) and says so when nothing answers. The real engine behind an endpoint
 * is in runtime-docker.test.ts. No root needed: a temp dir only.
 */
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InvalidInput, UserError } from '../common/errors.js';
import { loadAgentConfig } from '../agent/config.js';
import { openDockerRuntime } from '../runtime-docker/index.js';
import { rejects } from './helpers/assert.js';
import { tempDir } from './helpers/images.js';

test('the agent config: a unix socket for docker is taken; another scheme, or the flag on rkt, is refused', async () => {
  const cfg = await loadAgentConfig({ kubeconfig: '/dev/null', containerRuntime: 'docker', dockerEndpoint: 'unix:///var/run/docker.sock' });
  assert.is(cfg.dockerEndpoint, 'unix:///var/run/docker.sock');
  assert.is((await loadAgentConfig({ kubeconfig: '/dev/null', containerRuntime: 'docker' })).dockerEndpoint, undefined, 'unset by default: the node runs its own dockerd');
  await rejects(loadAgentConfig({ kubeconfig: '/dev/null', containerRuntime: 'docker', dockerEndpoint: 'tcp://127.0.0.1:2375' }), /only a unix socket is supported/, InvalidInput);
  await rejects(loadAgentConfig({ kubeconfig: '/dev/null', dockerEndpoint: 'unix:///var/run/docker.sock' }), /--docker-endpoint is for --container-runtime=docker/, InvalidInput);
});

test('runtime-docker on an endpoint where no engine answers: a UserError naming the socket; nothing started', async () => {
  const dir = await tempDir('docker-endpoint');
  try {
    // A socket that accepts and hangs up: something is there, but not an engine.
    const sock = path.join(dir, 'not-docker.sock');
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      await rejects(openDockerRuntime({ dataDir: path.join(dir, 'node'), dockerEndpoint: `unix://${sock}` }), new RegExp(`no docker engine answers on ${sock}`), UserError);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    await rejects(openDockerRuntime({ dataDir: path.join(dir, 'node'), dockerEndpoint: path.join(dir, 'absent.sock') }), /no docker engine answers on/, UserError);
    assert.not.ok(await fs.stat(path.join(dir, 'node', 'docker', 'engine')).catch(() => undefined), 'no engine of our own was set up');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();

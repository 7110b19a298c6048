/**
 * native/netns.c's loopbackUpInNetns (common/netns-dial.ts), as the docker
 * runtime uses it on an infra container's namespace: `lo` comes up inside a
 * namespace made with it down, the agent's own namespace is untouched, and a
 * file that is not a network namespace, or is missing, is refused naming it.
 * The docker pods' apps talking over 127.0.0.1 are in runtime-docker.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loopbackUpInNetns } from '../common/netns-dial.js';
import { inNetns, removeNetns, run } from './helpers/netns.js';

let dir = '';
let nsFile = '';

test.before(async () => {
  dir = await fs.mkdtemp('/var/tmp/stevedore-netns-addon-');
  nsFile = path.join(dir, 'net');
  await fs.writeFile(nsFile, '');
  // A namespace kept by its file, `lo` left down as a new namespace has it.
  await run('unshare', [`--net=${nsFile}`, '--', 'true']);
});

test.after(async () => {
  await removeNetns(nsFile);
  await fs.rm(dir, { recursive: true, force: true });
});

const loIsUp = async (file?: string) => {
  const argv = ['ip', '-o', 'link', 'show', 'lo'];
  const r = file ? await inNetns(file, argv) : await run(argv[0]!, argv.slice(1));
  return /<[^>]*\bUP\b[^>]*>/.test(r.stdout);
};

test('lo comes up inside the namespace, and the calling process stays in its own', async () => {
  assert.not.ok(await loIsUp(nsFile), 'a new namespace starts with lo down');
  const before = await fs.readlink('/proc/self/ns/net');
  // More calls than the pool has threads: every thread that entered must have come back.
  await Promise.all(Array.from({ length: 8 }, () => loopbackUpInNetns(nsFile)));
  assert.ok(await loIsUp(nsFile), 'lo is up in the namespace');
  assert.is(await fs.readlink('/proc/self/ns/net'), before);
  for (const task of await fs.readdir('/proc/self/task')) {
    assert.is(await fs.readlink(`/proc/self/task/${task}/ns/net`), before, `thread ${task} is back in the node's namespace`);
  }
});

test('a file that is not a network namespace, or none at all: refused, naming it', async () => {
  const plain = path.join(dir, 'plain');
  await fs.writeFile(plain, '');
  const err = await loopbackUpInNetns(plain).then(() => undefined, (e: Error & { code?: string }) => e);
  assert.is(err?.code, 'EINVAL');
  assert.match(err?.message ?? '', /setns.*plain/);
  const missing = await loopbackUpInNetns(path.join(dir, 'missing')).then(() => undefined, (e: Error & { code?: string }) => e);
  assert.is(missing?.code, 'ENOENT');
  assert.match(missing?.message ?? '', /open.*missing/);
});

test.run();

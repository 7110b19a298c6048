import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { eventually, podStatus, useNode, type TestNode } from './helpers/node.js';

const pods = suite('runtime: pods under fly and namespaces');
const getNode = useNode(pods);

const twoContainers = (name: string) => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: team-a}
spec:
  restartPolicy: Never
  containers:
  - name: alpha
    image: busybox
    command: [sh, -c, 'echo alpha-line-1; echo alpha-line-2; echo pid1=$(cat /proc/1/comm) hostname=$(hostname); ps -o pid,comm; sleep 60']
  - name: beta
    image: busybox
    command: [sh, -c, 'echo beta-line-1 >&2; echo beta-line-2; sleep 60']
`;

async function runTwo(node: TestNode, stage1: string): Promise<string> {
  const file = await node.manifest(`two-${stage1}.yaml`, twoContainers(`two-${stage1}`));
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', stage1])).trim();
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  await eventually('both apps running and logging', async () => {
    const s = await podStatus(node, uuid);
    const logs = await node.ok(['pod', 'logs', uuid, '-c', 'alpha']);
    return s.apps.every((a) => a.state === 'running') && logs.includes('hostname=') ? true : undefined;
  });
  return uuid;
}

for (const stage1 of ['namespaces', 'fly']) {
  pods(`${stage1}: a two-container pod runs, each container's output is its own`, async () => {
    const node = getNode();
    const uuid = await runTwo(node, stage1);
    const s = await podStatus(node, uuid);
    assert.is(s.state, 'running');
    assert.is(s.stage1, stage1);
    assert.equal(s.apps.map((a) => a.name), ['alpha', 'beta']);
    const alpha = await node.ok(['pod', 'logs', uuid, '-c', 'alpha']);
    const beta = await node.ok(['pod', 'logs', uuid, '-c', 'beta']);
    assert.ok(alpha.includes('alpha-line-1\nalpha-line-2\n'), alpha);
    assert.not.match(alpha, /beta-line/);
    assert.is(beta, 'beta-line-1\nbeta-line-2\n', 'stderr and stdout of beta, and nothing else');
    assert.is(await node.ok(['pod', 'logs', uuid, '-c', 'alpha', '--tail', '1']), alpha.trimEnd().split('\n').at(-1) + '\n');
    const stamped = await node.ok(['pod', 'logs', uuid, '-c', 'beta', '--timestamps']);
    assert.match(stamped, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z beta-line-1$/m);
    // The journal itself tags each line with the container: no cross-talk.
    const journal = await node.sh(`journalctl -o cat STEVEDORE_POD_UUID=${uuid} STEVEDORE_CONTAINER=beta _TRANSPORT=stdout`);
    assert.is(journal.stdout, 'beta-line-1\nbeta-line-2\n');
    await node.ok(['pod', 'rm', '--force', uuid]);
  });
}

pods('namespaces isolates pid and uts; fly shares the node\'s', async () => {
  const node = getNode();
  const ns = await runTwo(node, 'namespaces');
  const nsLogs = await node.ok(['pod', 'logs', ns, '-c', 'alpha']);
  assert.match(nsLogs, /pid1=sh hostname=two-namespaces/);
  assert.not.match(nsLogs, /systemd|journald|dbus/, 'host processes are invisible');
  const psLines = nsLogs.split('\n').filter((l) => /^\s*\d+\s/.test(l));
  assert.ok(psLines.length <= 3, `only the container's own processes: ${psLines.join(' | ')}`);
  const fly = await runTwo(node, 'fly');
  const flyLogs = await node.ok(['pod', 'logs', fly, '-c', 'alpha']);
  assert.match(flyLogs, /pid1=systemd hostname=/);
  assert.not.match(flyLogs, /hostname=two-fly/);
  assert.match(flyLogs, /systemd-journal/, 'fly sees the node\'s processes');
  await node.ok(['pod', 'rm', '--force', ns, fly]);
});

pods('a memory hog over its limit is OOMKilled; a cpu limit throttles', async () => {
  const node = getNode();
  const file = await node.manifest('hog.yaml', `
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: mem
    image: busybox
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=2]
    resources: {limits: {memory: 16Mi}}
  - name: cpu
    image: busybox
    command: [sh, -c, 'while :; do :; done']
    resources: {limits: {cpu: 200m}}
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file])).trim();
  const mem = await eventually('the hog to exit', async () => (await podStatus(node, uuid)).apps.find((a) => a.name === 'mem' && a.state === 'exited'));
  assert.is(mem.reason, 'OOMKilled');
  assert.is(mem.exitCode, 137);
  const hex = uuid.replace(/-/g, '');
  const cg = `/sys/fs/cgroup/cpu/stevedore.slice/stevedore-${hex}.slice/stevedore-${hex}-cpu.service`;
  const quota = (await node.sh(`cat ${cg}/cpu.cfs_quota_us ${cg}/cpu.cfs_period_us`)).stdout.split('\n').map(Number);
  assert.is(quota[0]! / quota[1]!, 0.2, 'quota is 20% of the period');
  const stat = await eventually('throttling', async () => {
    // v1 cpu.stat has the throttling counters; CPU time is in the unit's cgroup2 cpu.stat (usage_usec).
    const text = (await node.sh(`cat ${cg}/cpu.stat /sys/fs/cgroup/unified/stevedore.slice/stevedore-${hex}.slice/stevedore-${hex}-cpu.service/cpu.stat`)).stdout;
    const get = (k: string) => Number(new RegExp(`^${k} (\\d+)`, 'm').exec(text)?.[1]);
    return get('nr_periods') >= 20 && get('nr_throttled') > 0 ? { periods: get('nr_periods'), throttled: get('nr_throttled'), usageNs: get('usage_usec') * 1000 } : undefined;
  });
  // The counters, not the clock: the loop was throttled, and it never got more
  // than its quota of CPU time in the periods it ran (another process on a busy
  // machine can make it use less, never more). 10% slack for the open period.
  assert.ok(stat.throttled > 0, `throttled in ${stat.throttled} of ${stat.periods} periods`);
  const allowedNs = (stat.periods + 1) * quota[0]! * 1000;
  assert.ok(stat.usageNs <= allowedNs * 1.1, `used ${stat.usageNs} ns of cpu, quota allows ${allowedNs} ns over ${stat.periods} periods`);
  assert.ok(stat.usageNs >= allowedNs * 0.2, `the loop did run (${stat.usageNs} ns)`);
  await node.ok(['pod', 'rm', '--force', uuid]);
});

for (const [policy, expectRestarts] of [['Never', false], ['OnFailure', true], ['Always', true]] as const) {
  pods(`restartPolicy ${policy}: exit codes and restart counts`, async () => {
    const node = getNode();
    const file = await node.manifest(`restart-${policy}.yaml`, `
metadata: {name: restart-${policy.toLowerCase()}}
spec:
  restartPolicy: ${policy}
  containers:
  - name: fails
    image: busybox
    command: [sh, -c, 'echo run; exit 3']
  - name: succeeds
    image: busybox
    command: [sh, -c, 'echo done; exit 0']
`);
    const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'namespaces'])).trim();
    if (!expectRestarts) {
      const s = await eventually('both apps to exit', async () => {
        const st = await podStatus(node, uuid);
        return st.state === 'exited' ? st : undefined;
      });
      const [fails, succeeds] = s.apps;
      assert.equal([fails!.exitCode, fails!.reason, fails!.restartCount], [3, 'Error', 0]);
      assert.equal([succeeds!.exitCode, succeeds!.reason, succeeds!.restartCount], [0, 'Completed', 0]);
    } else {
      const s = await eventually('two restarts of the failing app', async () => {
        const st = await podStatus(node, uuid);
        return st.apps[0]!.restartCount >= 2 ? st : undefined;
      });
      const [fails] = s.apps;
      assert.is(fails!.lastTermination?.exitCode, 3);
      assert.is(fails!.lastTermination?.reason, 'Error');
      const logs = await node.ok(['pod', 'logs', uuid, '-c', 'fails']);
      assert.ok(logs.split('\n').filter((l) => l === 'run').length >= 3, 'each run logged');
      const succeeds = await eventually('succeeds to settle', async () => {
        const a = (await podStatus(node, uuid)).apps[1]!;
        return policy === 'Always' ? (a.restartCount >= 1 ? a : undefined) : (a.state === 'exited' ? a : undefined);
      });
      if (policy === 'OnFailure') assert.equal([succeeds.exitCode, succeeds.restartCount], [0, 0], 'OnFailure does not restart a success');
      else assert.is(succeeds.lastTermination?.exitCode, 0, 'Always restarts a success too');
    }
    await node.ok(['pod', 'rm', '--force', uuid]);
  });
}

pods('pod stop sends SIGTERM, then SIGKILL after the grace period; rm leaves nothing', async () => {
  const node = getNode();
  const file = await node.manifest('stop.yaml', `
metadata: {name: stopper}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: polite
    image: busybox
    command: [sh, -c, 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done']
  - name: stubborn
    image: busybox
    command: [sh, -c, 'trap "echo ignoring-term" TERM; echo ready; while :; do sleep 0.1; done']
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file])).trim();
  await eventually('ready', async () => ((await node.ok(['pod', 'logs', uuid])).split('ready').length === 3 ? true : undefined));
  const started = Date.now();
  await node.ok(['pod', 'stop', uuid]);
  const took = Date.now() - started;
  const s = await podStatus(node, uuid);
  assert.is(s.state, 'exited');
  assert.ok(took >= 1500, `waited for the grace period (${took} ms)`);
  const [polite, stubborn] = s.apps;
  assert.is(polite!.exitCode, 0);
  assert.is(stubborn!.exitCode, 137, 'SIGKILLed after the grace period');
  assert.match(await node.ok(['pod', 'logs', uuid, '-c', 'polite']), /got-term/);
  assert.equal(s.apps.map((a) => a.restartCount), [0, 0], 'a stopped pod is not restarted');
  await node.ok(['pod', 'rm', uuid]);
  assert.equal((await node.units()).filter((u) => u.includes(uuid.replace(/-/g, ''))), []);
  assert.equal((await node.mounts()).filter((m) => m.includes(uuid)), []);
  const after = await node.cli(['pod', 'status', uuid]);
  assert.is(after.exitCode, 1);
  assert.match(after.stderr, /no pod with UUID/);
});

pods.run();

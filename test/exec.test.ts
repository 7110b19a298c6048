/**
 * kubectl exec and cp against a real cluster (`stevedore up`), with the real
 * kubectl speaking WebSocket (v5.channel.k8s.io) to the control plane, which
 * splices the stream through to the node API: streams kept apart, exit codes,
 * a terminal with its size, container selection, a 10 MiB copy both ways, a
 * stopped container's error, and no process left in the pod when the client
 * is killed. On the namespaces and fly stage1s, and on kvm through the guest's
 * exec ports (a terminal made in the guest too); attach and `run -i -t` on
 * namespaces and on kvm (stdin and a terminal held in the guest).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as net from 'node:net';
import * as os from 'node:os';
import { spawn } from 'node:child_process';
import { freePort, run, useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';

const t = suite('exec: kubectl exec and cp through the control plane to the node');
const getCluster = useCluster(t, { stage1Policy: 'allowHostAccess:\n  - namespaces: [default]\n    allow: [fly]\n' });

const podYaml = (name: string, runtimeClass: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  runtimeClassName: ${runtimeClass}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
  - name: side
    image: busybox
    env: [{name: WHO, value: side-car}]
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
`;

async function runningPod(c: TestCluster, name: string, runtimeClass: string): Promise<void> {
  await c.k(['apply', '-f', '-'], podYaml(name, runtimeClass));
  await eventually(`${name} running`, async () => {
    const r = await c.kubectl(['get', 'pod', name, '-o', 'jsonpath={.status.phase}/{.status.containerStatuses[*].ready}']);
    return r.stdout === 'Running/true true' ? true : undefined;
  }, 60_000);
}

/** kubectl on a real terminal (script(1) gives it one), so that -t gets a tty. */
function kubectlOnTerminal(c: TestCluster, args: string[], input: string) {
  const quoted = ['kubectl', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return run('script', ['-q', '-e', '-c', `stty cols 91 rows 37; ${quoted}`, '/dev/null'], { KUBECONFIG: c.kubeconfig }, input);
}

/**
 * `kubectl run -i -t …` on a terminal (script(1)), typed into only once kubectl has attached (it says so), and again
 * until the shell answers: what is typed before may be dropped when kubectl puts the terminal into raw mode. Returns what the terminal showed once
 * kubectl exits (after `exit 0`), or throws with it.
 */
async function runOnTerminal(c: TestCluster, args: string[], command: string, expect: RegExp): Promise<string> {
  const quoted = ['kubectl', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const client = spawn('script', ['-q', '-e', '-c', `stty cols 91 rows 37; ${quoted}`, '/dev/null'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (d) => { out += d; });
  client.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number>((resolve) => client.on('close', (code) => resolve(code ?? 1)));
  try {
    await eventually('kubectl to attach', async () => (/try pressing enter/.test(out) ? true : undefined), 60_000);
    // Typed again every 4 s until the shell answers, as a person would: a line typed while kubectl makes the
    // terminal raw, or while busybox's shell waits for the answer to its cursor query, can be lost (seen under CI load).
    let typedAt = 0;
    await eventually('the shell to answer', async () => {
      if (expect.test(out)) return true;
      if (Date.now() - typedAt >= 4000) { client.stdin.write(`${command}\n`); typedAt = Date.now(); }
      return undefined;
    }, 20_000);
    client.stdin.write('exit 0\n');
    const code = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
    if (code !== 0) throw new Error(`kubectl exited ${code}`);
    return out;
  } catch (err) {
    throw new Error(`${(err as Error).message}; the terminal showed: ${JSON.stringify(out)}`);
  } finally {
    client.kill('SIGKILL');
  }
}

/**
 * An interactive `kubectl exec -it … -- sh` on a terminal driven like a person at it (python3's pty,
 * the terminal 91x37 at start): the shell's `tty` and `stty size`, then the terminal resized to
 * 120x50 (kubectl sees SIGWINCH and sends the new size) until `stty size` follows, then `exit 5`.
 * Prints what the terminal showed; exits with kubectl's status.
 */
const INTERACTIVE_DRIVER = String.raw`
import fcntl, os, pty, re, select, struct, sys, termios, time
pid, master = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 91, 0, 0))
    os.execvp("kubectl", ["kubectl"] + sys.argv[1:])
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 91, 0, 0))
seen = b""
def wait_for(pattern, send=None, every=3.0, timeout=90.0):
    global seen
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        if send is not None and time.monotonic() >= next_send:
            os.write(master, send)
            next_send = time.monotonic() + every
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                break
            seen += data
            if re.search(pattern, seen):
                return
    sys.stdout.write(seen.decode(errors="replace"))
    sys.exit("never saw %r" % pattern)
wait_for(rb"ready-\d", send=b"echo ready-$((1+1))\r")
wait_for(rb"/dev/pts/\d+\s+37 91", send=b"tty; stty size\r")
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
os.kill(pid, 28)  # SIGWINCH, as a terminal emulator's resize sends it to the foreground job
wait_for(rb"50 120", send=b"stty size\r")
os.write(master, b"exit 5\r")
while True:
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    seen += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
`;

for (const [pod, runtimeClass] of [['ex-ns', 'namespaces'], ['ex-fly', 'fly']] as const) {
  t(`${runtimeClass}: stdout and stderr apart, exit code, stdin, -c`, async () => {
    const c = getCluster();
    await runningPod(c, pod, runtimeClass);
    const r = await c.kubectl(['exec', pod, '-c', 'main', '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 7']);
    assert.is(r.code, 7, r.stderr);
    assert.is(r.stdout, 'to-out\n');
    assert.match(r.stderr, /to-err/);
    assert.not.match(r.stdout, /to-err/);

    const ok = await c.kubectl(['exec', pod, '--', 'true']);
    assert.is(ok.code, 0, ok.stderr);

    const stdin = await c.kubectl(['exec', '-i', pod, '-c', 'main', '--', 'sh', '-c', 'wc -c; echo after-eof'], 'x'.repeat(100_000));
    assert.is(stdin.code, 0, stdin.stderr);
    assert.is(stdin.stdout.replace(/\s+/g, ' ').trim(), '100000 after-eof');

    const side = await c.kubectl(['exec', pod, '-c', 'side', '--', 'sh', '-c', 'echo $WHO']);
    assert.is(side.stdout, 'side-car\n', side.stderr);
    const main = await c.kubectl(['exec', pod, '-c', 'main', '--', 'sh', '-c', 'echo ${WHO:-none}']);
    assert.is(main.stdout, 'none\n', main.stderr);

    const missing = await c.kubectl(['exec', pod, '-c', 'nope', '--', 'true']);
    assert.is.not(missing.code, 0);
    assert.match(missing.stderr, /container nope is not valid/);
  });

  t(`${runtimeClass}: a terminal, with the client's size`, async () => {
    const c = getCluster();
    const r = await kubectlOnTerminal(c, ['exec', '-it', pod, '-c', 'main', '--', 'sh', '-c', 'tty; stty size; exit 3'], '');
    assert.is(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    assert.match(r.stdout, /37 91/, JSON.stringify(r.stdout));
  });

  t(`${runtimeClass}: killing kubectl leaves no process of the exec in the pod`, async () => {
    const c = getCluster();
    const marker = `${runtimeClass === 'fly' ? 8 : 9}${randomBytes(2).readUInt16BE() % 1000}`;
    // A child in the background, re-parented when its shell goes, and one in the foreground.
    const client = c.spawnKubectl(['exec', pod, '-c', 'main', '--', 'sh', '-c', `sleep ${marker}1 & sleep ${marker}2`]);
    const ps = async () => (await c.kubectl(['exec', pod, '-c', 'main', '--', 'ps', '-o', 'pid,args'])).stdout;
    await eventually('both sleeps to run', async () => ((await ps()).match(new RegExp(`sleep ${marker}`, 'g'))?.length === 2 ? true : undefined), 20_000);
    client.kill('SIGKILL');
    await eventually('no sleep left', async () => (new RegExp(`sleep ${marker}`).test(await ps()) ? undefined : true), 20_000);
  });
}

t('kvm: exec through the guest\'s exec ports (output and exit code), and on a terminal made in the guest', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: ex-kvm}
spec:
  runtimeClassName: kvm
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']}
`);
  await eventually('ex-kvm running', async () => ((await c.kubectl(['get', 'pod', 'ex-kvm', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 120_000);
  // The pod reads Running as soon as the app unit's proxy runs, a moment before the guest's crun has made
  // the container (a known limit of the kvm stage1: an exec in that window gets crun's "no such container").
  await eventually('the guest to accept execs', async () => ((await c.kubectl(['exec', 'ex-kvm', '--', 'true'])).code === 0 ? true : undefined), 60_000);
  const r = await c.kubectl(['exec', 'ex-kvm', '--', 'sh', '-c', 'echo in-$(uname -r | cut -c1-2); exit 7']);
  assert.is(r.code, 7, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^in-\S+\n$/);
  const stdin = await c.kubectl(['exec', '-i', 'ex-kvm', '--', 'wc', '-c'], 'abcdef');
  assert.is(stdin.stdout.trim(), '6', stdin.stderr);
  // A terminal inside the container in the guest, with the client's size from the start.
  const tty = await kubectlOnTerminal(c, ['exec', '-it', 'ex-kvm', '--', 'sh', '-c', 'tty; stty size; exit 3'], '');
  assert.is(tty.code, 3, tty.stdout + tty.stderr);
  assert.match(tty.stdout, /\/dev\/pts\/\d+/);
  assert.match(tty.stdout, /37 91/, JSON.stringify(tty.stdout));
  // An interactive shell: typed lines, the terminal resized while it runs, its exit code.
  const shell = await run('python3', ['-c', INTERACTIVE_DRIVER, 'exec', '-it', 'ex-kvm', '--', 'sh'], { KUBECONFIG: c.kubeconfig });
  assert.is(shell.code, 5, shell.stdout + shell.stderr);
  assert.match(shell.stdout, /\/dev\/pts\/\d+\s+37 91/);
  assert.match(shell.stdout, /50 120/);
  // The non-terminal path is unchanged after a terminal exec (its nonce markers skip nothing of its own).
  const after = await c.kubectl(['exec', 'ex-kvm', '--', 'sh', '-c', 'echo plain; exit 4']);
  assert.is(after.code, 4, after.stderr);
  assert.is(after.stdout, 'plain\n');
  // A command that prints a short line and goes on running: the line shows at once (the client held back
  // every last 40 bytes as a possible end marker), and killing kubectl leaves no process of it in the guest.
  const waiting = c.spawnKubectl(['exec', 'ex-kvm', '--', 'sh', '-c', 'echo started-$((6*7)); exec sleep 4242']);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { waiting.kill('SIGKILL'); reject(new Error(`no output from a running exec: ${JSON.stringify(out)}`)); }, 20_000);
    waiting.stdout!.on('data', (d) => { out += d; if (out.includes('started-42\n')) { clearTimeout(timer); resolve(); } });
  });
  waiting.kill('SIGKILL');
  const ps = async () => (await c.kubectl(['exec', 'ex-kvm', '--', 'ps', '-o', 'pid,args'])).stdout;
  await eventually('no sleep 4242 left in the guest', async () => (/sleep 4242/.test(await ps()) ? undefined : true), 30_000);
  await c.k(['delete', 'pod', 'ex-kvm', '--wait=false']);
});

t('kvm: attach to a container\'s stdin and to its terminal in the guest; run -i -t --rm … -- sh', async () => {
  const c = getCluster();
  // One VM for the attach cases (a boot under TCG costs seconds): stdin, stdin once, a restarted app's stdin, a terminal.
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: at-kvm}
spec:
  runtimeClassName: kvm
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - {name: talk, image: busybox, stdin: true, command: [sh, -c, 'echo listening; while read l; do echo got:$l; done; echo talk-stdin-closed; sleep 3600']}
  - {name: once, image: busybox, stdin: true, stdinOnce: true, command: [sh, -c, 'while read l; do echo once:$l; done; echo once-stdin-closed; sleep 3600']}
  - {name: again, image: busybox, stdin: true, command: [sh, -c, 'read l; echo again:$l; [ "$l" = first ] && exit 3; sleep 3600']}
  - {name: term, image: busybox, stdin: true, tty: true, command: [sh]}
`);
  await eventually('at-kvm running', async () => ((await c.kubectl(['get', 'pod', 'at-kvm', '-o', 'jsonpath={.status.containerStatuses[*].ready}'])).stdout === 'true true true true' ? true : undefined), 120_000);
  await eventually('the guest to accept execs', async () => ((await c.kubectl(['exec', 'at-kvm', '-c', 'talk', '--', 'true'])).code === 0 ? true : undefined), 60_000);
  // In the VM, not on the node: the guest's kernel.
  assert.is.not((await c.kubectl(['exec', 'at-kvm', '-c', 'talk', '--', 'uname', '-r'])).stdout.trim(), os.release());
  const ps = async () => (await c.kubectl(['exec', 'at-kvm', '-c', 'talk', '--', 'ps', '-o', 'args'])).stdout.split('\n').filter((l) => l && !/^ps |^COMMAND|^PID|ARGS/.test(l)).sort().join('\n');
  const before = await ps();
  const attach = async (container: string, line: string, answer: RegExp) => {
    const client = spawn('kubectl', ['attach', '-i', 'at-kvm', '-c', container], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (d) => { out += d; });
    client.stderr.on('data', (d) => { out += d; });
    try {
      // Sent again until answered: a line typed before the attach is up goes nowhere (as with the kubelet).
      await eventually(`${container} to answer`, async () => {
        if (answer.test(out)) return true;
        client.stdin.write(`${line}\n`);
        return undefined;
      }, 30_000);
    } finally {
      client.kill('SIGKILL');
    }
  };
  await attach('talk', 'ping', /got:ping/);
  // A second client after the first was killed: the holder and the app's stdin are still there.
  await attach('talk', 'pong', /got:pong/);
  // Detaching leaves the container running with its stdin open, its output also went to its log, and the
  // killed clients left no process in the guest's container.
  assert.match(await c.k(['logs', 'at-kvm', '-c', 'talk']), /listening\n(got:ping\n)+(got:pong\n)+/);
  assert.not.match(await c.k(['logs', 'at-kvm', '-c', 'talk']), /talk-stdin-closed/);
  assert.is((await c.kubectl(['get', 'pod', 'at-kvm', '-o', 'jsonpath={.status.containerStatuses[?(@.name=="talk")].ready}'])).stdout, 'true');
  assert.is(await ps(), before);
  // stdinOnce: the first client going closes the container's stdin.
  await attach('once', 'first', /once:first/);
  await eventually('once\'s stdin to be closed', async () => (/once-stdin-closed/.test(await c.k(['logs', 'at-kvm', '-c', 'once'])) ? true : undefined), 30_000);
  // An app with stdin that exits and is restarted (OnFailure): the new run has a stdin of its own, and
  // nothing sent to the run before reaches it (the helper sent its line until answered).
  await attach('again', 'first', /again:first/);
  const again = async () => (await c.kubectl(['get', 'pod', 'at-kvm', '-o', 'jsonpath={.status.containerStatuses[?(@.name=="again")].restartCount} {.status.containerStatuses[?(@.name=="again")].ready}'])).stdout;
  await eventually('again restarted and running', async () => (/^[1-9]\d* true$/.test(await again()) ? true : undefined), 90_000);
  await attach('again', 'second', /again:second/);
  // A leaked "first" would have been its first line: it would have exited again instead of printing again:second.
  assert.match(await again(), /^1 true$/, 'one restart: the second run read only what was sent to it');

  // The terminal: typed lines, and the client's size (kubectl sends the size plus one, then the size). Typed once
  // kubectl has attached, and again until the shell answers (runOnTerminal), as on namespaces below.
  await runOnTerminal(c, ['attach', '-it', 'at-kvm', '-c', 'term'], 'echo attached-$((40+2)); stty size', /attached-42\r?\n(37 91|38 92)/);
  await c.k(['delete', 'pod', 'at-kvm', '--wait=false']);

  // kubectl run -i -t --rm: a shell in a new kvm pod the user types into, then gone.
  // Typed once kubectl has attached (as a person would, after its prompt): input typed before may run before the size arrives.
  // The client's size is sent as it attaches, which may be before crun has made the container in the guest.
  await runOnTerminal(c, ['run', 'shell-kvm', '-i', '-t', '--rm', '--restart=Never', '--image=busybox', '--pod-running-timeout=3m',
    '--overrides={"apiVersion":"v1","spec":{"runtimeClassName":"kvm","terminationGracePeriodSeconds":1}}', '--', 'sh'], 'echo in-run-$((2+3)); stty size', /in-run-5\r?\n(37 91|38 92)/);
  await eventually('the shell pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'shell-kvm'])).code !== 0 ? true : undefined), 60_000);
  // Without a terminal, a command quicker than the attach: its output still comes (the holder's backlog).
  const once = await c.kubectl(['run', 'once-kvm', '-i', '--rm', '--restart=Never', '--image=busybox', '--pod-running-timeout=3m',
    '--overrides={"apiVersion":"v1","spec":{"runtimeClassName":"kvm","terminationGracePeriodSeconds":1}}', '--', 'echo', 'hi-from-kvm-run']);
  assert.is(once.code, 0, once.stderr);
  assert.match(once.stdout, /hi-from-kvm-run/, once.stdout + once.stderr);
  await eventually('the once pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'once-kvm'])).code !== 0 ? true : undefined), 60_000);
});

t('kubectl cp: 10 MiB in and out, the same sha256', async () => {
  const c = getCluster();
  const dir = await fs.mkdtemp(path.join(c.dataDir, 'cp-'));
  const data = randomBytes(10 << 20);
  const sha = createHash('sha256').update(data).digest('hex');
  await fs.writeFile(path.join(dir, 'in.bin'), data);
  const put = await c.kubectl(['cp', path.join(dir, 'in.bin'), 'ex-ns:/tmp/copied.bin', '-c', 'main']);
  assert.is(put.code, 0, put.stderr);
  const inside = await c.kubectl(['exec', 'ex-ns', '-c', 'main', '--', 'sha256sum', '/tmp/copied.bin']);
  assert.is(inside.stdout.split(' ')[0], sha);
  const get = await c.kubectl(['cp', 'ex-ns:/tmp/copied.bin', path.join(dir, 'out.bin'), '-c', 'main']);
  assert.is(get.code, 0, get.stderr);
  assert.is(createHash('sha256').update(await fs.readFile(path.join(dir, 'out.bin'))).digest('hex'), sha);
});

t('a stopped container: a clear error, no stream', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: half}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: gone, image: busybox, command: [sh, -c, "exit 0"]}
  - {name: stay, image: busybox, command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']}
`);
  await eventually('gone to finish', async () => ((await c.kubectl(['get', 'pod', 'half', '-o', 'jsonpath={.status.containerStatuses[?(@.name=="gone")].state.terminated.reason}'])).stdout === 'Completed' ? true : undefined), 60_000);
  const r = await c.kubectl(['exec', 'half', '-c', 'gone', '--', 'true']);
  assert.is.not(r.code, 0);
  assert.match(r.stderr, /container "gone" of pod \S+ is not running/, r.stderr);
  const alive = await c.kubectl(['exec', 'half', '-c', 'stay', '--', 'echo', 'still']);
  assert.is(alive.stdout, 'still\n', alive.stderr);
});

/** One HTTP/1.0 GET of `what` through a local port-forward at `port`: the whole answer, head and body. */
function getThrough(port: number, what: string, context: () => string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${what} HTTP/1.0\r\n\r\n`));
    let body = '';
    s.on('data', (d) => { body += d; });
    s.on('end', () => resolve(body));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error(`GET ${what} timed out; ${context()}`)));
  });
}

t('port-forward (WebSocket-tunnelled SPDY): many requests, two connections at once', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo hello-from-pod > /www/index.html && head -c 25165824 /dev/urandom > /www/big && exec httpd -f -p 8080 -h /www']
`);
  await eventually('web running', async () => ((await c.kubectl(['get', 'pod', 'web', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 60_000);
  const localPort = await freePort();
  const pf = c.spawnKubectl(['port-forward', 'pod/web', `${localPort}:8080`]);
  let pfOut = '';
  pf.stdout!.on('data', (d) => { pfOut += d; });
  pf.stderr!.on('data', (d) => { pfOut += d; });
  try {
    await eventually('port-forward to listen', async () => (/Forwarding from 127\.0\.0\.1/.test(pfOut) ? true : undefined), 20_000);
    for (let i = 0; i < 40; i++) assert.match(await getThrough(localPort, '/', () => `kubectl said: ${pfOut}`), /hello-from-pod/, `request ${i}: ${pfOut}`);
    // 24 MiB through the tunnel, byte for byte, to a client that reads nothing for its first 2 s:
    // the node, the control plane and kubectl must each hold back rather than buffer or drop
    // (the pod's socket is read directly: flow control end to end).
    const big = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect(localPort, '127.0.0.1', () => { s.write('GET /big HTTP/1.0\r\n\r\n'); s.pause(); setTimeout(() => s.resume(), 2000); });
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () => resolve(Buffer.concat(parts)));
      s.on('error', reject);
      s.setTimeout(30_000, () => s.destroy(new Error('timed out')));
    });
    const body = big.subarray(big.indexOf('\r\n\r\n') + 4);
    const inPod = (await c.k(['exec', 'web', '--', 'sha256sum', '/www/big'])).split(' ')[0];
    assert.is(body.length, 24 * 1024 * 1024);
    assert.is(createHash('sha256').update(body).digest('hex'), inPod);
    // Two connections open at the same time, answered in the order they were asked.
    const a = net.connect(localPort, '127.0.0.1');
    const b = net.connect(localPort, '127.0.0.1');
    await Promise.all([a, b].map((s) => new Promise((r) => s.once('connect', r))));
    const read = (s: net.Socket) => new Promise<string>((resolve) => { let t = ''; s.on('data', (d) => { t += d; }); s.on('end', () => resolve(t)); });
    const [ra, rb] = [read(a), read(b)];
    b.write('GET /index.html HTTP/1.0\r\n\r\n');
    a.write('GET /missing HTTP/1.0\r\n\r\n');
    assert.match(await rb, /hello-from-pod/);
    assert.match(await ra, /404/);
  } finally {
    pf.kill('SIGTERM');
  }
  // A port nothing listens on: kubectl reports the node's error for that connection.
  const deadPort = await freePort();
  const dead = c.spawnKubectl(['port-forward', 'pod/web', `${deadPort}:9999`]);
  let deadOut = '';
  dead.stdout!.on('data', (d) => { deadOut += d; });
  dead.stderr!.on('data', (d) => { deadOut += d; });
  try {
    await eventually('port-forward to listen', async () => (/Forwarding from 127\.0\.0\.1/.test(deadOut) ? true : undefined), 20_000);
    await new Promise<void>((resolve) => { const s = net.connect(deadPort, '127.0.0.1', () => s.end()); s.on('close', () => resolve()); s.on('error', () => resolve()); });
    await eventually('the error to be reported', async () => (/9999/.test(deadOut) && /refused|error/i.test(deadOut) ? true : undefined), 10_000);
  } finally {
    dead.kill('SIGTERM');
  }
});

t('port-forward upload to a pod that reads late: held, then every byte arrives in order', async () => {
  const c = getCluster();
  // The pod reads nothing for 3 s: its socket fills, the agent holds the client's input (it does
  // not buffer the upload), then lets it go once the pod drains. sleep keeps nc's stdin open.
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: sink}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'sleep 600 | nc -l -p 9000 | (sleep 3; sha256sum; echo done)']
`);
  await eventually('sink running', async () => ((await c.kubectl(['get', 'pod', 'sink', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 60_000);
  const localPort = await freePort();
  const pf = c.spawnKubectl(['port-forward', 'pod/sink', `${localPort}:9000`]);
  let pfOut = '';
  pf.stdout!.on('data', (d) => { pfOut += d; });
  pf.stderr!.on('data', (d) => { pfOut += d; });
  const upload = randomBytes(32 << 20);
  try {
    await eventually('port-forward to listen', async () => (/Forwarding from 127\.0\.0\.1/.test(pfOut) ? true : undefined), 20_000);
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(localPort, '127.0.0.1', () => s.end(upload));
      s.on('finish', () => resolve());
      s.on('error', reject);
      s.setTimeout(60_000, () => s.destroy(new Error(`upload stalled; kubectl said: ${pfOut}`)));
    });
    await eventually('the pod to have read it all', async () => (/done/.test(await c.k(['logs', 'sink'])) ? true : undefined), 60_000);
  } finally {
    pf.kill('SIGTERM');
  }
  assert.match(await c.k(['logs', 'sink']), new RegExp(createHash('sha256').update(upload).digest('hex')), pfOut);
});

t('attach: to a container\'s stdin, and to its terminal', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    stdin: true
    command: [sh, -c, 'echo listening; while read l; do echo got:$l; done']
---
apiVersion: v1
kind: Pod
metadata: {name: term}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    stdin: true
    tty: true
    command: [sh]
`);
  for (const name of ['talk', 'term']) {
    await eventually(`${name} running`, async () => ((await c.kubectl(['get', 'pod', name, '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 60_000);
  }
  const client = spawn('kubectl', ['attach', '-i', 'talk'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (d) => { out += d; });
  client.stderr.on('data', (d) => { out += d; });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    client.stdin.write('ping\n');
    await eventually('the container to answer', async () => (/got:ping/.test(out) ? true : undefined), 20_000);
  } finally {
    client.kill('SIGKILL');
  }
  // Detaching leaves the container running, and its output also went to its log.
  assert.match((await c.k(['logs', 'talk'])), /listening\ngot:ping/);
  assert.is((await c.kubectl(['get', 'pod', 'talk', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout, 'true');

  // Typed once kubectl has attached, and again until the shell answers (runOnTerminal: busybox's shell may be
  // waiting for the answer to its cursor query when the first line comes). kubectl attach sends the size plus
  // one, then the size (a redraw for the program already running).
  await runOnTerminal(c, ['attach', '-it', 'term'], 'echo attached-$((40+2)); stty size', /attached-42\r?\n(37 91|38 92)/);

  const noConsole = await c.kubectl(['attach', 'ex-ns', '-c', 'main']);
  assert.is.not(noConsole.code, 0);
  assert.match(noConsole.stderr, /without stdin or tty/);
});

/** The processes of a running fly pod's app unit (its cgroup, read on the node), by the pod's name. */
async function unitProcesses(c: TestCluster, podName: string, app: string): Promise<string[]> {
  const pods = JSON.parse((await c.stevedore(['pod', 'list', '-o', 'json'])).stdout) as Array<{ uuid: string; name?: string; state?: string }>;
  const uuid = pods.find((p) => p.name?.endsWith(podName) && p.state === 'running')?.uuid;
  assert.ok(uuid, `pod ${podName} on the node: ${JSON.stringify(pods)}`);
  const unit = `stevedore-${uuid.replace(/-/g, '')}-${app}.service`;
  const r = await c.node(['sh', '-c', `cg=$(systemctl show -p ControlGroup --value ${unit}); for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do [ -f "$d$cg/cgroup.procs" ] && exec cat "$d$cg/cgroup.procs"; done; exit 1`]);
  assert.is(r.code, 0, `the cgroup of ${unit}: ${r.stderr}`);
  return r.stdout.trim().split('\n').sort();
}

t('fly: attach to a container\'s stdin (logs, a restart, attach again) and to its terminal; killing kubectl leaves no process behind', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: talk-fly}
spec:
  runtimeClassName: fly
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    stdin: true
    command: [sh, -c, 'echo listening; while read l; do [ "$l" = quit ] && exit 0; echo got:$l; done']
---
apiVersion: v1
kind: Pod
metadata: {name: term-fly}
spec:
  runtimeClassName: fly
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    stdin: true
    tty: true
    command: [sh]
`);
  for (const name of ['talk-fly', 'term-fly']) {
    await eventually(`${name} running`, async () => ((await c.kubectl(['get', 'pod', name, '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 60_000);
  }
  const attach = async (line: string, expect: RegExp) => {
    const client = spawn('kubectl', ['attach', '-i', 'talk-fly'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (d) => { out += d; });
    client.stderr.on('data', (d) => { out += d; });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      client.stdin.write(`${line}\n`);
      await eventually('the container to answer', async () => (expect.test(out) ? true : undefined), 20_000).catch((err: Error) => { throw new Error(`${err.message}; kubectl said: ${out}`); });
    } finally {
      client.kill('SIGKILL');
    }
  };
  await attach('ping', /got:ping/);
  // Detaching leaves the container running, and its output also went to its log.
  assert.match((await c.k(['logs', 'talk-fly'])), /listening\ngot:ping/);
  assert.is((await c.kubectl(['get', 'pod', 'talk-fly', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout, 'true');
  // The app ends; the agent restarts it under a new holder, which the next attach reaches.
  const quit = spawn('kubectl', ['attach', '-i', 'talk-fly'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'ignore', 'ignore'] });
  await new Promise((r) => setTimeout(r, 1500));
  quit.stdin.write('quit\n');
  await eventually('talk-fly restarted and running', async () => ((await c.kubectl(['get', 'pod', 'talk-fly', '-o', 'jsonpath={.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].ready}'])).stdout === '1/true' ? true : undefined), 60_000);
  quit.kill('SIGKILL');
  await attach('pong', /got:pong/);
  assert.match((await c.k(['logs', 'talk-fly'])), /listening\ngot:pong/);

  // kubectl exec into a held app enters the app (the holder's child), in its root: not the holder's, the node's.
  const listing = await c.k(['exec', 'term-fly', '--', 'ls', '/']);
  assert.match(listing, /^bin$/m, listing);
  assert.not.match(listing, /^boot$/m, listing);
  const before = await unitProcesses(c, 'term-fly', 'c');
  assert.is(before.length, 2, `the holder and the app: ${before.join(' ')}`);
  // On a terminal (script(1)), killed mid-attach: the app goes on, and nothing of the attach is left in its unit.
  const client = spawn('script', ['-q', '-e', '-c', 'stty cols 91 rows 37; kubectl attach -it term-fly', '/dev/null'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (d) => { out += d; });
  client.stderr.on('data', (d) => { out += d; });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    client.stdin.write('echo attached-$((40+2)); stty size\n');
    // kubectl attach sends the size plus one, then the size (a redraw for the program already running).
    await eventually('the shell to answer, on a terminal of the client\'s size', async () => (/attached-42/.test(out) && /(37 91|38 92)/.test(out) ? true : undefined), 20_000)
      .catch((err: Error) => { throw new Error(`${err.message}: ${JSON.stringify(out)}`); });
  } finally {
    client.kill('SIGKILL');
  }
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await unitProcesses(c, 'term-fly', 'c'), before, 'the same holder and app, nothing else');
  assert.is((await c.kubectl(['get', 'pod', 'term-fly', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout, 'true');
  await c.kubectl(['delete', 'pod', 'talk-fly', 'term-fly', '--wait=false']);
});

t('fly: kubectl run -i --rm and run -i -t --rm … -- sh print the command\'s output and remove the pod', async () => {
  const c = getCluster();
  const fly = '--overrides={"apiVersion":"v1","spec":{"runtimeClassName":"fly"}}';
  const r = await c.kubectl(['run', 'once-fly', '-i', '--rm', '--restart=Never', '--image=busybox', fly, '--', 'sh', '-c', 'echo hi-from-$(cat /proc/1/comm)']);
  assert.is(r.code, 0, r.stderr);
  // fly shares the node's pid namespace: its pid 1 is the node's init, not the app.
  assert.match(r.stdout, /hi-from-systemd/, r.stdout + r.stderr);
  await eventually('the pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'once-fly'])).code !== 0 ? true : undefined), 30_000);
  await runOnTerminal(c, ['run', 'shell-fly', '-i', '-t', '--rm', '--restart=Never', '--image=busybox', fly, '--', 'sh'], 'echo in-run-$((2+3)) on $(tty)', /in-run-5 on \/dev\/pts\/\d+/);
  await eventually('the shell pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'shell-fly'])).code !== 0 ? true : undefined), 30_000);
});

t('kubectl run -i --rm --restart=Never prints the command\'s output and removes the pod', async () => {
  const c = getCluster();
  const r = await c.kubectl(['run', 'once', '-i', '--rm', '--restart=Never', '--image=busybox', '--', 'echo', 'hi-from-run']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /hi-from-run/, r.stdout + r.stderr);
  await eventually('the pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'once'])).code !== 0 ? true : undefined), 30_000);
  // With a terminal: a shell the user types into, then gone.
  await runOnTerminal(c, ['run', 'shell', '-i', '-t', '--rm', '--restart=Never', '--image=busybox', '--', 'sh'], 'echo in-run-$((2+3))', /in-run-5/);
  await eventually('the shell pod to be gone', async () => ((await c.kubectl(['get', 'pod', 'shell'])).code !== 0 ? true : undefined), 30_000);
});

/** Debian's kubectl 1.20 (scripts/setup.sh unpacks it beside the machine's): SPDY/3.1 only, as every client before 1.30. */
const KUBECTL_1_20 = '/var/cache/stevedore/kubectl-1.20/usr/bin/kubectl';

t('SPDY/3.1 (kubectl 1.32 with its WebSocket paths off, and Debian\'s kubectl 1.20): exec, stdin, a terminal, cp, run -i --rm, port-forward', async () => {
  const c = getCluster();
  await fs.access(KUBECTL_1_20).catch(() => { throw new Error(`${KUBECTL_1_20} is missing: run scripts/setup.sh`); });
  const clients: Array<[string, string, Record<string, string>]> = [
    ['kubectl 1.32, WebSocket off', 'kubectl', { KUBECONFIG: c.kubeconfig, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false', KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }],
    ['kubectl 1.20', KUBECTL_1_20, { KUBECONFIG: c.kubeconfig }],
  ];
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-spdy-cp-'));
  try {
    const payload = randomBytes(3 << 20);
    await fs.writeFile(path.join(dir, 'in.bin'), payload);
    const sha = createHash('sha256').update(payload).digest('hex');
    for (const [who, kubectl, env] of clients) {
      const r = await run(kubectl, ['exec', 'ex-ns', '-c', 'main', '--', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 7'], env);
      assert.is(r.code, 7, `${who}: ${r.stderr}`);
      assert.is(r.stdout, 'to-out\n', who);
      assert.match(r.stderr, /to-err/, who);
      const stdin = await run(kubectl, ['exec', '-i', 'ex-ns', '-c', 'main', '--', 'wc', '-c'], env, 'y'.repeat(300_000));
      assert.is(stdin.stdout.trim(), '300000', `${who}: ${stdin.stderr}`);
      const quoted = [kubectl, 'exec', '-it', 'ex-ns', '-c', 'main', '--', 'sh', '-c', 'stty size; exit 4'].map((a) => `'${a}'`).join(' ');
      const tty = await run('script', ['-q', '-e', '-c', `stty cols 91 rows 37; ${quoted}`, '/dev/null'], env, '');
      assert.is(tty.code, 4, `${who}: ${tty.stdout}${tty.stderr}`);
      assert.match(tty.stdout, /37 91/, `${who}: ${JSON.stringify(tty.stdout)}`);
      const put = await run(kubectl, ['cp', path.join(dir, 'in.bin'), 'ex-ns:/tmp/spdy.bin', '-c', 'main'], env);
      assert.is(put.code, 0, `${who}: ${put.stderr}`);
      assert.is((await run(kubectl, ['exec', 'ex-ns', '-c', 'main', '--', 'sha256sum', '/tmp/spdy.bin'], env)).stdout.split(' ')[0], sha, who);
      const fetched = await run(kubectl, ['cp', 'ex-ns:/tmp/spdy.bin', path.join(dir, 'out.bin'), '-c', 'main'], env);
      assert.is(fetched.code, 0, `${who}: ${fetched.stderr}`);
      assert.is(createHash('sha256').update(await fs.readFile(path.join(dir, 'out.bin'))).digest('hex'), sha, who);
      await fs.rm(path.join(dir, 'out.bin'));
      // run -i --rm: an attach over SPDY, then the pod is deleted by the client.
      const once = await run(kubectl, ['run', 'spdy-once', '-i', '--rm', '--restart=Never', '--image=busybox', '--', 'echo', 'hi-over-spdy'], env);
      assert.is(once.code, 0, `${who}: ${once.stderr}`);
      assert.match(once.stdout, /hi-over-spdy/, `${who}: ${once.stdout}${once.stderr}`);
      await eventually(`${who}: the run pod to be gone`, async () => ((await c.kubectl(['get', 'pod', 'spdy-once'])).code !== 0 ? true : undefined), 30_000);
      const localPort = await freePort();
      const pf = spawn(kubectl, ['port-forward', 'pod/web', `${localPort}:8080`], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let pfOut = '';
      pf.stdout.on('data', (d) => { pfOut += d; });
      pf.stderr.on('data', (d) => { pfOut += d; });
      try {
        await eventually(`${who}: port-forward to listen`, async () => (/Forwarding from 127\.0\.0\.1/.test(pfOut) ? true : undefined), 20_000);
        const said = () => `${who}: kubectl said: ${pfOut}`;
        for (let i = 0; i < 10; i++) assert.match(await getThrough(localPort, '/', said), /hello-from-pod/, `${who}, request ${i}: ${pfOut}`);
        const [a, b] = await Promise.all([getThrough(localPort, '/index.html', said), getThrough(localPort, '/missing', said)]);
        assert.match(a, /hello-from-pod/, who);
        assert.match(b, /404/, who);
      } finally {
        pf.kill('SIGTERM');
      }
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

t('without an upgrade, pods/exec says what it needs', async () => {
  const c = getCluster();
  const r = await c.kubectl(['get', '--raw', '/api/v1/namespaces/default/pods/ex-ns/exec?command=true']);
  assert.is.not(r.code, 0);
  assert.match(r.stderr, /Upgrade request required/);
});

t.run();

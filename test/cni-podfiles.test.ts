/** Per-pod /etc/hosts and /etc/resolv.conf as the kubelet forms them (cni/podfiles.ts). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseResolvConf, podHostnameAndDomain, podHostsFile, podResolvConf } from '../cni/index.js';
import { run } from './helpers/netns.js';

const HEADER = '# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n';

test('hosts: stateful pod (hostname + subdomain) gets its FQDN, as the kubelet writes it', () => {
  const text = podHostsFile({ hostname: 'web-0', subdomain: 'web', namespace: 'default', podIPs: ['10.244.1.5'] });
  assert.is(text, HEADER + '10.244.1.5\tweb-0.web.default.svc.cluster.local\tweb-0\n');
  assert.is(podHostsFile({ hostname: 'plain', namespace: 'ns', podIPs: ['10.0.0.2', 'fd00::2'] }), HEADER + '10.0.0.2\tplain\nfd00::2\tplain\n');
  assert.is(
    podHostsFile({ hostname: 'a', subdomain: 's', namespace: 'n', clusterDomain: 'k.example', podIPs: ['10.0.0.3'], hostAliases: [{ ip: '10.1.1.1', hostnames: ['foo.local', 'bar.local'] }] }),
    HEADER + '10.0.0.3\ta.s.n.svc.k.example\ta\n\n# Entries added by HostAliases.\n10.1.1.1\tfoo.local\tbar.local\n',
  );
  assert.is(podHostsFile({ hostname: 'h', namespace: 'n', podIPs: [], nodeHosts: '127.0.0.1 localhost\n192.0.2.2 node1' }),
    '# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.0.2.2 node1\n');
});

test('hostname: spec.hostname or the pod name, cut to 63 characters; domain from subdomain', () => {
  assert.equal(podHostnameAndDomain({ podName: 'web-0', subdomain: 'web', namespace: 'default' }), { hostname: 'web-0', domain: 'web.default.svc.cluster.local' });
  assert.equal(podHostnameAndDomain({ podName: 'p', hostname: 'h', namespace: 'x' }), { hostname: 'h' });
  const long = 'a'.repeat(62) + '-b';
  assert.is(podHostnameAndDomain({ podName: long, namespace: 'x' }).hostname, 'a'.repeat(62));
});

const NODE = '# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.com corp.example.\noptions edns0 timeout:2\n';

test('resolv.conf: ClusterFirst uses the cluster DNS, the cluster search path then the node one, ndots:5', () => {
  const r = podResolvConf({ dnsPolicy: 'ClusterFirst', clusterDNS: ['10.96.0.10'], nodeResolvConf: NODE, namespace: 'default', clusterDomain: 'cluster.local' });
  assert.is(r.content, 'search default.svc.cluster.local svc.cluster.local cluster.local example.com corp.example\nnameserver 10.96.0.10\noptions ndots:5\n');
  assert.equal(r.warnings, []);
  // the default policy is ClusterFirst
  assert.is(podResolvConf({ clusterDNS: ['10.96.0.10'], nodeResolvConf: NODE, namespace: 'default' }).content, r.content);
});

test('resolv.conf: ClusterFirst without cluster DNS falls back to Default, with the kubelet warning', () => {
  const r = podResolvConf({ dnsPolicy: 'ClusterFirst', nodeResolvConf: NODE, namespace: 'default' });
  assert.is(r.content, 'search example.com corp.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 timeout:2\n');
  assert.is(r.warnings[0]?.reason, 'MissingClusterDNS');
  assert.is(podResolvConf({ dnsPolicy: 'Default', clusterDNS: ['10.96.0.10'], nodeResolvConf: NODE, namespace: 'd' }).content, r.content);
  // no node resolv.conf configured: the local machine, search nothing
  assert.is(podResolvConf({ dnsPolicy: 'Default', namespace: 'd' }).content, 'search .\nnameserver 127.0.0.1\n');
});

test('resolv.conf: hostNetwork pods get Default under ClusterFirst, cluster DNS under ClusterFirstWithHostNet', () => {
  const base = { clusterDNS: ['10.96.0.10'], nodeResolvConf: NODE, namespace: 'kube-system', hostNetwork: true };
  assert.equal(podResolvConf({ ...base, dnsPolicy: 'ClusterFirst' }).nameservers, ['192.0.2.53', '192.0.2.54']);
  assert.equal(podResolvConf({ ...base, dnsPolicy: 'ClusterFirstWithHostNet' }).nameservers, ['10.96.0.10']);
});

test('resolv.conf: None + dnsConfig (the Kubernetes docs example); dnsConfig merges over other policies', () => {
  const r = podResolvConf({
    dnsPolicy: 'None', nodeResolvConf: NODE, clusterDNS: ['10.96.0.10'], namespace: 'default',
    dnsConfig: { nameservers: ['192.0.2.1'], searches: ['ns1.svc.cluster-domain.example', 'my.dns.search.suffix'], options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }] },
  });
  assert.is(r.content, 'search ns1.svc.cluster-domain.example my.dns.search.suffix\nnameserver 192.0.2.1\noptions ndots:2 edns0\n');
  const merged = podResolvConf({
    dnsPolicy: 'ClusterFirst', clusterDNS: ['10.96.0.10'], nodeResolvConf: '', namespace: 'ns',
    dnsConfig: { nameservers: ['10.96.0.10', '192.0.2.9'], searches: ['extra.example'], options: [{ name: 'ndots', value: '1' }, { name: 'single-request' }] },
  });
  assert.equal(merged.nameservers, ['10.96.0.10', '192.0.2.9'], 'duplicates dropped');
  assert.equal(merged.searches, ['ns.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'extra.example']);
  assert.equal(merged.options, ['ndots:1', 'single-request'], 'pod options override by name');
});

test('resolv.conf: limits (3 nameservers, 32 search paths) with DNSConfigForming warnings', () => {
  const r = podResolvConf({ dnsPolicy: 'None', namespace: 'n', dnsConfig: { nameservers: ['1.1.1.1', '1.1.1.2', '1.1.1.3', '1.1.1.4'], searches: Array.from({ length: 40 }, (_, i) => `s${i}.example`) } });
  assert.equal(r.nameservers, ['1.1.1.1', '1.1.1.2', '1.1.1.3']);
  assert.is(r.searches.length, 32);
  assert.equal(r.warnings.map((w) => w.reason), ['DNSConfigForming', 'DNSConfigForming']);
  assert.equal(parseResolvConf('search a. b\nsearch c .\nnameserver 1.2.3.4 # x\n; comment\noptions a\noptions b:1'), { nameservers: ['1.2.3.4'], searches: ['c'], options: ['a', 'b:1'] });
});

test('hosts: the real resolver finds the FQDN in the written file (getent in a private mount namespace)', async () => {
  if (process.getuid?.() !== 0) return;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sdt-hosts-'));
  try {
    const file = path.join(dir, 'hosts');
    await fs.writeFile(file, podHostsFile({ hostname: 'web-0', subdomain: 'web', namespace: 'default', podIPs: ['10.244.7.9'] }));
    const { stdout } = await run('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind ${file} /etc/hosts && getent hosts web-0.web.default.svc.cluster.local && getent hosts web-0`]);
    assert.equal(stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]), ['10.244.7.9', '10.244.7.9']);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();

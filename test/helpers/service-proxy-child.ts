/**
 * A stand-in proxy process for test/service-proxy.test.ts: programs two Services into TABLE
 * inside netns NODE (argv: TABLE NODE BACKEND_IP), prints "synced", then waits to be killed.
 */
import { ServiceRules } from '../../agent/service-proxy.js';
import { createLogger } from '../../common/log.js';

const [table, node, backend] = process.argv.slice(2) as [string, string, string];
const subnet = backend.split('.').slice(0, 3).join('.');
const rules = new ServiceRules({ table, nodeName: 'node-a', clusterCidr: `${subnet}.0/24`, nft: ['ip', 'netns', 'exec', node, 'nft'] }, createLogger('child', 'silent'));
const port = [{ name: 'http', protocol: 'TCP', port: 80 }];
const slice = (svc: string, ips: string[]) => ({
  metadata: { namespace: 'default', labels: { 'kubernetes.io/service-name': svc } }, addressType: 'IPv4',
  ports: [{ name: 'http', protocol: 'TCP', port: 8080 }], endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
});
rules.setService('default/web', { metadata: { namespace: 'default', name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: port } });
rules.setSlice('default/web-1', slice('web', [`${subnet}.11`, `${subnet}.12`]));
rules.setService('default/late', { metadata: { namespace: 'default', name: 'late' }, spec: { clusterIP: '10.96.0.20', ports: port } });
rules.setSlice('default/late-1', slice('late', [backend]));
await rules.sync();
process.stdout.write('synced\n');
setInterval(() => undefined, 60_000);

/**
 * The api-service's unit text (pure): who it runs as, what it may not do,
 * and the cases where a hardening option would hide what it must read. The
 * unit itself is run for real by test/security-api-service.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { API_SERVICE_SOCKET, apiServiceUnitFile, type ApiServiceUnitOptions } from '../api-service/install.js';

const base: ApiServiceUnitOptions = {
  cli: '/usr/bin/node /opt/stevedore/bin/stevedore.js', dataDir: '/var/lib/stevedore', socket: API_SERVICE_SOCKET,
  user: 'stevedore-api', group: 'stevedore', extraGroups: ['systemd-journal'], reads: ['/opt/stevedore/bin/stevedore.js', '/var/lib/stevedore'],
};
const directive = (unit: string, key: string) => unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

test('an unprivileged user, its group, the journal group, the socket only, no capabilities', () => {
  const u = apiServiceUnitFile(base);
  assert.equal(directive(u, 'User'), ['stevedore-api']);
  assert.equal(directive(u, 'Group'), ['stevedore']);
  assert.equal(directive(u, 'SupplementaryGroups'), ['systemd-journal']);
  assert.equal(directive(u, 'ExecStart'), ['/usr/bin/node /opt/stevedore/bin/stevedore.js --dir /var/lib/stevedore api-service --socket /run/stevedore-api/api.sock']);
  assert.equal(directive(u, 'CapabilityBoundingSet'), ['']);
  assert.equal(directive(u, 'NoNewPrivileges'), ['yes']);
  assert.equal(directive(u, 'ProtectSystem'), ['strict']);
  assert.equal(directive(u, 'ProtectHome'), ['yes']);
  assert.equal(directive(u, 'PrivateTmp'), ['yes']);
  assert.equal(directive(u, 'RestrictAddressFamilies'), ['AF_UNIX AF_INET AF_INET6']);
  assert.equal(directive(u, 'ReadWritePaths'), [], 'nothing writable but its runtime directory');
  assert.not.match(u, /^DynamicUser=/m);
});

test('--listen adds a loopback TCP listener to the socket', () => {
  assert.match(directive(apiServiceUnitFile({ ...base, listen: '127.0.0.1:15441' }), 'ExecStart')[0]!, / --socket \/run\/stevedore-api\/api\.sock --listen 127\.0\.0\.1:15441$/);
});

test('a CLI or data dir under /home keeps /home read-only rather than hidden; under /var/tmp, /tmp is not made private', () => {
  assert.equal(directive(apiServiceUnitFile({ ...base, reads: ['/home/dev/stevedore/bin/stevedore.js'] }), 'ProtectHome'), ['read-only']);
  assert.equal(directive(apiServiceUnitFile({ ...base, reads: ['/var/tmp/e2e/node'] }), 'PrivateTmp'), ['no']);
  assert.equal(directive(apiServiceUnitFile({ ...base, reads: ['/var/tmpfoo/node'] }), 'PrivateTmp'), ['yes']);
});

test('no supplementary groups line when the journal group does not exist; a socket elsewhere gets its folder writable', () => {
  assert.equal(directive(apiServiceUnitFile({ ...base, extraGroups: [] }), 'SupplementaryGroups'), []);
  assert.equal(directive(apiServiceUnitFile({ ...base, socket: '/srv/stevedore/api.sock' }), 'ReadWritePaths'), ['/srv/stevedore']);
});

test.run();

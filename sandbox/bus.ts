import dbus from 'dbus-next';

/**
 * Connects to an explicit bus address. dbus-next's systemBus() takes no
 * address, but sessionBus() does, and as root EXTERNAL auth passes on the
 * sandbox's system bus too.
 */
export function connectBus(busAddress: string): dbus.MessageBus {
  const bus = dbus.sessionBus({ busAddress });
  // Without a listener a refused connection would crash the process.
  bus.on('error', () => {});
  return bus;
}

export async function getManagerProperty(bus: dbus.MessageBus, property: string): Promise<unknown> {
  const reply = await bus.call(
    new dbus.Message({
      destination: 'org.freedesktop.systemd1',
      path: '/org/freedesktop/systemd1',
      interface: 'org.freedesktop.DBus.Properties',
      member: 'Get',
      signature: 'ss',
      body: ['org.freedesktop.systemd1.Manager', property],
    }),
  );
  const variant = reply?.body[0] as dbus.Variant | undefined;
  return variant?.value;
}

/** One-shot read of the manager's SystemState, giving up after timeoutMs. */
export async function readSystemState(busAddress: string, timeoutMs: number): Promise<string> {
  const bus = connectBus(busAddress);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer on ${busAddress} within ${timeoutMs} ms`)), timeoutMs);
    });
    const failed = new Promise<never>((_, reject) => bus.on('error', reject));
    return String(await Promise.race([getManagerProperty(bus, 'SystemState'), timeout, failed]));
  } finally {
    clearTimeout(timer);
    bus.disconnect();
  }
}

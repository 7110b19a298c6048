import { SystemdClient } from '../common/systemd.js';

/**
 * One-shot read of the manager's SystemState on an explicit bus address,
 * giving up after timeoutMs (the boot loop polls it until `running`).
 */
export async function readSystemState(busAddress: string, timeoutMs: number): Promise<string> {
  const connecting = SystemdClient.connect(busAddress);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer on ${busAddress} within ${timeoutMs} ms`)), timeoutMs);
    });
    return String(await Promise.race([connecting.then((c) => c.managerProperty('SystemState')), timeout]));
  } finally {
    clearTimeout(timer);
    // Closed whenever it connects, even after the timeout won the race.
    void connecting.then((c) => c.close(), () => undefined);
  }
}

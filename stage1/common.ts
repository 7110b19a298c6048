import { prop, type UnitProperty } from '../common/systemd.js';
import { podPaths, type AppManifest, type PreparedPod } from './contract.js';

/** The pod-level files every app sees at the same place, whatever its isolation. */
export function podEtcBinds(pod: PreparedPod): Array<{ source: string; destination: string }> {
  const paths = podPaths(pod.dir);
  return (['hosts', 'hostname', 'resolv.conf'] as const).map((f) => ({ source: paths.etc(f), destination: `/etc/${f}` }));
}

/** The app's termination message file at its terminationMessagePath, writable (the kubelet's bind of the same). */
export function terminationLogBind(pod: PreparedPod, app: AppManifest): Array<{ source: string; destination: string; writable: true }> {
  return app.terminationMessagePath ? [{ source: podPaths(pod.dir).terminationLog(app.name), destination: app.terminationMessagePath, writable: true }] : [];
}

export function envStrings(app: AppManifest): string[] {
  return app.env.map(([k, v]) => `${k}=${v}`);
}

/** Unit properties that are the same for every stage1 that runs the app's process under systemd directly. */
export function execStart(argv: string[]): UnitProperty {
  return prop.exec('ExecStart', [{ path: argv[0]!, argv }]);
}


import { prop } from '../common/systemd.js';
import { envStrings, execStart, podEtcBinds } from './common.js';
import { podPaths, type AppManifest, type AppUnitPlan, type PreparedPod, type Stage1 } from './contract.js';

/**
 * fly: no namespaces of its own. systemd chroots the app into its rootfs with
 * RootDirectory= and gives it /proc, /sys and /dev (MountAPIVFS=), so the app
 * shares the node's pid, network, ipc and uts namespaces — rkt's fly, for
 * node agents that must see the host.
 */
export class FlyStage1 implements Stage1 {
  readonly name = 'fly' as const;

  async prepare(): Promise<void> {}

  async appUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan> {
    const properties = [
      execStart(app.argv),
      prop.str('RootDirectory', podPaths(pod.dir).rootfs(app.name)),
      prop.bool('MountAPIVFS', true),
      // Only the app is chrooted: stage0's ExecStopPost exit recorder must run on the node.
      prop.bool('RootDirectoryStartOnly', true),
      prop.str('WorkingDirectory', app.workingDir),
      prop.strs('Environment', envStrings(app)),
      prop.binds('BindReadOnlyPaths', podEtcBinds(pod)),
    ];
    // Numeric ids: a name would be looked up in the node's passwd, not the image's.
    if (app.user.uid !== 0) properties.push(prop.str('User', String(app.user.uid)));
    if (app.user.gid !== 0) properties.push(prop.str('Group', String(app.user.gid)));
    return { properties, stopPost: [] };
  }

  enterArgv(_pod: PreparedPod, _app: AppManifest, mainPid: number, command: string[]): string[] {
    return ['nsenter', `--target=${mainPid}`, '--mount', '--root', '--wd', '--', ...command];
  }

  async cleanup(): Promise<void> {}
}

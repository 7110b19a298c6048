import type { Stage1, Stage1Name } from './contract.js';
import { FlyStage1 } from './fly.js';
import type { KvmAccelMode } from './kvm/accel.js';
import { KvmStage1 } from './kvm.js';
import { NamespacesStage1 } from './namespaces.js';

export * from './contract.js';

export interface Stage1Options {
  /** kvm: hardware acceleration or emulation (`--kvm-accel`) */
  kvmAccel?: KvmAccelMode;
}

export function stage1For(name: Stage1Name, opts: Stage1Options = {}): Stage1 {
  switch (name) {
    case 'fly': return new FlyStage1();
    case 'namespaces': return new NamespacesStage1();
    case 'kvm': return new KvmStage1(opts.kvmAccel);
  }
}

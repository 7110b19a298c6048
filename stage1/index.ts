import { InvalidInput } from '../common/errors.js';
import type { Stage1, Stage1Name } from './contract.js';
import { FlyStage1 } from './fly.js';
import { NamespacesStage1 } from './namespaces.js';

export * from './contract.js';

export function stage1For(name: Stage1Name): Stage1 {
  switch (name) {
    case 'fly': return new FlyStage1();
    case 'namespaces': return new NamespacesStage1();
    case 'kvm': throw new InvalidInput('stage1 kvm is not available in this build yet', 'use --stage1 namespaces or fly');
  }
}

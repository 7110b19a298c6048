import { InvalidInput } from '../common/errors.js';
import { STAGE1_NAMES, type Stage1, type Stage1Name } from './contract.js';
import { FlyStage1 } from './fly.js';
import { NamespacesStage1 } from './namespaces.js';

export * from './contract.js';

export function parseStage1Name(name: string): Stage1Name {
  if (!(STAGE1_NAMES as readonly string[]).includes(name)) throw new InvalidInput(`unknown stage1 "${name}"`, `choose one of: ${STAGE1_NAMES.join(', ')}`);
  return name as Stage1Name;
}

export function stage1For(name: Stage1Name): Stage1 {
  switch (name) {
    case 'fly': return new FlyStage1();
    case 'namespaces': return new NamespacesStage1();
    case 'kvm': throw new InvalidInput('stage1 kvm is not available in this build yet', 'use --stage1 namespaces or fly');
  }
}

/**
 * The node's isolation levels, weakest first, by the RuntimeClass handler
 * names pods ask for: `fly` (a chroot, root on the node), `namespaces` (a
 * container), `kvm` (a VM per pod). rkt offers all three as its stage1
 * flavours; another runtime offers the ones it can keep (docker: namespaces).
 * The agent's stage1 policy reasons in these levels.
 */
export type IsolationHandler = 'fly' | 'namespaces' | 'kvm';
export const ISOLATION_HANDLERS: readonly IsolationHandler[] = ['fly', 'namespaces', 'kvm'];

/** The operator's choice for VM pods (`--kvm-accel`): auto = hardware if a boot probe passes, else emulation. */
export type KvmAccelMode = 'auto' | 'kvm' | 'tcg';
export const KVM_ACCEL_MODES: readonly KvmAccelMode[] = ['auto', 'kvm', 'tcg'];

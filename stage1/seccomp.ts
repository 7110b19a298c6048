import * as fs from 'node:fs/promises';
import { ContainerConfigError } from '../common/errors.js';

/**
 * The node's built-in seccomp profile (what `seccompProfile: RuntimeDefault`
 * means here, and the default for every container, as containerd with the
 * kubelet's SeccompDefault). An allow-list: anything not named below fails
 * with EPERM. It follows the same policy as containerd's and moby's default
 * profile (which syscalls are safe for an unprivileged container, which only
 * with a capability) but is written as our own grouped list.
 *
 * Always refused, whatever the capabilities: keyctl/add_key/request_key (the
 * kernel keyring is not namespaced), kexec_*, userfaultfd, io_uring_*
 * (containerd dropped them from its default after a run of kernel escapes),
 * lookup_dcookie, nfsservctl, uselib, vm86*, swapon/swapoff, the old
 * sysfs/_sysctl/ustat, and everything else not listed.
 */

/** Plain syscalls every container may call: files, memory, processes, signals, time, sockets, IPC. */
const ALWAYS: readonly string[] = [
  // files and directories
  'access', 'faccessat', 'faccessat2', 'chdir', 'fchdir', 'getcwd', 'chmod', 'fchmod', 'fchmodat', 'fchmodat2',
  'chown', 'fchown', 'fchownat', 'lchown', 'close', 'close_range', 'creat', 'open', 'openat', 'openat2',
  'read', 'readv', 'pread64', 'preadv', 'preadv2', 'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2',
  'lseek', 'dup', 'dup2', 'dup3', 'fcntl', 'flock', 'fsync', 'fdatasync', 'sync', 'syncfs', 'sync_file_range',
  'truncate', 'ftruncate', 'fallocate', 'fadvise64', 'readahead', 'copy_file_range', 'sendfile', 'splice', 'tee', 'vmsplice',
  'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'statfs', 'fstatfs', 'getdents', 'getdents64',
  'link', 'linkat', 'symlink', 'symlinkat', 'readlink', 'readlinkat', 'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2',
  'mkdir', 'mkdirat', 'rmdir', 'mknod', 'mknodat', 'umask', 'utime', 'utimes', 'utimensat', 'futimesat',
  'getxattr', 'lgetxattr', 'fgetxattr', 'setxattr', 'lsetxattr', 'fsetxattr', 'listxattr', 'llistxattr', 'flistxattr',
  'removexattr', 'lremovexattr', 'fremovexattr', 'ioctl', 'name_to_handle_at', 'memfd_create', 'memfd_secret',
  'inotify_init', 'inotify_init1', 'inotify_add_watch', 'inotify_rm_watch', 'fanotify_mark',
  'pipe', 'pipe2', 'select', 'pselect6', 'poll', 'ppoll', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old',
  'epoll_wait', 'epoll_wait_old', 'epoll_pwait', 'epoll_pwait2', 'eventfd', 'eventfd2', 'signalfd', 'signalfd4',
  'timerfd_create', 'timerfd_settime', 'timerfd_gettime',
  'io_setup', 'io_destroy', 'io_submit', 'io_cancel', 'io_getevents', 'io_pgetevents',
  'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
  // memory
  'brk', 'mmap', 'munmap', 'mremap', 'mprotect', 'madvise', 'mincore', 'msync', 'remap_file_pages',
  'mlock', 'mlock2', 'mlockall', 'munlock', 'munlockall', 'membarrier', 'pkey_alloc', 'pkey_free', 'pkey_mprotect',
  'map_shadow_stack', 'cachestat',
  // processes, threads, identity (the kernel checks CAP_SETUID/CAP_SETGID for these)
  'execve', 'execveat', 'exit', 'exit_group', 'fork', 'vfork', 'wait4', 'waitid', 'kill', 'tkill', 'tgkill',
  'getpid', 'getppid', 'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid',
  'getuid', 'geteuid', 'getgid', 'getegid', 'getresuid', 'getresgid', 'getgroups',
  'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setfsuid', 'setfsgid', 'setgroups',
  'capget', 'capset', 'prctl', 'arch_prctl', 'set_tid_address', 'set_robust_list', 'get_robust_list', 'rseq',
  'futex', 'futex_waitv', 'futex_wait', 'futex_wake', 'futex_requeue', 'set_thread_area', 'get_thread_area', 'modify_ldt',
  'getrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'getpriority', 'setpriority', 'ioprio_get', 'ioprio_set',
  'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam', 'sched_setparam', 'sched_getscheduler',
  'sched_setscheduler', 'sched_getattr', 'sched_setattr', 'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval',
  'getcpu', 'uname', 'sysinfo', 'getrandom', 'seccomp', 'restart_syscall', 'pause',
  'pidfd_open', 'pidfd_send_signal', 'process_mrelease',
  // ptrace of one's own processes: safe under seccomp since Linux 4.8 (containerd allows it)
  'ptrace', 'process_vm_readv', 'process_vm_writev',
  // signals
  'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending', 'rt_sigsuspend', 'rt_sigtimedwait',
  'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'sigaltstack',
  // time (setting the clock needs CAP_SYS_TIME, below; reading it with adjtimex is harmless)
  'time', 'gettimeofday', 'clock_gettime', 'clock_getres', 'clock_nanosleep', 'nanosleep', 'adjtimex', 'clock_adjtime',
  'alarm', 'getitimer', 'setitimer', 'times',
  'timer_create', 'timer_delete', 'timer_settime', 'timer_gettime', 'timer_getoverrun',
  // sockets (socket() itself is conditional, below)
  'socketpair', 'bind', 'listen', 'accept', 'accept4', 'connect', 'shutdown', 'getsockname', 'getpeername',
  'getsockopt', 'setsockopt', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg',
  // System V and POSIX IPC (namespaced)
  'shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semtimedop', 'semctl', 'msgget', 'msgsnd', 'msgrcv', 'msgctl',
  'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive', 'mq_notify', 'mq_getsetattr',
];

/** 32-bit and arm names of the same operations (multi-arch nodes run 32-bit binaries through these). */
const COMPAT: readonly string[] = [
  '_llseek', '_newselect', 'chown32', 'fchown32', 'lchown32', 'fcntl64', 'fstat64', 'fstatat64', 'fstatfs64', 'lstat64',
  'stat64', 'statfs64', 'ftruncate64', 'truncate64', 'sendfile64', 'mmap2', 'getuid32', 'geteuid32', 'getgid32',
  'getegid32', 'getgroups32', 'getresuid32', 'getresgid32', 'setuid32', 'setgid32', 'setreuid32', 'setregid32',
  'setresuid32', 'setresgid32', 'setfsuid32', 'setfsgid32', 'setgroups32', 'ugetrlimit', 'waitpid', 'sigreturn',
  'sigprocmask', 'sigsuspend', 'signal', 'recv', 'send', 'socketcall', 'ipc',
  'clock_gettime64', 'clock_getres_time64', 'clock_nanosleep_time64', 'futex_time64', 'io_pgetevents_time64',
  'mq_timedreceive_time64', 'mq_timedsend_time64', 'ppoll_time64', 'pselect6_time64', 'recvmmsg_time64',
  'rt_sigtimedwait_time64', 'sched_rr_get_interval_time64', 'semtimedop_time64', 'timer_gettime64', 'timer_settime64',
  'timerfd_gettime64', 'timerfd_settime64', 'utimensat_time64',
  'arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls',
];

/** Syscalls a capability unlocks (the kernel checks the capability too; seccomp keeps the attack surface closed without it). */
const BY_CAPABILITY: Readonly<Record<string, readonly string[]>> = {
  CAP_SYS_ADMIN: ['mount', 'umount', 'umount2', 'mount_setattr', 'move_mount', 'open_tree', 'fsopen', 'fsconfig', 'fsmount', 'fspick',
    'pivot_root', 'unshare', 'setns', 'sethostname', 'setdomainname', 'quotactl', 'quotactl_fd', 'fanotify_init',
    'bpf', 'perf_event_open', 'syslog', 'clone3'],
  CAP_SYS_CHROOT: ['chroot'],
  CAP_SYS_BOOT: ['reboot'],
  CAP_SYS_MODULE: ['init_module', 'finit_module', 'delete_module'],
  CAP_SYS_PACCT: ['acct'],
  CAP_SYS_PTRACE: ['kcmp', 'pidfd_getfd', 'process_madvise'],
  CAP_SYS_RAWIO: ['iopl', 'ioperm'],
  CAP_SYS_TIME: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
  CAP_SYS_TTY_CONFIG: ['vhangup'],
  CAP_SYS_NICE: ['get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'mbind', 'migrate_pages', 'move_pages'],
  CAP_SYSLOG: ['syslog'],
  CAP_BPF: ['bpf'],
  CAP_PERFMON: ['perf_event_open'],
  CAP_DAC_READ_SEARCH: ['open_by_handle_at'],
};

/** clone() flags that make new namespaces: refused without CAP_SYS_ADMIN (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET). */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const AF_VSOCK = 40;
const EPERM = 1;
const ENOSYS = 38;
/** personality() values a container may set: Linux, 32-bit, uname26 and both, and the query 0xffffffff. */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

type SeccompArg = { index: number; value: number; valueTwo?: number; op: string };
interface SeccompRule { names: string[]; action: string; errnoRet?: number; args?: SeccompArg[] }
export interface OciSeccomp { defaultAction: string; defaultErrnoRet?: number; architectures: string[]; syscalls: SeccompRule[] }

/** The seccomp architectures of this node: its own and the 32-bit ones its kernel also runs. */
function architectures(arch: string): string[] {
  if (arch === 'x64') return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
  if (arch === 'arm64') return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
  throw new ContainerConfigError(`the built-in seccomp profile has no rules for the ${arch} architecture`, 'use seccompProfile Localhost with a profile for this node, or Unconfined');
}

/** Names the plain allow-list holds for a capability set (for systemd's SystemCallFilter, which has no argument rules). */
export function allowedSyscalls(caps: readonly string[]): string[] {
  const names = new Set([...ALWAYS, ...COMPAT]);
  for (const cap of caps) for (const n of BY_CAPABILITY[cap] ?? []) names.add(n);
  return [...names].sort();
}

/** The built-in profile as an OCI runtime spec `linux.seccomp`, for a container with these capabilities. */
export function runtimeDefaultSeccomp(caps: readonly string[], arch: string = process.arch): OciSeccomp {
  const sysAdmin = caps.includes('CAP_SYS_ADMIN');
  const syscalls: SeccompRule[] = [{ names: allowedSyscalls(caps), action: 'SCMP_ACT_ALLOW' }];
  // clone: threads and forks yes, new namespaces (a user namespace above all) only with CAP_SYS_ADMIN.
  syscalls.push(sysAdmin
    ? { names: ['clone'], action: 'SCMP_ACT_ALLOW' }
    : { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
  // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libcs fall back to clone, which is checked.
  if (!sysAdmin) syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  // socket: every family but vsock (a channel to the hypervisor on VM nodes).
  syscalls.push({ names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }] });
  // personality: one rule per value (rules with several args are ANDed, separate rules are ORed).
  for (const value of PERSONALITIES) syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] });
  return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: EPERM, architectures: architectures(arch), syscalls };
}

/**
 * Read and check a Localhost profile (an OCI `linux.seccomp` object in JSON, as
 * containerd takes it). Read again at each launch, as containerd does at each
 * container create, so a fixed profile applies to the next restart.
 */
export async function readLocalhostSeccomp(file: string): Promise<OciSeccomp> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ContainerConfigError(`seccomp profile ${file} cannot be read: ${(err as Error).message}`, 'put the profile on the node at that path, or use RuntimeDefault');
  }
  let profile: unknown;
  try {
    profile = JSON.parse(text);
  } catch (err) {
    throw new ContainerConfigError(`seccomp profile ${file} is not valid JSON: ${(err as Error).message}`, 'a Localhost profile is an OCI seccomp object: {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [...]}');
  }
  const p = profile as Partial<OciSeccomp>;
  if (typeof p !== 'object' || p === null || typeof p.defaultAction !== 'string' || (p.syscalls !== undefined && !Array.isArray(p.syscalls))) {
    throw new ContainerConfigError(`seccomp profile ${file} has no defaultAction or a malformed syscalls list`, 'a Localhost profile is an OCI seccomp object: {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [...]}');
  }
  return { architectures: [], syscalls: [], ...p } as OciSeccomp;
}

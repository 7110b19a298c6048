/*
 * seccomp-exec: load a precompiled seccomp BPF program, then exec a command.
 *
 *   seccomp-exec PROGRAM_FILE PATH [ARG0 ARG...]
 *
 * The fly stage1's app units start the app through this so that systemd does
 * not compile the RuntimeDefault allow-list into BPF at every start (~10 ms):
 * stage0 compiles the profile once per node boot (stage1/seccomp-bpf.ts, the
 * same program crun loads for the namespaces stage1) and writes it to
 * PROGRAM_FILE (raw struct sock_filter instructions, host order). The program
 * is read from a file rather than passed in argv: ~10 KB of base64 in
 * ExecStart= cost systemd ~2 ms per start (D-Bus, the transient unit file it
 * writes and parses back, the exec).
 *
 * It runs inside the app's chroot (systemd's RootDirectory=), where the
 * image's libc may be anything or nothing: it is linked statically, is not an
 * N-API addon, and uses nothing but a few syscalls. It sets no_new_privs (the
 * kernel refuses a filter without it or CAP_SYS_ADMIN; stage0 uses this
 * helper only for apps that have no_new_privs anyway), loads the filter and
 * execs PATH with the arguments after it. Any failure before the exec exits
 * 127 with a message on stderr (the app's journal), never running the app
 * unconfined.
 *
 * It is on every fly app start, so on x86-64 and arm64 it is built without a
 * libc at all (-nostdlib, its own _start and raw syscalls): a static glibc
 * binary is ~680 KB and spends ~0.25 ms in its own start-up (IRELATIVE
 * relocations, TLS, tunables) before main; this one is a few KB and does
 * only the syscalls below. Elsewhere it uses the libc's syscall().
 */
#include <linux/errno.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <asm/unistd.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define NO_LIBC 1
#endif

#ifdef NO_LIBC

/* <fcntl.h> is the libc's; these are the kernel's values on x86-64 and arm64. */
#define AT_FDCWD_VALUE (-100)
#define O_RDONLY_CLOEXEC 02000000

static long raw_syscall(long nr, long a, long b, long c, long d, long e) {
#if defined(__x86_64__)
  long result;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall" : "=a"(result) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
  return result;
#else
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
  return x0;
#endif
}

/* The kernel's convention: a result in [-4095, -1] is -errno. */
static long sys(long nr, long a, long b, long c, long d, long e, int *err) {
  long r = raw_syscall(nr, a, b, c, d, e);
  if (r < 0 && r > -4096) { *err = (int)-r; return -1; }
  return r;
}

/* The compiler may emit calls to these for struct copies even without a libc. */
void *memset(void *dst, int c, unsigned long n) {
  unsigned char *d = dst;
  while (n--) *d++ = (unsigned char)c;
  return dst;
}
void *memcpy(void *dst, const void *src, unsigned long n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

#else /* with a libc */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define AT_FDCWD_VALUE AT_FDCWD
#define O_RDONLY_CLOEXEC (O_RDONLY | O_CLOEXEC)

static long sys(long nr, long a, long b, long c, long d, long e, int *err) {
  long r = syscall(nr, a, b, c, d, e);
  if (r < 0) *err = errno;
  return r;
}

#endif

static unsigned long length_of(const char *s) {
  unsigned long n = 0;
  while (s[n]) n++;
  return n;
}

static void put(const char *s) {
  int ignored;
  sys(__NR_write, 2, (long)s, (long)length_of(s), 0, 0, &ignored);
}

/* strerror for what these three syscalls can return; the number for anything else. */
static void put_error(int err) {
  static const struct { int err; const char *text; } names[] = {
    { ENOENT, "No such file or directory" }, { EACCES, "Permission denied" }, { ENOEXEC, "Exec format error" },
    { ENOTDIR, "Not a directory" }, { ELOOP, "Too many levels of symbolic links" }, { E2BIG, "Argument list too long" },
    { ENOMEM, "Cannot allocate memory" }, { EPERM, "Operation not permitted" }, { EINVAL, "Invalid argument" },
    { EFAULT, "Bad address" }, { ETXTBSY, "Text file busy" }, { EISDIR, "Is a directory" }, { ENAMETOOLONG, "File name too long" },
    { EFBIG, "longer than 4096 instructions" }, { EIO, "Input/output error" },
  };
  for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i].err == err) { put(names[i].text); return; }
  }
  char digits[16];
  int n = sizeof digits - 1;
  digits[n] = 0;
  do { digits[--n] = (char)('0' + err % 10); err /= 10; } while (err && n > 0);
  put("errno ");
  put(&digits[n]);
}

/* "stevedore seccomp-exec: WHAT[ SUBJECT][: ERROR]; the app was not started" */
static int fail(const char *what, const char *subject, int err) {
  put("stevedore seccomp-exec: ");
  put(what);
  if (subject) { put(" "); put(subject); }
  if (err) { put(": "); put_error(err); }
  put("; the app was not started\n");
  return 127;
}

/* A classic BPF program has at most BPF_MAXINSNS instructions: it fits here, and no allocator is needed. */
static struct sock_filter program[BPF_MAXINSNS];

/* Reads the whole file into program; returns its byte count, or -1 with *err set (EFBIG: longer than BPF_MAXINSNS instructions). */
static long read_program(const char *file, int *err) {
  long fd = sys(__NR_openat, AT_FDCWD_VALUE, (long)file, O_RDONLY_CLOEXEC, 0, 0, err);
  if (fd < 0) return -1;
  unsigned char *bytes = (unsigned char *)program;
  unsigned long total = 0;
  for (;;) {
    /* One byte more than fits, to tell a full program from a longer file. */
    unsigned char extra;
    unsigned char *at = total < sizeof program ? bytes + total : &extra;
    unsigned long room = total < sizeof program ? sizeof program - total : 1;
    long n = sys(__NR_read, fd, (long)at, (long)room, 0, 0, err);
    if (n < 0 && *err == EINTR) { *err = 0; continue; }
    if (n < 0) break;
    if (n == 0) break;
    if (total >= sizeof program) { *err = EFBIG; n = -1; break; }
    total += (unsigned long)n;
  }
  int ignored;
  int failed = *err != 0;
  sys(__NR_close, fd, 0, 0, 0, 0, &ignored);
  return failed ? -1 : (long)total;
}

static int seccomp_exec(int argc, char **argv, char **envp) {
  int err = 0;
  if (argc < 3) return fail("usage: seccomp-exec PROGRAM_FILE PATH [ARG0 ARG...]", 0, 0);
  long bytes = read_program(argv[1], &err);
  if (bytes < 0) return fail("cannot read the seccomp program", argv[1], err);
  /* A classic BPF program is a whole number of 8-byte instructions. */
  if (bytes == 0 || bytes % sizeof(struct sock_filter) != 0) return fail("the seccomp program is not whole BPF instructions:", argv[1], 0);
  struct sock_fprog filter = { .len = (unsigned short)(bytes / sizeof(struct sock_filter)), .filter = program };
  if (sys(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, &err) != 0) return fail("cannot set no_new_privs", 0, err);
  if (sys(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, (long)&filter, 0, 0, &err) != 0) return fail("cannot load the seccomp filter", argv[1], err);
  /* With no ARG0, the command's argv is just its path. */
  char *only_path[] = { argv[2], 0 };
  sys(__NR_execve, (long)argv[2], (long)(argc > 3 ? &argv[3] : only_path), (long)envp, 0, 0, &err);
  put("stevedore seccomp-exec: cannot run ");
  put(argv[2]);
  put(": ");
  put_error(err);
  put("\n");
  return err == ENOENT ? 127 : 126;
}

#ifdef NO_LIBC

/* Called from _start with the initial stack's argc, argv and envp; its result is the exit status. */
__attribute__((used, noreturn)) void start_c(long *stack);
void start_c(long *stack) {
  int argc = (int)stack[0];
  char **argv = (char **)(stack + 1);
  char **envp = argv + argc + 1;
  int status = seccomp_exec(argc, argv, envp);
  int ignored;
  for (;;) sys(__NR_exit_group, status, 0, 0, 0, 0, &ignored);
}

#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"       /* argc, argv..., 0, envp..., 0 */
        "  and $-16, %rsp\n"       /* the ABI's alignment at a call */
        "  call start_c\n"
        "  hlt\n");
#else
__asm__(".text\n.global _start\n_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  bl start_c\n"
        "  brk #0\n");
#endif

#else

int main(int argc, char **argv, char **envp) { return seccomp_exec(argc, argv, envp); }

#endif

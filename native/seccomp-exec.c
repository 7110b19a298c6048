/*
 * seccomp-exec: load a precompiled seccomp BPF program, then exec a command.
 *
 *   seccomp-exec BPF_BASE64 PATH [ARG0 ARG...]
 *
 * The fly stage1's app units start the app through this so that systemd does
 * not compile the RuntimeDefault allow-list into BPF at every start (~10 ms):
 * stage0 compiles the profile once per node boot (stage1/seccomp-bpf.ts, the
 * same program crun loads for the namespaces stage1) and hands it here.
 *
 * It runs inside the app's chroot (systemd's RootDirectory=), where the
 * image's libc may be anything or nothing: it is linked statically, is not an
 * N-API addon, and uses nothing but a few syscalls. It sets no_new_privs (the
 * kernel refuses a filter without it or CAP_SYS_ADMIN; stage0 uses this
 * helper only for apps that have no_new_privs anyway), loads the filter and
 * execs PATH with the arguments after it. Any failure before the exec exits
 * 127 with a message on stderr (the app's journal), never running the app
 * unconfined.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decodes padded base64; returns the byte count, or -1 for anything malformed. */
static long base64_decode(const char *text, unsigned char *out) {
  size_t length = strlen(text);
  if (length == 0 || length % 4 != 0) return -1;
  long n = 0;
  for (size_t i = 0; i < length; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)text[i + k];
      if (c == '=' && i + 4 == length && k >= 2) { v[k] = 0; pad++; continue; }
      if (pad) return -1;
      v[k] = base64_value(c);
      if (v[k] < 0) return -1;
    }
    unsigned long bits = ((unsigned long)v[0] << 18) | ((unsigned long)v[1] << 12) | ((unsigned long)v[2] << 6) | (unsigned long)v[3];
    out[n++] = (unsigned char)(bits >> 16);
    if (pad < 2) out[n++] = (unsigned char)(bits >> 8);
    if (pad < 1) out[n++] = (unsigned char)bits;
  }
  return n;
}

static int fail(const char *what, int err) {
  fprintf(stderr, "stevedore seccomp-exec: %s%s%s; the app was not started\n", what, err ? ": " : "", err ? strerror(err) : "");
  return 127;
}

int main(int argc, char **argv) {
  if (argc < 3) return fail("usage: seccomp-exec BPF_BASE64 PATH [ARG0 ARG...]", 0);
  unsigned char *program = malloc(strlen(argv[1]) / 4 * 3 + 3);
  if (!program) return fail("out of memory", ENOMEM);
  long bytes = base64_decode(argv[1], program);
  /* A classic BPF program is a whole number of 8-byte instructions, at most BPF_MAXINSNS of them. */
  if (bytes <= 0 || bytes % sizeof(struct sock_filter) != 0 || bytes / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    return fail("the seccomp program is not base64 of whole BPF instructions", 0);
  }
  struct sock_fprog filter = { .len = (unsigned short)(bytes / sizeof(struct sock_filter)), .filter = (struct sock_filter *)program };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("cannot set no_new_privs", errno);
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0) return fail("cannot load the seccomp filter", errno);
  free(program);
  /* With no ARG0, the command's argv is just its path. */
  char *only_path[] = { argv[2], NULL };
  execv(argv[2], argc > 3 ? &argv[3] : only_path);
  int err = errno;
  fprintf(stderr, "stevedore seccomp-exec: cannot run %s: %s\n", argv[2], strerror(err));
  return err == ENOENT ? 127 : 126;
}

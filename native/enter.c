/*
 * stevedore-enter: run a command inside a running namespaces-stage1 app the
 * way `crun exec` does, without crun's own start cost (a dynamically linked
 * binary that re-executes itself from a sealed copy, parses the container's
 * whole config.json and reads the mount table: ~7 ms of CPU per call, most
 * of an exec probe's cost).
 *
 *   stevedore-enter ENTER_SPEC PID STARTTIME PATH_OR_NAME [ARG...]
 *
 * ENTER_SPEC is the app's enter.spec (stage1/enter-spec.ts writes it beside
 * config.json, root-only: it holds the app's environment): NUL-terminated
 * `key=value` records giving the app process's uid, gid, supplementary
 * groups, the five capability sets (hex masks), no_new_privs, the seccomp
 * BPF program crun loaded for the app (base64), its working directory and
 * its environment. PID is the container's init process (crun's state) and
 * STARTTIME its start time (field 22 of /proc/PID/stat): a recycled PID is
 * refused rather than entered.
 *
 * With a `root=target` record (the fly stage1: its apps are chrooted inside
 * a mount namespace of their own), /proc/PID/root is opened before the
 * namespaces are joined and the process chroots to it after: setns(mnt)
 * alone would leave it at the namespace's root, the node's tree. Namespaces
 * the target shares with this process are not joined again, and when the
 * pid namespace is shared there is no fork: the command is this process.
 *
 * What it does, in crun exec's order (crun 1.8, strace'd): join every
 * namespace of PID (cgroup, ipc, uts, net, pid, time, mnt; a different user
 * namespace is refused), fork into the pid namespace, and in the child:
 * chdir to the app's cwd, default signal dispositions, find the command on
 * the app's PATH, HOME from the container's /etc/passwd when the
 * environment has none (crun does the same), no_new_privs, the seccomp
 * filter (SECCOMP_FILTER_FLAG_SPEC_ALLOW, as crun), setgroups, drop the
 * bounding set, setresgid/setresuid keeping capabilities, capset
 * (effective, permitted, inheritable), the ambient set, execve. The parent
 * waits and exits with the child's status (128 + signal when killed). The
 * caller (native/spawn.c) has already put the process into the app's
 * cgroups and its own process group, so a timeout's group kill reaches the
 * command too.
 *
 * Every failure before the execve exits 126 (127: the command was not
 * found) with a message on stderr, and never runs the command with fewer
 * restrictions than the app: nothing is skipped on error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define MAX_SPEC (8 << 20)
#define MAX_GROUPS 256
#define MAX_ENV 65536

static int die(int code, const char *what, const char *detail, int err) {
  fprintf(stderr, "stevedore-enter: %s%s%s%s%s\n", what, detail ? " " : "", detail ? detail : "", err ? ": " : "", err ? strerror(err) : "");
  return code;
}

struct enter_spec {
  int has_uid, has_gid, has_caps;
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int ngroups;
  uint64_t bounding, effective, permitted, inheritable, ambient;
  int nnp;
  int enter_root; /* root=target: chroot to the target process's root after joining its mount namespace */
  const char *root_dir; /* root=/PATH (--start only): chroot to this node directory, no target */
  const char *seccomp; /* base64, or NULL: no filter */
  const char *cwd;
  char **env;
  int nenv;
};

static int parse_u64_hex(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 16);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

static int parse_id(const char *s, unsigned int *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v > 0xfffffffeUL) return -1;
  *out = (unsigned int)v;
  return 0;
}

/* Every record must be known and well-formed: a spec this helper does not fully understand is not entered. */
static int parse_spec(char *buf, size_t len, struct enter_spec *spec) {
  memset(spec, 0, sizeof(*spec));
  /* Room for HOME and the terminating NULL beyond the spec's own entries. */
  spec->env = calloc(MAX_ENV + 2, sizeof(char *));
  if (!spec->env) return die(126, "out of memory", NULL, ENOMEM);
  int has[5] = {0};
  size_t i = 0;
  while (i < len) {
    char *record = buf + i;
    size_t n = strnlen(record, len - i);
    if (n == len - i) return die(126, "the enter spec is cut short", NULL, 0);
    i += n + 1;
    char *eq = strchr(record, '=');
    if (!eq) return die(126, "a record of the enter spec has no '=':", record, 0);
    *eq = 0;
    const char *key = record, *value = eq + 1;
    unsigned int id;
    if (!strcmp(key, "uid")) {
      if (parse_id(value, &id)) return die(126, "bad uid in the enter spec:", value, 0);
      spec->uid = id; spec->has_uid = 1;
    } else if (!strcmp(key, "gid")) {
      if (parse_id(value, &id)) return die(126, "bad gid in the enter spec:", value, 0);
      spec->gid = id; spec->has_gid = 1;
    } else if (!strcmp(key, "group")) {
      if (parse_id(value, &id) || spec->ngroups >= MAX_GROUPS) return die(126, "bad supplementary group in the enter spec:", value, 0);
      spec->groups[spec->ngroups++] = id;
    } else if (!strcmp(key, "cap.bounding") || !strcmp(key, "cap.effective") || !strcmp(key, "cap.permitted") || !strcmp(key, "cap.inheritable") || !strcmp(key, "cap.ambient")) {
      static const char *names[] = {"cap.bounding", "cap.effective", "cap.permitted", "cap.inheritable", "cap.ambient"};
      uint64_t *slots[] = {&spec->bounding, &spec->effective, &spec->permitted, &spec->inheritable, &spec->ambient};
      for (int k = 0; k < 5; k++) {
        if (strcmp(key, names[k])) continue;
        if (parse_u64_hex(value, slots[k])) return die(126, "bad capability mask in the enter spec:", value, 0);
        has[k] = 1;
      }
    } else if (!strcmp(key, "nnp")) {
      if (strcmp(value, "0") && strcmp(value, "1")) return die(126, "bad nnp in the enter spec:", value, 0);
      spec->nnp = value[0] == '1';
    } else if (!strcmp(key, "root")) {
      /* The target's own root (fly's apps are chrooted inside their mount namespace), or, to start an app (--start), its rootfs. */
      if (!strcmp(value, "target")) spec->enter_root = 1;
      else if (value[0] == '/' && value[1]) spec->root_dir = value;
      else return die(126, "bad root in the enter spec:", value, 0);
    } else if (!strcmp(key, "seccomp")) {
      spec->seccomp = *value ? value : NULL;
    } else if (!strcmp(key, "cwd")) {
      spec->cwd = value;
    } else if (!strcmp(key, "env")) {
      if (spec->nenv >= MAX_ENV || !strchr(value, '=')) return die(126, "bad env record in the enter spec:", value, 0);
      spec->env[spec->nenv++] = (char *)value;
    } else {
      return die(126, "unknown record in the enter spec:", key, 0);
    }
  }
  spec->has_caps = has[0] && has[1] && has[2] && has[3] && has[4];
  if (!spec->has_uid || !spec->has_gid || !spec->has_caps || !spec->cwd || spec->cwd[0] != '/') return die(126, "the enter spec lacks uid, gid, a capability set or an absolute cwd", NULL, 0);
  return 0;
}

static int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

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

static ssize_t read_all(int fd, char *buf, size_t max) {
  size_t got = 0;
  while (got < max) {
    ssize_t r = read(fd, buf + got, max - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces). */
static int check_start_time(int proc_dir, const char *expected) {
  int fd = openat(proc_dir, "stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[1024];
  ssize_t n = read_all(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2; /* field 3 */
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  if (!p) return -1;
  size_t len = strcspn(p, " ");
  return strlen(expected) == len && !strncmp(p, expected, len) ? 0 : 1;
}

static const char *env_get(const struct enter_spec *spec, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < spec->nenv; i++) if (!strncmp(spec->env[i], name, n) && spec->env[i][n] == '=') return spec->env[i] + n + 1;
  return NULL;
}

/* HOME from the container's /etc/passwd for the uid, "/" when it has none: what crun exec adds when the environment lacks it. */
static char *home_of(uid_t uid) {
  static char home[4096];
  strcpy(home, "/");
  FILE *f = fopen("/etc/passwd", "re");
  if (!f) return home;
  char line[4096];
  while (fgets(line, sizeof(line), f)) {
    char *fields[7];
    int n = 0;
    char *save = NULL;
    line[strcspn(line, "\n")] = 0;
    /* strsep keeps empty fields (strtok would merge them). */
    char *rest = line;
    while (n < 7 && (save = strsep(&rest, ":")) != NULL) fields[n++] = save;
    if (n < 6) continue;
    unsigned int id;
    if (parse_id(fields[2], &id) || id != uid) continue;
    if (fields[5][0]) snprintf(home, sizeof(home), "%s", fields[5]);
    break;
  }
  fclose(f);
  return home;
}

/* The command on the app's PATH (crun's default PATH when the app has none), as crun exec looks it up. */
static int find_command(const char *name, const struct enter_spec *spec, char *out, size_t size) {
  if (strchr(name, '/')) {
    snprintf(out, size, "%s", name);
    return 0;
  }
  const char *path = env_get(spec, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  const char *p = path;
  while (1) {
    size_t len = strcspn(p, ":");
    if (len) {
      snprintf(out, size, "%.*s/%s", (int)len, p, name);
      struct stat st;
      if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return 0;
    }
    if (!p[len]) break;
    p += len + 1;
  }
  return -1;
}

static int capset_v3(const struct enter_spec *spec) {
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];
  data[0].effective = (uint32_t)spec->effective;
  data[1].effective = (uint32_t)(spec->effective >> 32);
  data[0].permitted = (uint32_t)spec->permitted;
  data[1].permitted = (uint32_t)(spec->permitted >> 32);
  data[0].inheritable = (uint32_t)spec->inheritable;
  data[1].inheritable = (uint32_t)(spec->inheritable >> 32);
  return (int)syscall(SYS_capset, &header, data);
}

/* In the container's namespaces, still with the node's root credentials: take on the app's restrictions, then exec. */
static int become_app_and_exec(struct enter_spec *spec, char **command) {
  if (chdir(spec->cwd) != 0) return die(126, "cannot change to the working directory", spec->cwd, errno);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  char path[4096];
  if (find_command(command[0], spec, path, sizeof(path)) != 0) {
    fprintf(stderr, "stevedore-enter: executable file `%s` not found in $PATH\n", command[0]);
    return 127;
  }
  if (!env_get(spec, "HOME")) {
    static char home_var[4200];
    snprintf(home_var, sizeof(home_var), "HOME=%s", home_of(spec->uid));
    spec->env[spec->nenv++] = home_var;
  }
  spec->env[spec->nenv] = NULL;
  /* Nothing of this process but stdio reaches the command. */
  if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
    for (int fd = 3; fd < 1024; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (spec->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return die(126, "cannot set no_new_privs", NULL, errno);
  if (spec->seccomp) {
    unsigned char *program = malloc(strlen(spec->seccomp) / 4 * 3 + 3);
    if (!program) return die(126, "out of memory", NULL, ENOMEM);
    long bytes = base64_decode(spec->seccomp, program);
    if (bytes <= 0 || bytes % sizeof(struct sock_filter) != 0 || bytes / sizeof(struct sock_filter) > BPF_MAXINSNS) return die(126, "the seccomp program is not base64 of whole BPF instructions", NULL, 0);
    struct sock_fprog filter = { .len = (unsigned short)(bytes / sizeof(struct sock_filter)), .filter = (struct sock_filter *)program };
    /* crun loads with SPEC_ALLOW when the profile names no flags; kernels without the flag get none, as crun retries. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &filter) != 0) {
      if (errno != EINVAL || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0) return die(126, "cannot load the seccomp filter", NULL, errno);
    }
  }
  if (setgroups((size_t)spec->ngroups, spec->groups) != 0) return die(126, "cannot set the supplementary groups", NULL, errno);
  for (int cap = 0; cap < 64; cap++) {
    if (spec->bounding & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return die(126, "cannot drop a capability from the bounding set", NULL, errno);
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return die(126, "cannot keep capabilities across setuid", NULL, errno);
  if (setresgid(spec->gid, spec->gid, spec->gid) != 0) return die(126, "cannot set the gid", NULL, errno);
  if (setresuid(spec->uid, spec->uid, spec->uid) != 0) return die(126, "cannot set the uid", NULL, errno);
  if (capset_v3(spec) != 0) return die(126, "cannot set the capabilities", NULL, errno);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return die(126, "cannot clear the ambient capabilities", NULL, errno);
  for (int cap = 0; cap < 64; cap++) {
    if (!(spec->ambient & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) return die(126, "cannot raise an ambient capability", NULL, errno);
  }
  execve(path, command, spec->env);
  int err = errno;
  fprintf(stderr, "stevedore-enter: cannot run %s: %s\n", path, strerror(err));
  return err == ENOENT ? 127 : 126;
}

/*
 * --start: the app's first process, for a fly app held by the console holder (stdin/tty): the caller
 * is the unit's main process, root on the node in the mount namespace systemd made for the unit; the
 * command is chrooted to the spec's root=/PATH (the app's rootfs) and takes on the same restrictions
 * as any exec, then runs as this very process (no fork, no namespace joined).
 */
static int start_app(struct enter_spec *spec, char **command) {
  if (!spec->root_dir) return die(126, "--start needs a root=/PATH record in the enter spec", NULL, 0);
  if (spec->enter_root) return die(126, "--start takes no root=target record", NULL, 0);
  if (chdir(spec->root_dir) != 0 || chroot(".") != 0) return die(126, "cannot enter the app's root directory", spec->root_dir, errno);
  return become_app_and_exec(spec, command);
}

static int read_spec(const char *file, struct enter_spec *spec) {
  int spec_fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (spec_fd < 0) return die(126, "cannot open the enter spec", file, errno);
  struct stat spec_st;
  /* It holds the app's environment (Secret values): only a root-owned file no one else can write is trusted. */
  if (fstat(spec_fd, &spec_st) != 0 || !S_ISREG(spec_st.st_mode) || spec_st.st_uid != 0 || (spec_st.st_mode & 022) || spec_st.st_size > MAX_SPEC) {
    return die(126, "the enter spec is not a root-owned regular file of sane size", file, 0);
  }
  char *buf = malloc((size_t)spec_st.st_size + 1);
  if (!buf) return die(126, "out of memory", NULL, ENOMEM);
  ssize_t len = read_all(spec_fd, buf, (size_t)spec_st.st_size);
  close(spec_fd);
  if (len != spec_st.st_size) return die(126, "cannot read the enter spec", file, errno);
  return parse_spec(buf, (size_t)len, spec);
}

int main(int argc, char **argv) {
  /* Like crun: the container's processes must not ptrace or read this still-privileged process. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (argc >= 4 && !strcmp(argv[1], "--start")) {
    struct enter_spec start_spec;
    int bad = read_spec(argv[2], &start_spec);
    if (bad) return bad;
    return start_app(&start_spec, argv + 3);
  }
  if (argc < 5) return die(126, "usage: stevedore-enter ENTER_SPEC PID STARTTIME COMMAND [ARG...] | --start ENTER_SPEC COMMAND [ARG...]", NULL, 0);

  int spec_fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (spec_fd < 0) return die(126, "cannot open the enter spec", argv[1], errno);
  struct stat spec_st;
  /* It holds the app's environment (Secret values): only a root-owned file no one else can write is trusted. */
  if (fstat(spec_fd, &spec_st) != 0 || !S_ISREG(spec_st.st_mode) || spec_st.st_uid != 0 || (spec_st.st_mode & 022) || spec_st.st_size > MAX_SPEC) {
    return die(126, "the enter spec is not a root-owned regular file of sane size", argv[1], 0);
  }
  char *buf = malloc((size_t)spec_st.st_size + 1);
  if (!buf) return die(126, "out of memory", NULL, ENOMEM);
  ssize_t len = read_all(spec_fd, buf, (size_t)spec_st.st_size);
  close(spec_fd);
  if (len != spec_st.st_size) return die(126, "cannot read the enter spec", argv[1], errno);
  struct enter_spec spec;
  int bad = parse_spec(buf, (size_t)len, &spec);
  if (bad) return bad;
  /* A node directory as root is for --start only: an exec enters the target's own root or none. */
  if (spec.root_dir) return die(126, "bad root in the enter spec:", spec.root_dir, 0);

  unsigned int pid;
  if (parse_id(argv[2], &pid) || pid == 0) return die(126, "bad container pid", argv[2], 0);
  char proc_path[64];
  snprintf(proc_path, sizeof(proc_path), "/proc/%u", pid);
  /* Everything of the target is opened through this directory: if the pid is recycled after the check, the opens fail. */
  int proc_dir = open(proc_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc_dir < 0) return die(126, "the container's process is gone", proc_path, errno);
  if (check_start_time(proc_dir, argv[3]) != 0) return die(126, "the container's process is gone (its pid was reused)", proc_path, 0);

  struct stat own_user, its_user;
  int user_fd = openat(proc_dir, "ns/user", O_RDONLY | O_CLOEXEC);
  if (user_fd < 0 || fstat(user_fd, &its_user) != 0 || stat("/proc/self/ns/user", &own_user) != 0) return die(126, "cannot read the container's user namespace", NULL, errno);
  if (its_user.st_ino != own_user.st_ino || its_user.st_dev != own_user.st_dev) return die(126, "the container has a user namespace of its own, which this helper does not enter", NULL, 0);
  close(user_fd);

  /* mnt last among the opens is irrelevant (all fds are open first); it is joined last so nothing after depends on node paths. */
  static const struct { const char *name; int type; int optional; } namespaces[] = {
    {"ns/cgroup", CLONE_NEWCGROUP, 0}, {"ns/ipc", CLONE_NEWIPC, 0}, {"ns/uts", CLONE_NEWUTS, 0}, {"ns/net", CLONE_NEWNET, 0},
    {"ns/pid", CLONE_NEWPID, 0}, {"ns/time", CLONE_NEWTIME, 1}, {"ns/mnt", CLONE_NEWNS, 0},
  };
  int ns_fds[7];
  int joins_pid_namespace = 0;
  for (int i = 0; i < 7; i++) {
    ns_fds[i] = openat(proc_dir, namespaces[i].name, O_RDONLY | O_CLOEXEC);
    if (ns_fds[i] < 0 && !(namespaces[i].optional && errno == ENOENT)) return die(126, "cannot open the container's namespace", namespaces[i].name, errno);
    if (ns_fds[i] < 0) continue;
    /* A namespace the target shares with this process (fly: all but mnt) is not joined again. */
    char own_path[64];
    snprintf(own_path, sizeof(own_path), "/proc/self/%s", namespaces[i].name);
    struct stat its, own;
    if (fstat(ns_fds[i], &its) != 0) return die(126, "cannot read the container's namespace", namespaces[i].name, errno);
    if (stat(own_path, &own) == 0 && its.st_ino == own.st_ino && its.st_dev == own.st_dev) {
      close(ns_fds[i]);
      ns_fds[i] = -1;
      continue;
    }
    if (namespaces[i].type == CLONE_NEWPID) joins_pid_namespace = 1;
  }
  /*
   * The target's root, opened before the mount namespace is joined (setns puts this process at that
   * namespace's root, not at a chroot inside it): a chrooted target (fly) is entered at its own root.
   */
  int root_fd = -1;
  if (spec.enter_root) {
    root_fd = openat(proc_dir, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) return die(126, "cannot open the container's root directory", proc_path, errno);
    /*
     * Compared with this process's root before any namespace is joined (systemd may move a chrooted app's root to its
     * namespace's "/"): a target whose root is still the node's (fly's console holder, or its child before the chroot)
     * is refused, since the command would otherwise run in the node's tree.
     */
    struct stat target_root, own_root;
    if (fstat(root_fd, &target_root) != 0 || stat("/", &own_root) != 0) return die(126, "cannot read the container's root directory", proc_path, errno);
    if (target_root.st_ino == own_root.st_ino && target_root.st_dev == own_root.st_dev) return die(126, "the container's process is not in its root directory (yet)", proc_path, 0);
  }
  /* The pid was still the container's while every namespace was opened. */
  if (check_start_time(proc_dir, argv[3]) != 0) return die(126, "the container's process is gone (its pid was reused)", proc_path, 0);
  close(proc_dir);
  for (int i = 0; i < 7; i++) {
    if (ns_fds[i] < 0) continue;
    if (setns(ns_fds[i], namespaces[i].type) != 0) return die(126, "cannot join the container's namespace", namespaces[i].name, errno);
    close(ns_fds[i]);
  }
  if (root_fd >= 0) {
    if (fchdir(root_fd) != 0 || chroot(".") != 0) return die(126, "cannot enter the container's root directory", proc_path, errno);
    close(root_fd);
  }

  /* In the target's pid namespace already (fly): no fork, so the command is this process and signals reach it as they would. */
  if (!joins_pid_namespace) return become_app_and_exec(&spec, argv + 4);
  pid_t child = fork();
  if (child < 0) return die(126, "cannot fork into the container's pid namespace", NULL, errno);
  if (child == 0) _exit(become_app_and_exec(&spec, argv + 4));
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return die(126, "cannot wait for the command", NULL, errno);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

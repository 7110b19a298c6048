/*
 * Run a short command to completion and capture its output, for exec probes
 * and lifecycle hooks (a probe every few seconds per container). Node's
 * child_process forks the whole agent (page tables of a 100+ MiB process on
 * every call) and cannot place the child in another cgroup, which took a
 * shell per call to join the container's cgroups before exec'ing `crun exec`.
 * Here a thread of its own vforks (no copy of the address space), the child
 * joins the given cgroups itself (writing 0 to cgroup.procs moves the writer,
 * in v1 and v2) and execs; the thread reads the output, enforces the timeout
 * and reaps the child, then hands the result to the event loop through a
 * thread-safe function. Not libuv's pool: a command may take its whole
 * timeout, and a pool of four threads held by probes would stall every file
 * operation of the agent (measured: pod starts at 100 probed pods went from
 * ~0.2 s to ~12 s). libuv reaps only the children it started, so this one is
 * ours to wait for.
 *
 * runPiped does the same for the CNI plugins, which take their config on
 * stdin, their own environment, and answer on stdout apart from stderr:
 * libuv's fork() stopped the agent's event loop for 1-3 ms per plugin (more
 * under load, and the bigger the agent: its page tables are copied), once
 * per plugin of every pod start and removal.
 */
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* What one output pipe brought, cut at the job's max_output. */
typedef struct {
  char *data;
  size_t len;
} captured_t;

typedef struct {
  napi_threadsafe_function done;
  napi_deferred deferred;
  char **argv;        /* NULL-terminated */
  char **procs;       /* cgroup.procs files to join, NULL-terminated */
  char **envp;        /* NULL: the agent's own environment */
  char *input;        /* written to the command's stdin (NULL: stdin is /dev/null) */
  size_t input_len;
  int split_stderr;   /* stderr apart from stdout (runPiped), or both in one (runCaptured) */
  int timeout_ms;
  size_t max_output;
  /* results */
  captured_t out;
  captured_t err_out;
  int exit_code;
  int term_signal;
  int timed_out;
  int err;            /* errno of a failure to start (or to join a cgroup) */
  const char *call;
} job_t;

static void free_strings(char **list) {
  if (list == NULL) return;
  for (char **p = list; *p != NULL; p++) free(*p);
  free(list);
}

static void free_job(job_t *job) {
  free_strings(job->argv);
  free_strings(job->procs);
  free_strings(job->envp);
  free(job->input);
  free(job->out.data);
  free(job->err_out.data);
  free(job);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pipes' ends the child keeps: stdin's read end (-1: /dev/null), stdout's and stderr's write ends, and where it reports a failure to start. */
typedef struct {
  int in_r, out_w, err_w, report_w;
} child_fds_t;

/* In the vfork child: only async-signal-safe calls, no writes to memory but this stack. */
static void child(job_t *job, const child_fds_t *fds) {
  int err_w = fds->report_w;
  struct { int err; int stage; } report;
  /* Every signal to its default (the agent's handlers are not the command's, and an ignored
   * SIGPIPE would be inherited across exec), then the mask the command should start with. */
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &dfl, NULL);
  }
  sigset_t empty;
  sigemptyset(&empty);
  /* A process group of its own: what the command starts (nsenter forks the command into the pod's
   * PID namespace; crun exec forks the container's process) is killed with it at the timeout. */
  setpgid(0, 0);
  for (char **p = job->procs; *p != NULL; p++) {
    int fd = open(*p, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      report.err = errno;
      report.stage = 1;
      if (write(err_w, &report, sizeof report) < 0) { /* nothing left to tell */ }
      _exit(125);
    }
    close(fd);
  }
  int in_fd = fds->in_r >= 0 ? fds->in_r : open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (in_fd < 0 || dup2(in_fd, 0) < 0 || dup2(fds->out_w, 1) < 0 || dup2(fds->err_w, 2) < 0) {
    report.err = errno;
    report.stage = 2;
    if (write(err_w, &report, sizeof report) < 0) { /* nothing left to tell */ }
    _exit(127);
  }
  pthread_sigmask(SIG_SETMASK, &empty, NULL);
  execve(job->argv[0], job->argv, job->envp != NULL ? job->envp : environ);
  report.err = errno;
  report.stage = 2;
  if (write(err_w, &report, sizeof report) < 0) { /* nothing left to tell */ }
  _exit(127);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Append what came to `c`, cut at `cap` (the rest is read and dropped, so the command is never blocked on a full pipe). */
static void keep(captured_t *c, size_t cap, const char *bytes, size_t n) {
  if (c->data == NULL) c->data = malloc(cap > 0 ? cap : 1);
  size_t take = n;
  if (c->len + take > cap) take = cap - c->len;
  if (take > 0 && c->data != NULL) memcpy(c->data + c->len, bytes, take);
  c->len += take;
}

/*
 * Reap `pid`, waiting until `deadline` at most: 1 when it was reaped (or there is nothing to reap), 0 when the
 * deadline passed first. A pidfd wakes this thread the moment the command exits; without one (kernels before
 * 5.3) it looks every 2 ms.
 */
static int reap_by(pid_t pid, int *status, long long deadline) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  int reaped = 0;
  for (;;) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) { reaped = 1; break; }
    long long left = deadline - now_ms();
    if (left <= 0) break;
    if (pidfd >= 0) {
      struct pollfd p = { .fd = pidfd, .events = POLLIN };
      poll(&p, 1, (int)left);
    } else {
      struct timespec ts = { 0, 2 * 1000 * 1000 };
      nanosleep(&ts, NULL);
    }
  }
  if (pidfd >= 0) close(pidfd);
  return reaped;
}

static void execute(job_t *job) {
  /* [0] stdin, [1] stdout, [2] stderr (split only), [3] the child's report */
  int pipes[4][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };
  for (int i = 0; i < 4; i++) {
    if ((i == 0 && job->input == NULL) || (i == 2 && !job->split_stderr)) continue;
    if (pipe2(pipes[i], O_CLOEXEC) != 0) {
      job->err = errno;
      job->call = "pipe";
      for (int j = 0; j < i; j++) { close_fd(&pipes[j][0]); close_fd(&pipes[j][1]); }
      return;
    }
  }
  child_fds_t fds = { .in_r = pipes[0][0], .out_w = pipes[1][1], .err_w = job->split_stderr ? pipes[2][1] : pipes[1][1], .report_w = pipes[3][1] };
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = vfork();
  if (pid == 0) child(job, &fds);
  int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close_fd(&pipes[0][0]);
  close_fd(&pipes[1][1]);
  close_fd(&pipes[2][1]);
  close_fd(&pipes[3][1]);
  int in_w = pipes[0][1], out_r = pipes[1][0], err_r = pipes[2][0], report_r = pipes[3][0];
  if (pid < 0) {
    job->err = fork_err;
    job->call = "vfork";
    close_fd(&in_w);
    close_fd(&out_r);
    close_fd(&err_r);
    close_fd(&report_r);
    return;
  }
  /* The child exec'd (the report pipe closed on exec) or wrote why it could not. */
  struct { int err; int stage; } report;
  ssize_t n;
  do { n = read(report_r, &report, sizeof report); } while (n < 0 && errno == EINTR);
  close_fd(&report_r);
  if (n == (ssize_t)sizeof report) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    close_fd(&in_w);
    close_fd(&out_r);
    close_fd(&err_r);
    job->err = report.err;
    job->call = report.stage == 1 ? "join the container's cgroup" : "execve";
    return;
  }
  /* stdin is written as the command reads it, while its output is read: neither side waits on a full pipe. */
  if (in_w >= 0) fcntl(in_w, F_SETFL, fcntl(in_w, F_GETFL) | O_NONBLOCK);
  size_t in_off = 0;
  if (in_w >= 0 && job->input_len == 0) close_fd(&in_w);
  char scratch[16384];
  long long deadline = now_ms() + job->timeout_ms;
  int killed = 0;
  while (out_r >= 0 || err_r >= 0) {
    long long left = deadline - now_ms();
    if (left <= 0 && !killed) {
      /* Too slow: killed with all it started, as the kubelet kills a probe that timed out; its output so far is kept. */
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      killed = 1;
      job->timed_out = 1;
      close_fd(&in_w);
      deadline = now_ms() + 1000; /* what it started in the background may hold the pipes: read on briefly */
      continue;
    }
    if (left <= 0) break;
    struct pollfd p[3] = { { .fd = out_r, .events = POLLIN }, { .fd = err_r, .events = POLLIN }, { .fd = in_w, .events = POLLOUT } };
    int r = poll(p, 3, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    if (in_w >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      do { n = write(in_w, job->input + in_off, job->input_len - in_off); } while (n < 0 && errno == EINTR);
      /* EPIPE: the command closed its stdin without reading it all; its exit status tells the rest. */
      if (n > 0) in_off += (size_t)n;
      if ((n < 0 && errno != EAGAIN) || in_off == job->input_len) close_fd(&in_w);
    }
    for (int i = 0; i < 2; i++) {
      int *fd = i == 0 ? &out_r : &err_r;
      if (*fd < 0 || !(p[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      do { n = read(*fd, scratch, sizeof scratch); } while (n < 0 && errno == EINTR);
      if (n <= 0) close_fd(fd);
      else keep(i == 0 ? &job->out : &job->err_out, job->max_output, scratch, (size_t)n);
    }
  }
  close_fd(&in_w);
  close_fd(&out_r);
  close_fd(&err_r);
  int status = 0;
  /* Output closed; the command may still run (it closed its stdout): wait out the deadline. */
  if (!reap_by(pid, &status, deadline)) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    job->timed_out = 1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  }
  if (WIFEXITED(status)) job->exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) {
    job->term_signal = WTERMSIG(status);
    job->exit_code = 128 + WTERMSIG(status);
  }
}

/* On the event loop: settle the promise with what the thread found. */
static void complete(napi_env env, napi_value js_callback, void *context, void *data) {
  job_t *job = data;
  if (env == NULL) {
    /* The environment is going away: nobody waits for the answer any more. */
  } else if (job->err != 0) {
    napi_value e = errno_error(env, job->err, job->call ? job->call : "spawn", job->argv[0]);
    /* Which step failed, as the shell exit codes say it: 125 the cgroup join, 127 the exec, 126 the rest. */
    napi_value exit_code;
    const char *call = job->call ? job->call : "";
    napi_create_int32(env, strcmp(call, "execve") == 0 ? 127 : strncmp(call, "join", 4) == 0 ? 125 : 126, &exit_code);
    napi_set_named_property(env, e, "exitCode", exit_code);
    napi_reject_deferred(env, job->deferred, e);
  } else {
    napi_value result, v;
    napi_create_object(env, &result);
    napi_create_int32(env, job->exit_code, &v);
    napi_set_named_property(env, result, "exitCode", v);
    napi_create_int32(env, job->term_signal, &v);
    napi_set_named_property(env, result, "signal", v);
    napi_get_boolean(env, job->timed_out != 0, &v);
    napi_set_named_property(env, result, "timedOut", v);
    napi_create_buffer_copy(env, job->out.len, job->out.len ? job->out.data : "", NULL, &v);
    napi_set_named_property(env, result, job->split_stderr ? "stdout" : "output", v);
    if (job->split_stderr) {
      napi_create_buffer_copy(env, job->err_out.len, job->err_out.len ? job->err_out.data : "", NULL, &v);
      napi_set_named_property(env, result, "stderr", v);
    }
    napi_resolve_deferred(env, job->deferred, result);
  }
  free_job(job);
}

static void *run_thread(void *data) {
  job_t *job = data;
  /* This thread takes no signals: they are the event loop's to handle. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  execute(job);
  napi_threadsafe_function done = job->done;
  napi_call_threadsafe_function(done, job, napi_tsfn_blocking);
  napi_release_threadsafe_function(done, napi_tsfn_release);
  return NULL;
}

/* A JavaScript array of strings as a NULL-terminated C array (NULL, with a TypeError thrown, if it is not one). */
static char **read_strings(napi_env env, napi_value array, int min) {
  uint32_t count = 0;
  bool is_array = false;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, &count) != napi_ok || count < (uint32_t)min) return NULL;
  char **list = calloc(count + 1, sizeof *list);
  if (list == NULL) return NULL;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    size_t len = 0;
    if (napi_get_element(env, array, i, &el) != napi_ok || napi_get_value_string_utf8(env, el, NULL, 0, &len) != napi_ok ||
        (list[i] = malloc(len + 1)) == NULL || napi_get_value_string_utf8(env, el, list[i], len + 1, &len) != napi_ok || strlen(list[i]) != len) {
      free_strings(list);
      return NULL;
    }
  }
  return list;
}

/* Start the job's thread; the promise settles on the event loop when the command has ended (or could not start). */
static napi_value start_job(napi_env env, job_t *job, const char *what) {
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, complete, &job->done) != napi_ok) {
    free_job(job);
    napi_throw_error(env, NULL, "spawn: cannot create the completion of a command");
    return NULL;
  }
  pthread_t thread;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int rc = pthread_create(&thread, &attr, run_thread, job);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    job->err = rc;
    job->call = "pthread_create";
    napi_call_threadsafe_function(job->done, job, napi_tsfn_blocking);
    napi_release_threadsafe_function(job->done, napi_tsfn_release);
  }
  return promise;
}

/* runCaptured(argv, cgroupProcsFiles, timeoutMs, maxOutputBytes) -> Promise<{ exitCode, signal, timedOut, output: Buffer }> */
static napi_value RunCaptured(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t timeout_ms, max_output;
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "runCaptured: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      (job->argv = read_strings(env, argv[0], 1)) == NULL || job->argv[0][0] != '/' ||
      (job->procs = read_strings(env, argv[1], 0)) == NULL ||
      napi_get_value_int32(env, argv[2], &timeout_ms) != napi_ok || timeout_ms < 1 ||
      napi_get_value_int32(env, argv[3], &max_output) != napi_ok || max_output < 0) {
    free_job(job);
    napi_throw_type_error(env, NULL, "runCaptured(argv with an absolute path first, cgroupProcsFiles, timeoutMs > 0, maxOutputBytes >= 0): bad arguments");
    return NULL;
  }
  job->timeout_ms = timeout_ms;
  job->max_output = (size_t)max_output;
  return start_job(env, job, "runCaptured");
}

/*
 * runPiped(argv, env: ["K=V", ...], stdin: Buffer, timeoutMs, maxOutputBytes)
 *   -> Promise<{ exitCode, signal, timedOut, stdout: Buffer, stderr: Buffer }>
 * env is the command's whole environment; each output is cut at maxOutputBytes.
 */
static napi_value RunPiped(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t timeout_ms, max_output;
  bool is_buffer = false;
  void *input = NULL;
  size_t input_len = 0;
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "runPiped: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      (job->argv = read_strings(env, argv[0], 1)) == NULL || job->argv[0][0] != '/' ||
      (job->envp = read_strings(env, argv[1], 0)) == NULL || (job->procs = calloc(1, sizeof *job->procs)) == NULL ||
      napi_is_buffer(env, argv[2], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[2], &input, &input_len) != napi_ok ||
      napi_get_value_int32(env, argv[3], &timeout_ms) != napi_ok || timeout_ms < 1 ||
      napi_get_value_int32(env, argv[4], &max_output) != napi_ok || max_output < 0 ||
      (job->input = malloc(input_len > 0 ? input_len : 1)) == NULL) {
    free_job(job);
    napi_throw_type_error(env, NULL, "runPiped(argv with an absolute path first, env strings, stdin Buffer, timeoutMs > 0, maxOutputBytes >= 0): bad arguments");
    return NULL;
  }
  if (input_len > 0) memcpy(job->input, input, input_len);
  job->input_len = input_len;
  job->split_stderr = 1;
  job->timeout_ms = timeout_ms;
  job->max_output = (size_t)max_output;
  return start_job(env, job, "runPiped");
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "runCaptured", RunCaptured);
  export_fn(env, exports, "runPiped", RunPiped);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

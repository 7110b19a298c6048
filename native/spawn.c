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
 */
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct {
  napi_threadsafe_function done;
  napi_deferred deferred;
  char **argv;        /* NULL-terminated */
  char **procs;       /* cgroup.procs files to join, NULL-terminated */
  int timeout_ms;
  size_t max_output;
  /* results */
  char *output;
  size_t output_len;
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

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the vfork child: only async-signal-safe calls, no writes to memory but this stack. */
static void child(job_t *job, int out_w, int err_w) {
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
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0) {
    report.err = errno;
    report.stage = 2;
    if (write(err_w, &report, sizeof report) < 0) { /* nothing left to tell */ }
    _exit(127);
  }
  pthread_sigmask(SIG_SETMASK, &empty, NULL);
  execve(job->argv[0], job->argv, environ);
  report.err = errno;
  report.stage = 2;
  if (write(err_w, &report, sizeof report) < 0) { /* nothing left to tell */ }
  _exit(127);
}

static void execute(job_t *job) {
  int out[2], errp[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    job->err = errno;
    job->call = "pipe";
    return;
  }
  if (pipe2(errp, O_CLOEXEC) != 0) {
    job->err = errno;
    job->call = "pipe";
    close(out[0]);
    close(out[1]);
    return;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = vfork();
  if (pid == 0) child(job, out[1], errp[1]);
  int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(out[1]);
  close(errp[1]);
  if (pid < 0) {
    job->err = fork_err;
    job->call = "vfork";
    close(out[0]);
    close(errp[0]);
    return;
  }
  /* The child exec'd (the error pipe closed on exec) or wrote why it could not. */
  struct { int err; int stage; } report;
  ssize_t n;
  do { n = read(errp[0], &report, sizeof report); } while (n < 0 && errno == EINTR);
  close(errp[0]);
  if (n == (ssize_t)sizeof report) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    close(out[0]);
    job->err = report.err;
    job->call = report.stage == 1 ? "join the container's cgroup" : "execve";
    return;
  }
  size_t cap = job->max_output;
  job->output = malloc(cap > 0 ? cap : 1);
  char scratch[16384];
  long long deadline = now_ms() + job->timeout_ms;
  int killed = 0;
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0 && !killed) {
      /* Too slow: killed with all it started, as the kubelet kills a probe that timed out; its output so far is kept. */
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      killed = 1;
      job->timed_out = 1;
      deadline = now_ms() + 1000; /* what it started in the background may hold the pipe: read on briefly */
      continue;
    }
    if (left <= 0) break;
    struct pollfd p = { .fd = out[0], .events = POLLIN };
    int r = poll(&p, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    do { n = read(out[0], scratch, sizeof scratch); } while (n < 0 && errno == EINTR);
    if (n <= 0) break;
    size_t take = (size_t)n;
    if (job->output_len + take > cap) take = cap - job->output_len;
    if (take > 0 && job->output != NULL) memcpy(job->output + job->output_len, scratch, take);
    job->output_len += take;
  }
  close(out[0]);
  int status = 0;
  if (!killed) {
    /* Output closed; the command may still run (it closed its stdout): wait out the deadline. */
    for (;;) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (w < 0 && errno != EINTR) break;
      if (now_ms() >= deadline) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        job->timed_out = 1;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        break;
      }
      struct timespec ts = { 0, 2 * 1000 * 1000 };
      nanosleep(&ts, NULL);
    }
  } else {
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
    napi_create_buffer_copy(env, job->output_len, job->output_len ? job->output : "", NULL, &v);
    napi_set_named_property(env, result, "output", v);
    napi_resolve_deferred(env, job->deferred, result);
  }
  free_strings(job->argv);
  free_strings(job->procs);
  free(job->output);
  free(job);
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

/* runCaptured(argv, cgroupProcsFiles, timeoutMs, maxOutputBytes) -> Promise<{ exitCode, signal, timedOut, output: Buffer }> */
static napi_value RunCaptured(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], promise, name;
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
    free_strings(job->argv);
    free_strings(job->procs);
    free(job);
    napi_throw_type_error(env, NULL, "runCaptured(argv with an absolute path first, cgroupProcsFiles, timeoutMs > 0, maxOutputBytes >= 0): bad arguments");
    return NULL;
  }
  job->timeout_ms = timeout_ms;
  job->max_output = (size_t)max_output;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "runCaptured", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, complete, &job->done) != napi_ok) {
    napi_throw_error(env, NULL, "runCaptured: cannot create its completion");
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

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "runCaptured", RunCaptured);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

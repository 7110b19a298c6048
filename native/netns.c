/*
 * A TCP connection made inside another network namespace (a pod's), for
 * kubectl port-forward. Node cannot enter a namespace, and a relay process
 * per connection (nsenter + a copy loop) costs a process start per
 * connection and two extra copies of every byte. A network namespace is a
 * per-thread attribute, so a pool thread can enter the pod's, connect to
 * loopback there, and come back: the socket stays in the namespace it was
 * made in, and Node reads and writes it directly. The same entry brings
 * loopback up in a namespace someone else made (a Docker infra container's).
 */
#include "addon.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

static int loopback_up(int *err);

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char path[PATH_BUF];
  /* 0: bring loopback up there, and no connection (loopbackUpInNetns). */
  int port;
  int timeout_ms;
  int fd;
  int err;
  const char *call;
} job_t;

/* A non-blocking connect to loopback of `family`, waited for up to timeout_ms; the socket, or -1 with *err set. */
static int connect_loopback(int family, int port, int timeout_ms, int *err) {
  int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) {
    *err = errno;
    return -1;
  }
  struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = { htonl(INADDR_LOOPBACK) } };
  struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
  int rc = family == AF_INET ? connect(s, (struct sockaddr *)&v4, sizeof v4) : connect(s, (struct sockaddr *)&v6, sizeof v6);
  if (rc != 0) {
    if (errno != EINPROGRESS) {
      *err = errno;
      close(s);
      return -1;
    }
    struct pollfd p = { .fd = s, .events = POLLOUT };
    int r;
    do { r = poll(&p, 1, timeout_ms); } while (r < 0 && errno == EINTR);
    int so_error = r == 0 ? ETIMEDOUT : r < 0 ? errno : 0;
    socklen_t len = sizeof so_error;
    if (r > 0 && getsockopt(s, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    if (so_error != 0) {
      *err = so_error;
      close(s);
      return -1;
    }
  }
  return s;
}

static void execute(napi_env env, void *data) {
  job_t *job = data;
  job->fd = -1;
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    job->err = errno;
    job->call = "open";
    return;
  }
  int target = open(job->path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    job->err = errno;
    job->call = "open";
    close(self);
    return;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    job->err = errno;
    job->call = "setns";
    close(target);
    close(self);
    return;
  }
  close(target);
  int err = 0, fd = -1;
  if (job->port == 0) {
    job->call = "ioctl(SIOCSIFFLAGS lo)";
    loopback_up(&err);
  } else {
    job->call = "connect";
    fd = connect_loopback(AF_INET, job->port, job->timeout_ms, &err);
    if (fd < 0 && err == ECONNREFUSED) {
      /* As the kubelet: 127.0.0.1 first, then [::1]; the IPv4 error is the one reported. */
      int err6 = 0;
      fd = connect_loopback(AF_INET6, job->port, job->timeout_ms, &err6);
    }
    if (fd >= 0) err = 0;
  }
  /* Back to the node's namespace before this pool thread runs anything else: a thread of the
   * agent left in a pod's namespace would dial, resolve and listen there. Nothing safe is left to do. */
  if (setns(self, CLONE_NEWNET) != 0) abort();
  close(self);
  job->fd = fd;
  job->err = err;
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  if (status != napi_ok || job->err) {
    int err = status != napi_ok ? ECANCELED : job->err;
    napi_reject_deferred(env, job->deferred, errno_error(env, err, job->call ? job->call : "setns", job->path));
  } else {
    napi_value value;
    if (job->port == 0) napi_get_undefined(env, &value);
    else napi_create_int32(env, job->fd, &value);
    napi_resolve_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/* connectInNetns(netnsPath, port, timeoutMs) -> Promise<fd>: a connected, non-blocking, close-on-exec TCP socket to the namespace's loopback. */
static napi_value ConnectInNetns(napi_env env, napi_callback_info info) {
  size_t argc = 3, len = 0;
  napi_value argv[3], promise, name;
  int32_t port, timeout_ms;
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "connectInNetns: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], job->path, sizeof job->path, &len) != napi_ok || len == 0 || len >= sizeof job->path - 1 ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || port < 1 || port > 65535 ||
      napi_get_value_int32(env, argv[2], &timeout_ms) != napi_ok || timeout_ms < 1) {
    free(job);
    napi_throw_type_error(env, NULL, "connectInNetns(netnsPath, port 1-65535, timeoutMs > 0): bad arguments");
    return NULL;
  }
  job->port = port;
  job->timeout_ms = timeout_ms;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "connectInNetns", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

/* loopbackUpInNetns(netnsPath) -> Promise<void>: `lo` up inside the namespace, by a pool thread that enters and leaves it. */
static napi_value LoopbackUpInNetns(napi_env env, napi_callback_info info) {
  size_t argc = 1, len = 0;
  napi_value argv[1], promise, name;
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "loopbackUpInNetns: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], job->path, sizeof job->path, &len) != napi_ok || len == 0 || len >= sizeof job->path - 1) {
    free(job);
    napi_throw_type_error(env, NULL, "loopbackUpInNetns(netnsPath): bad arguments");
    return NULL;
  }
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "loopbackUpInNetns", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

/*
 * A pod's shared namespaces, made without a process: a pool thread unshares
 * new ipc and uts (and net) namespaces for itself, bind-mounts each onto its
 * file (the mount namespace is the node's, shared by every thread), brings
 * loopback up in the new network namespace, and goes back to the node's. The
 * namespaces stage1 did this with `unshare … -- ip link set lo up`, two
 * process starts (~10 ms) on every pod start.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char dir[PATH_BUF];
  char failed_path[PATH_BUF + 16];
  int with_net;
  int err;
  const char *call;
} pod_ns_job_t;

static const struct { const char *name; int flag; } POD_NAMESPACES[] = {
  { "net", CLONE_NEWNET }, { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS },
};

static int loopback_up(int *err) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) { *err = errno; return -1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  if (rc != 0) *err = errno;
  close(s);
  return rc;
}

static void pod_ns_execute(napi_env env, void *data) {
  pod_ns_job_t *job = data;
  int first = job->with_net ? 0 : 1;
  int mine[3] = { -1, -1, -1 };
  int flags = 0;
  for (int i = first; i < 3; i++) {
    char self[64];
    snprintf(self, sizeof self, "/proc/thread-self/ns/%s", POD_NAMESPACES[i].name);
    mine[i] = open(self, O_RDONLY | O_CLOEXEC);
    if (mine[i] < 0) {
      job->err = errno;
      job->call = "open";
      snprintf(job->failed_path, sizeof job->failed_path, "%s", self);
      for (int k = first; k < i; k++) close(mine[k]);
      return;
    }
    flags |= POD_NAMESPACES[i].flag;
  }
  if (unshare(flags) != 0) {
    job->err = errno;
    job->call = "unshare";
    snprintf(job->failed_path, sizeof job->failed_path, "%s", job->dir);
  } else {
    for (int i = first; i < 3 && !job->err; i++) {
      char self[64];
      snprintf(self, sizeof self, "/proc/thread-self/ns/%s", POD_NAMESPACES[i].name);
      snprintf(job->failed_path, sizeof job->failed_path, "%s/%s", job->dir, POD_NAMESPACES[i].name);
      if (mount(self, job->failed_path, NULL, MS_BIND, NULL) != 0) {
        job->err = errno;
        job->call = "mount";
      }
    }
    if (!job->err && job->with_net && loopback_up(&job->err) != 0) {
      job->call = "ioctl(SIOCSIFFLAGS lo)";
      snprintf(job->failed_path, sizeof job->failed_path, "%s/net", job->dir);
    }
  }
  /* Back to the node's namespaces before this pool thread runs anything else: a thread of the
   * agent left in a pod's namespaces would dial, resolve and listen there. Nothing safe is left to do. */
  for (int i = first; i < 3; i++) {
    if (setns(mine[i], POD_NAMESPACES[i].flag) != 0) abort();
    close(mine[i]);
  }
}

static void pod_ns_complete(napi_env env, napi_status status, void *data) {
  pod_ns_job_t *job = data;
  if (status != napi_ok || job->err) {
    int err = status != napi_ok ? ECANCELED : job->err;
    napi_reject_deferred(env, job->deferred, errno_error(env, err, job->call ? job->call : "unshare", job->failed_path));
  } else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/* makePodNamespaces(dir, withNet) -> Promise<void>: new ipc, uts (and net, loopback up) namespaces bound onto the existing files dir/ipc, dir/uts (dir/net). */
static napi_value MakePodNamespaces(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2], promise, name;
  bool with_net = false;
  pod_ns_job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "makePodNamespaces: out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], job->dir, sizeof job->dir, &len) != napi_ok || len == 0 || len >= sizeof job->dir - 8 ||
      napi_get_value_bool(env, argv[1], &with_net) != napi_ok) {
    free(job);
    napi_throw_type_error(env, NULL, "makePodNamespaces(dir, withNet): bad arguments");
    return NULL;
  }
  job->with_net = with_net;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "makePodNamespaces", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, pod_ns_execute, pod_ns_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "connectInNetns", ConnectInNetns);
  export_fn(env, exports, "makePodNamespaces", MakePodNamespaces);
  export_fn(env, exports, "loopbackUpInNetns", LoopbackUpInNetns);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

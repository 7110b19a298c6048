/*
 * inotify(7) for readers that must know, at the instant they answer, whether
 * a folder changed since they last read it (the api-service's pod listings).
 * fs.watch delivers events on a later turn of the event loop, so a change
 * finished just before a request could still be in flight when the request
 * is answered; here the reader drains the queue itself, synchronously and
 * without blocking, before it trusts anything it cached: the kernel queues
 * an event as part of the change, so after drain() every earlier change is
 * known. N-API only.
 *
 *   open() -> fd                 (IN_NONBLOCK | IN_CLOEXEC)
 *   add(fd, dir) -> wd           watches entries created, removed, renamed,
 *                                written or re-attributed, and the folder
 *                                itself moving or going away; throws an Error
 *                                whose code is the errno name (ENOENT, ENOSPC…)
 *   remove(fd, wd)               ignores a watch the kernel already dropped
 *   drain(fd) -> number[]        wd per event; -wd when the folder moved or
 *                                went away, or the watch is gone (IN_MOVE_SELF,
 *                                IN_DELETE_SELF, IN_IGNORED); 0 when the queue
 *                                overflowed
 *   close(fd)
 */
#include "addon.h"
#include <sys/inotify.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)

static int int_arg(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static napi_value Open(napi_env env, napi_callback_info info) {
  napi_value out;
  (void)info;
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "inotify_init1", "");
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value Add(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2], out;
  int32_t fd;
  char dir[PATH_MAX];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !int_arg(env, argv[0], &fd) ||
      napi_get_value_string_utf8(env, argv[1], dir, sizeof dir, &len) != napi_ok || len >= sizeof dir - 1) {
    napi_throw_type_error(env, NULL, "add(fd: number, dir: string)");
    return NULL;
  }
  int wd = inotify_add_watch(fd, dir, WATCH_MASK);
  if (wd < 0) return throw_errno(env, errno, "inotify_add_watch", dir);
  napi_create_int32(env, wd, &out);
  return out;
}

static napi_value Remove(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, wd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !int_arg(env, argv[0], &fd) || !int_arg(env, argv[1], &wd)) {
    napi_throw_type_error(env, NULL, "remove(fd: number, wd: number)");
    return NULL;
  }
  if (inotify_rm_watch(fd, wd) != 0 && errno != EINVAL) return throw_errno(env, errno, "inotify_rm_watch", "");
  return NULL;
}

static napi_value Drain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  int32_t fd;
  char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !int_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "drain(fd: number)");
    return NULL;
  }
  napi_create_array(env, &out);
  for (;;) {
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return throw_errno(env, errno, "read", "(inotify)");
    }
    if (got == 0) break;
    for (char *p = buf; p < buf + got;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      int32_t code = (ev->mask & IN_Q_OVERFLOW) ? 0 : (ev->mask & (IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF)) ? -ev->wd : ev->wd;
      napi_create_int32(env, code, &v);
      napi_set_element(env, out, n++, v);
      p += sizeof(struct inotify_event) + ev->len;
    }
  }
  return out;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !int_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "close(fd: number)");
    return NULL;
  }
  close(fd);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "open", Open);
  export_fn(env, exports, "add", Add);
  export_fn(env, exports, "remove", Remove);
  export_fn(env, exports, "drain", Drain);
  export_fn(env, exports, "close", Close);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

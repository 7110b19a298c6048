/*
 * Filesystem calls Node lacks, for the image extractor: mknod(2) (overlayfs
 * whiteouts are 0/0 character devices; privileged images may carry device
 * nodes) and l{set,get}xattr(2) (overlayfs opaque directories are marked with
 * trusted.overlay.opaque=y), and syncfs(2). The l* variants never follow a symlink at the
 * final component, which is what an extractor confined to a tree needs.
 * Errors are thrown as JS Errors with `code` set to the errno name
 * (e.g. "EEXIST"), like Node's own fs errors. N-API only.
 */
#include "addon.h"
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#define XATTR_BUF 65536

static int get_string(napi_env env, napi_value v, char *buf, size_t len, size_t *out_len) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok) return 0;
  if (n >= len - 1) return 0; /* too long (possibly truncated): refuse rather than act on a prefix */
  if (out_len) *out_len = n;
  return 1;
}

/* mknod(path, mode, dev): mode includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO). */
static napi_value Mknod(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[PATH_BUF];
  uint32_t mode;
  int64_t dev;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      !get_string(env, argv[0], path, sizeof path, NULL) ||
      napi_get_value_uint32(env, argv[1], &mode) != napi_ok ||
      napi_get_value_int64(env, argv[2], &dev) != napi_ok) {
    napi_throw_type_error(env, NULL, "mknod(path: string, mode: number, dev: number)");
    return NULL;
  }
  if (mknod(path, (mode_t)mode, (dev_t)dev) != 0) return throw_errno(env, errno, "mknod", path);
  return NULL;
}

/* makedev(major, minor) -> dev number for mknod (glibc's encoding, not major<<8|minor). */
static napi_value Makedev(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  uint32_t major_, minor_;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_uint32(env, argv[0], &major_) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &minor_) != napi_ok) {
    napi_throw_type_error(env, NULL, "makedev(major: number, minor: number)");
    return NULL;
  }
  napi_create_int64(env, (int64_t)makedev(major_, minor_), &result);
  return result;
}

/* lsetxattr(path, name, value: string | Buffer) */
static napi_value Lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[PATH_BUF], name[256];
  static char value[XATTR_BUF];
  const void *data = value;
  size_t vlen = 0;
  bool is_buffer = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      !get_string(env, argv[0], path, sizeof path, NULL) ||
      !get_string(env, argv[1], name, sizeof name, NULL)) {
    napi_throw_type_error(env, NULL, "lsetxattr(path: string, name: string, value: string | Buffer)");
    return NULL;
  }
  napi_is_buffer(env, argv[2], &is_buffer);
  if (is_buffer) {
    void *buf;
    if (napi_get_buffer_info(env, argv[2], &buf, &vlen) != napi_ok) {
      napi_throw_type_error(env, NULL, "lsetxattr: bad Buffer value");
      return NULL;
    }
    data = buf;
  } else if (!get_string(env, argv[2], value, sizeof value, &vlen)) {
    napi_throw_type_error(env, NULL, "lsetxattr(path: string, name: string, value: string | Buffer)");
    return NULL;
  }
  if (lsetxattr(path, name, data, vlen, 0) != 0) return throw_errno(env, errno, "lsetxattr", path);
  return NULL;
}

/* lgetxattr(path, name) -> Buffer, or undefined when the attribute is absent. */
static napi_value Lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  char path[PATH_BUF], name[256];
  static char value[XATTR_BUF];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      !get_string(env, argv[0], path, sizeof path, NULL) ||
      !get_string(env, argv[1], name, sizeof name, NULL)) {
    napi_throw_type_error(env, NULL, "lgetxattr(path: string, name: string)");
    return NULL;
  }
  ssize_t n = lgetxattr(path, name, value, sizeof value);
  if (n < 0) {
    if (errno == ENODATA) { napi_get_undefined(env, &result); return result; }
    return throw_errno(env, errno, "lgetxattr", path);
  }
  napi_create_buffer_copy(env, (size_t)n, value, NULL, &result);
  return result;
}

/* syncfs(fd) -> Promise<void>: flush the whole filesystem holding fd, once
 * per pull instead of an fsync per file, before unpacked layers are marked
 * complete. It runs on the thread pool: flushing a few hundred MiB takes
 * ~100+ ms of waiting on the disk, which must not stall the agent's loop. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} syncfs_job_t;

static void syncfs_execute(napi_env env, void *data) {
  syncfs_job_t *job = data;
  (void)env;
  job->err = syncfs(job->fd) == 0 ? 0 : errno;
}

static void syncfs_complete(napi_env env, napi_status status, void *data) {
  syncfs_job_t *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    int err = job->err ? job->err : EIO;
    const char *name = strerrorname_np(err);
    char msg[256];
    napi_value code, text, error;
    snprintf(msg, sizeof msg, "%s: %s, syncfs", name ? name : "EUNKNOWN", strerror(err));
    napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
    napi_create_error(env, code, text, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value Syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], promise, name;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "syncfs(fd: number)");
    return NULL;
  }
  syncfs_job_t *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "syncfs", "(fd)");
  job->fd = fd;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "syncfs", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, syncfs_execute, syncfs_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

/*
 * mount(source, target, fstype, data[, flags]) (flags: MS_NOSUID, MS_NODEV,
 * MS_NOEXEC, MS_BIND, or none), and umount(target) with MNT_DETACH = false:
 * the pod start path mounts an overlay per app, a tmpfs per secret volume and
 * a bind per subPath, and a mount(8) process costs more than the mount itself.
 */
static napi_value Mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  static char source[PATH_BUF], target[PATH_BUF], fstype[64];
  uint32_t flags = 0;
  char *data = malloc(65536);
  if (!data) return throw_errno(env, ENOMEM, "mount", "");
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      !get_string(env, argv[0], source, sizeof source, NULL) || !get_string(env, argv[1], target, sizeof target, NULL) ||
      !get_string(env, argv[2], fstype, sizeof fstype, NULL) || !get_string(env, argv[3], data, 65536, NULL) ||
      (argc >= 5 && (napi_get_value_uint32(env, argv[4], &flags) != napi_ok || (flags & ~(uint32_t)(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_BIND)) != 0))) {
    free(data);
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, data: string, flags?: MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_BIND)");
    return NULL;
  }
  int rc = mount(source, target, fstype, flags, data);
  int err = errno;
  free(data);
  if (rc != 0) return throw_errno(env, err, "mount", target);
  return NULL;
}

static napi_value Umount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  static char target[PATH_BUF];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !get_string(env, argv[0], target, sizeof target, NULL)) {
    napi_throw_type_error(env, NULL, "umount(target: string)");
    return NULL;
  }
  if (umount2(target, UMOUNT_NOFOLLOW) != 0) return throw_errno(env, errno, "umount", target);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value v;
  export_fn(env, exports, "mknod", Mknod);
  export_fn(env, exports, "makedev", Makedev);
  export_fn(env, exports, "lsetxattr", Lsetxattr);
  export_fn(env, exports, "lgetxattr", Lgetxattr);
  export_fn(env, exports, "syncfs", Syncfs);
  export_fn(env, exports, "mount", Mount);
  export_fn(env, exports, "umount", Umount);
  napi_create_uint32(env, S_IFCHR, &v); napi_set_named_property(env, exports, "S_IFCHR", v);
  napi_create_uint32(env, S_IFBLK, &v); napi_set_named_property(env, exports, "S_IFBLK", v);
  napi_create_uint32(env, S_IFIFO, &v); napi_set_named_property(env, exports, "S_IFIFO", v);
  napi_create_uint32(env, MS_NOSUID, &v); napi_set_named_property(env, exports, "MS_NOSUID", v);
  napi_create_uint32(env, MS_NODEV, &v); napi_set_named_property(env, exports, "MS_NODEV", v);
  napi_create_uint32(env, MS_NOEXEC, &v); napi_set_named_property(env, exports, "MS_NOEXEC", v);
  napi_create_uint32(env, MS_BIND, &v); napi_set_named_property(env, exports, "MS_BIND", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

/*
 * flock(2) for Node through N-API. Node has no file locks of its own, and the
 * pod lifecycle on disk relies on locks that the kernel drops when a process
 * dies (a killed `pod run` must never leave a lock behind). N-API keeps the
 * addon binary-compatible across Node 20 and 24.
 */
#include <node_api.h>
#include <sys/file.h>
#include <errno.h>
#include <string.h>

/* flock(fd, op) -> 0 on success, or the errno value (EWOULDBLOCK when held). */
static napi_value Flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, op;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "flock(fd, op) takes two numbers");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &op) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd, op) takes two numbers");
    return NULL;
  }
  int rc;
  do { rc = flock(fd, op); } while (rc != 0 && errno == EINTR);
  napi_create_int32(env, rc == 0 ? 0 : errno, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn, v;
  napi_create_function(env, "flock", NAPI_AUTO_LENGTH, Flock, NULL, &fn);
  napi_set_named_property(env, exports, "flock", fn);
  napi_create_int32(env, LOCK_SH, &v); napi_set_named_property(env, exports, "LOCK_SH", v);
  napi_create_int32(env, LOCK_EX, &v); napi_set_named_property(env, exports, "LOCK_EX", v);
  napi_create_int32(env, LOCK_NB, &v); napi_set_named_property(env, exports, "LOCK_NB", v);
  napi_create_int32(env, LOCK_UN, &v); napi_set_named_property(env, exports, "LOCK_UN", v);
  napi_create_int32(env, EWOULDBLOCK, &v); napi_set_named_property(env, exports, "EWOULDBLOCK", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

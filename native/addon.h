/*
 * What every addon here needs from N-API: errors shaped like node:fs's (the
 * errno name as `code`, "ENOENT: No such file or directory, call 'path'" as
 * the message), and exporting functions by name. Header-only: each addon is
 * its own shared object.
 */
#ifndef STEVEDORE_ADDON_H
#define STEVEDORE_ADDON_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stdio.h>
#include <string.h>

#define PATH_BUF 4096

static inline napi_value throw_errno(napi_env env, int err, const char *call, const char *path) {
  char msg[PATH_BUF + 128];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", name ? name : "EUNKNOWN", strerror(err), call, path);
  napi_throw_error(env, name ? name : "EUNKNOWN", msg);
  return NULL;
}

static inline void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

#endif

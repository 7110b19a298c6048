/*
 * What every addon here needs from N-API: errors shaped like node:fs's (the
 * errno name as `code`, "ENOENT: No such file or directory, call 'path'" as
 * the message), exporting functions by name, and reading an array of Buffers
 * for work on another thread. Header-only: each addon is its own shared
 * object.
 */
#ifndef STEVEDORE_ADDON_H
#define STEVEDORE_ADDON_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_BUF 4096

/* The Error for errno `err` in `call` on `path`, to reject a promise with (throw_errno throws the same). */
static inline napi_value errno_error(napi_env env, int err, const char *call, const char *path) {
  char msg[PATH_BUF + 128];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", name ? name : "EUNKNOWN", strerror(err), call, path);
  napi_value code, text, error;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  return error;
}

static inline napi_value throw_errno(napi_env env, int err, const char *call, const char *path) {
  napi_throw(env, errno_error(env, err, call, path));
  return NULL;
}

static inline void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

/* A JavaScript array of Buffers as pointers and lengths; the caller keeps the array referenced while another thread reads them. */
typedef struct {
  uint32_t count;
  const uint8_t **data;
  size_t *length;
  uint64_t bytes;           /* all lengths added up */
} buffer_list_t;

static inline void free_buffer_list(buffer_list_t *list) {
  free(list->data);
  free(list->length);
  list->data = NULL;
  list->length = NULL;
}

/* Read `array` into `list`; on failure, throw (a TypeError saying `what`, or out of memory) and return 0. */
static inline int read_buffer_list(napi_env env, napi_value array, const char *what, buffer_list_t *list) {
  bool is_array = false;
  *list = (buffer_list_t){ 0 };
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, &list->count) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  if (list->count > 0 && ((list->data = calloc(list->count, sizeof *list->data)) == NULL ||
                          (list->length = calloc(list->count, sizeof *list->length)) == NULL)) {
    free_buffer_list(list);
    napi_throw_error(env, NULL, "out of memory");
    return 0;
  }
  for (uint32_t i = 0; i < list->count; i++) {
    napi_value el;
    bool is_buffer = false;
    void *p = NULL;
    size_t len = 0;
    if (napi_get_element(env, array, i, &el) != napi_ok || napi_is_buffer(env, el, &is_buffer) != napi_ok || !is_buffer ||
        napi_get_buffer_info(env, el, &p, &len) != napi_ok) {
      free_buffer_list(list);
      napi_throw_type_error(env, NULL, what);
      return 0;
    }
    list->data[i] = p;
    list->length[i] = len;
    list->bytes += len;
  }
  return 1;
}

#endif

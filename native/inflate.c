/*
 * gzip decompression for image layers, on libuv's thread pool.
 *
 * node:zlib's Gunzip computes the CRC-32 of everything it inflates and takes
 * one buffer per call. For a layer, both are waste: the layer's blob digest
 * and its diff_id (two SHA-256s) already prove every byte, the CRC was ~4 %
 * of a pull's CPU, and the download arrives in 64 KiB socket reads that had to
 * be copied into larger buffers to keep the per-call cost down. Here one call
 * inflates a whole list of input buffers with zlib's check-value computation
 * off (inflateValidate), into the caller's output buffer.
 *
 * Multi-member files (pigz --independent, eStargz) continue into the next
 * member; any bytes after a member must start another (as node's Gunzip and
 * Go's gzip reader, which Docker and containerd use, have it).
 *
 * create() -> inflater; inflate(inflater, inputs, input, offset, out, outOffset)
 * -> Promise<{ input, offset, produced, complete }>: inflates
 * inputs[input] from offset onwards (then the following buffers) into out
 * from outOffset, until out is full or the inputs are used up; returns where
 * it stopped, how many bytes it wrote and `complete` (a member has ended and
 * no other has begun: the data may end here). The caller keeps one call in flight per inflater and leaves the
 * buffers alone until it settles. Rejects with a message naming what is wrong
 * with the data. N-API only.
 */
#include "addon.h"
#include <stdlib.h>
#include <zlib.h>

typedef struct {
  z_stream z;
  int busy;
  int in_member;            /* inside a member (its header read or being read) */
  int members;              /* members completed */
} inflater_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref inflater_ref, inputs_ref, out_ref;
  inflater_t *inf;
  size_t count, input, offset;
  const uint8_t **data;
  size_t *length;
  uint8_t *out;
  size_t out_len, produced;
  const char *error;
} job_t;

static void free_inflater(napi_env env, void *data, void *hint) {
  inflater_t *inf = data;
  (void)env; (void)hint;
  inflateEnd(&inf->z);
  free(inf);
}

static napi_value Create(napi_env env, napi_callback_info info) {
  napi_value out;
  inflater_t *inf = calloc(1, sizeof *inf);
  (void)info;
  /* 16 + 15: a gzip wrapper, the largest window. */
  if (inf == NULL || inflateInit2(&inf->z, 16 + MAX_WBITS) != Z_OK) {
    free(inf);
    napi_throw_error(env, NULL, "inflate: cannot set up zlib");
    return NULL;
  }
  inflateValidate(&inf->z, 0);
  if (napi_create_external(env, inf, free_inflater, NULL, &out) != napi_ok) {
    free_inflater(env, inf, NULL);
    return NULL;
  }
  return out;
}

static void execute(napi_env env, void *data) {
  job_t *job = data;
  inflater_t *inf = job->inf;
  z_stream *z = &inf->z;
  (void)env;
  z->next_out = job->out;
  z->avail_out = (uInt)job->out_len;
  while (job->input < job->count && z->avail_out > 0) {
    size_t left = job->length[job->input] - job->offset;
    if (left == 0) {
      job->input++;
      job->offset = 0;
      continue;
    }
    const uint8_t *in = job->data[job->input] + job->offset;
    inf->in_member = 1;
    uInt chunk = left > (1u << 30) ? 1u << 30 : (uInt)left;
    z->next_in = (Bytef *)in;
    z->avail_in = chunk;
    int rc = inflate(z, Z_NO_FLUSH);
    job->offset += chunk - z->avail_in;
    if (rc == Z_STREAM_END) {
      inf->in_member = 0;
      inf->members++;
      inflateReset(z);
      inflateValidate(z, 0);
    } else if (rc == Z_BUF_ERROR) {
      /* No progress possible: the input is used up (or out is full); the loop moves on. */
      if (z->avail_in == 0) continue;
      if (z->avail_out == 0) break;
      job->error = "incorrect data: zlib made no progress";
      break;
    } else if (rc != Z_OK) {
      job->error = z->msg != NULL ? z->msg : "incorrect data";
      break;
    }
  }
  job->produced = job->out_len - z->avail_out;
  z->next_in = NULL;
  z->avail_in = 0;
  z->next_out = NULL;
  z->avail_out = 0;
}

static void set_number(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  job->inf->busy = 0;
  if (status != napi_ok || job->error != NULL) {
    napi_value msg, err;
    char text[256];
    snprintf(text, sizeof text, "gzip data is corrupt: %s", job->error != NULL ? job->error : "the inflate job failed");
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, job->deferred, err);
  } else {
    napi_value result, flag;
    napi_create_object(env, &result);
    set_number(env, result, "input", (double)job->input);
    set_number(env, result, "offset", (double)job->offset);
    set_number(env, result, "produced", (double)job->produced);
    napi_get_boolean(env, job->inf->members > 0 && !job->inf->in_member, &flag);
    napi_set_named_property(env, result, "complete", flag);
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->inflater_ref);
  napi_delete_reference(env, job->inputs_ref);
  napi_delete_reference(env, job->out_ref);
  napi_delete_async_work(env, job->work);
  free(job->data);
  free(job->length);
  free(job);
}

static int index_arg(napi_env env, napi_value v, size_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d != (double)(size_t)d) return 0;
  *out = (size_t)d;
  return 1;
}

static napi_value Inflate(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], promise, name;
  inflater_t *inf = NULL;
  uint32_t count = 0;
  bool is_array = false, is_buffer = false;
  void *out = NULL;
  size_t out_len = 0, input = 0, offset = 0, out_offset = 0;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], (void **)&inf) != napi_ok ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &count) != napi_ok ||
      !index_arg(env, argv[2], &input) || !index_arg(env, argv[3], &offset) ||
      napi_is_buffer(env, argv[4], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[4], &out, &out_len) != napi_ok ||
      !index_arg(env, argv[5], &out_offset) || out_offset >= out_len) {
    napi_throw_type_error(env, NULL, "inflate(inflater, inputs, input, offset, out, outOffset): bad arguments");
    return NULL;
  }
  if (inf->busy) {
    napi_throw_error(env, NULL, "inflate: a call is already in flight");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL || (count > 0 && ((job->data = calloc(count, sizeof *job->data)) == NULL || (job->length = calloc(count, sizeof *job->length)) == NULL))) {
    if (job) { free(job->data); free(job); }
    napi_throw_error(env, NULL, "inflate: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    void *p = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok || napi_is_buffer(env, el, &is_buffer) != napi_ok || !is_buffer ||
        napi_get_buffer_info(env, el, &p, &len) != napi_ok || (i == input && offset > len)) {
      free(job->data); free(job->length); free(job);
      napi_throw_type_error(env, NULL, "inflate: inputs must be Buffers and offset within the first");
      return NULL;
    }
    job->data[i] = p;
    job->length[i] = len;
  }
  job->inf = inf;
  job->count = count;
  job->input = input;
  job->offset = input < count ? offset : 0;
  job->out = (uint8_t *)out + out_offset;
  job->out_len = out_len - out_offset;
  /* The references keep the inflater and the buffers alive while a pool thread uses them. */
  napi_create_reference(env, argv[0], 1, &job->inflater_ref);
  napi_create_reference(env, argv[1], 1, &job->inputs_ref);
  napi_create_reference(env, argv[4], 1, &job->out_ref);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "inflate", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  inf->busy = 1;
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "create", Create);
  export_fn(env, exports, "inflate", Inflate);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

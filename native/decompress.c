/*
 * Layer decompression, gzip and zstd, on libuv's thread pool.
 *
 * node:zlib's Gunzip computes the CRC-32 of everything it inflates and takes
 * one buffer per call. For a layer, both are waste: the layer's blob digest
 * and its diff_id (two SHA-256s) already prove every byte, the CRC was ~4 %
 * of a pull's CPU, and the download arrives in 64 KiB socket reads that had to
 * be copied into larger buffers to keep the per-call cost down. Here one call
 * decompresses a whole list of input buffers into the caller's output buffer,
 * gzip with zlib's check-value computation off (inflateValidate), zstd with
 * libzstd's streaming decoder (node 20 has no zstd).
 *
 * Multi-member gzip (pigz --independent, eStargz) and multi-frame zstd
 * (zstd:chunked, skippable frames) continue into the next member or frame;
 * any bytes after one must start another, as node's Gunzip and Go's readers
 * (Docker, containerd) have it.
 *
 * create(codec) -> decoder ("gzip" or "zstd"); decompress(decoder, inputs,
 * input, offset, out, outOffset) -> Promise<{ input, offset, produced,
 * complete }>: decodes inputs[input] from offset onwards (then the following
 * buffers) into out from outOffset, until out is full or the inputs are used
 * up, then lets the decoder flush what it held back for want of space (with no
 * inputs, that alone: the caller's last call); returns where it stopped, how
 * many bytes it wrote and `complete` (a member or frame has ended and no other
 * has begun: the data may end here). The caller keeps one call in flight per
 * decoder and leaves the buffers alone until it settles. Rejects with a
 * message naming what is wrong with the data. N-API only.
 */
#include "addon.h"
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

enum codec { GZIP, ZSTD };

typedef struct {
  enum codec codec;
  z_stream z;
  ZSTD_DStream *zs;
  int busy;
  int in_frame;             /* inside a gzip member or zstd frame */
  int frames;               /* members or frames completed */
} decoder_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref decoder_ref, inputs_ref, out_ref;
  decoder_t *dec;
  buffer_list_t in;
  size_t input, offset;     /* the next buffer to read, and how far into it */
  uint8_t *out;
  size_t out_len, produced;
  const char *error;
} job_t;

static void free_decoder(napi_env env, void *data, void *hint) {
  decoder_t *d = data;
  (void)env; (void)hint;
  if (d->codec == GZIP) inflateEnd(&d->z);
  else ZSTD_freeDStream(d->zs);
  free(d);
}

static napi_value Create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  char name[8] = "";
  size_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n) != napi_ok ||
      (strcmp(name, "gzip") != 0 && strcmp(name, "zstd") != 0)) {
    napi_throw_type_error(env, NULL, "create(codec): codec must be \"gzip\" or \"zstd\"");
    return NULL;
  }
  decoder_t *d = calloc(1, sizeof *d);
  if (d == NULL) {
    napi_throw_error(env, NULL, "decompress: out of memory");
    return NULL;
  }
  d->codec = strcmp(name, "gzip") == 0 ? GZIP : ZSTD;
  /* 16 + 15: a gzip wrapper, the largest window. */
  int ok = d->codec == GZIP ? inflateInit2(&d->z, 16 + MAX_WBITS) == Z_OK : (d->zs = ZSTD_createDStream()) != NULL;
  if (!ok) {
    free(d);
    napi_throw_error(env, NULL, "decompress: cannot set up the decoder");
    return NULL;
  }
  if (d->codec == GZIP) inflateValidate(&d->z, 0);
  if (napi_create_external(env, d, free_decoder, NULL, &out) != napi_ok) {
    free_decoder(env, d, NULL);
    return NULL;
  }
  return out;
}

/* The next unread input bytes of the job, skipping empty buffers; 0 when there are none. */
static int next_input(job_t *job, const uint8_t **in, size_t *left) {
  while (job->input < job->in.count) {
    *left = job->in.length[job->input] - job->offset;
    if (*left > 0) {
      *in = job->in.data[job->input] + job->offset;
      return 1;
    }
    job->input++;
    job->offset = 0;
  }
  return 0;
}

static void run_gzip(job_t *job) {
  decoder_t *d = job->dec;
  z_stream *z = &d->z;
  z->next_out = job->out;
  z->avail_out = (uInt)job->out_len;
  while (z->avail_out > 0) {
    const uint8_t *in = NULL;
    size_t left = 0;
    int have = next_input(job, &in, &left);
    if (!have && !d->in_frame) break;
    uInt chunk = left > (1u << 30) ? 1u << 30 : (uInt)left;
    z->next_in = (Bytef *)in;
    z->avail_in = chunk;
    if (have) d->in_frame = 1;
    int rc = inflate(z, Z_NO_FLUSH);
    job->offset += chunk - z->avail_in;
    if (rc == Z_STREAM_END) {
      d->in_frame = 0;
      d->frames++;
      inflateReset(z);
      inflateValidate(z, 0);
    } else if (rc == Z_BUF_ERROR && (!have || z->avail_out == 0)) {
      break; /* nothing held back, or no room: nothing more to do now */
    } else if (rc != Z_OK) {
      job->error = z->msg != NULL ? z->msg : "incorrect data";
      break;
    }
    if (!have) break; /* one flush of what was held back */
  }
  job->produced = job->out_len - z->avail_out;
  z->next_in = NULL;
  z->avail_in = 0;
  z->next_out = NULL;
  z->avail_out = 0;
}

static void run_zstd(job_t *job) {
  decoder_t *d = job->dec;
  ZSTD_outBuffer out = { job->out, job->out_len, 0 };
  while (out.pos < out.size) {
    const uint8_t *in = NULL;
    size_t left = 0;
    int have = next_input(job, &in, &left);
    if (!have && !d->in_frame) break;
    ZSTD_inBuffer ib = { in, left, 0 };
    size_t rc = ZSTD_decompressStream(d->zs, &out, &ib);
    if (ZSTD_isError(rc)) {
      job->error = ZSTD_getErrorName(rc);
      break;
    }
    job->offset += ib.pos;
    /* 0: a frame is decoded and flushed (one call can read a small frame whole); else more input or room is needed. */
    if (rc == 0 && (d->in_frame || ib.pos > 0)) d->frames++;
    d->in_frame = rc != 0;
    if (!have) break; /* one flush of what was held back */
  }
  job->produced = out.pos;
}

static void execute(napi_env env, void *data) {
  job_t *job = data;
  (void)env;
  if (job->dec->codec == GZIP) run_gzip(job);
  else run_zstd(job);
}

static void set_number(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  job->dec->busy = 0;
  if (status != napi_ok || job->error != NULL) {
    napi_value msg, err;
    char text[256];
    snprintf(text, sizeof text, "%s data is corrupt: %s", job->dec->codec == GZIP ? "gzip" : "zstd", job->error != NULL ? job->error : "the decompression job failed");
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, job->deferred, err);
  } else {
    napi_value result, flag;
    napi_create_object(env, &result);
    set_number(env, result, "input", (double)job->input);
    set_number(env, result, "offset", (double)job->offset);
    set_number(env, result, "produced", (double)job->produced);
    napi_get_boolean(env, job->dec->frames > 0 && !job->dec->in_frame, &flag);
    napi_set_named_property(env, result, "complete", flag);
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->decoder_ref);
  napi_delete_reference(env, job->inputs_ref);
  napi_delete_reference(env, job->out_ref);
  napi_delete_async_work(env, job->work);
  free_buffer_list(&job->in);
  free(job);
}

static int index_arg(napi_env env, napi_value v, size_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d != (double)(size_t)d) return 0;
  *out = (size_t)d;
  return 1;
}

static napi_value Decompress(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], promise, name;
  decoder_t *dec = NULL;
  bool is_buffer = false;
  void *out = NULL;
  size_t out_len = 0, input = 0, offset = 0, out_offset = 0;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 ||
      napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], (void **)&dec) != napi_ok ||
      !index_arg(env, argv[2], &input) || !index_arg(env, argv[3], &offset) ||
      napi_is_buffer(env, argv[4], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[4], &out, &out_len) != napi_ok ||
      !index_arg(env, argv[5], &out_offset) || out_offset >= out_len) {
    napi_throw_type_error(env, NULL, "decompress(decoder, inputs, input, offset, out, outOffset): bad arguments");
    return NULL;
  }
  if (dec->busy) {
    napi_throw_error(env, NULL, "decompress: a call is already in flight");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "decompress: out of memory");
    return NULL;
  }
  if (!read_buffer_list(env, argv[1], "decompress: inputs must be an array of Buffers", &job->in)) {
    free(job);
    return NULL;
  }
  if (input < job->in.count && offset > job->in.length[input]) {
    free_buffer_list(&job->in);
    free(job);
    napi_throw_range_error(env, NULL, "decompress: offset is past the end of its input");
    return NULL;
  }
  job->dec = dec;
  job->input = input;
  job->offset = input < job->in.count ? offset : 0;
  job->out = (uint8_t *)out + out_offset;
  job->out_len = out_len - out_offset;
  /* The references keep the decoder and the buffers alive while a pool thread uses them. */
  napi_create_reference(env, argv[0], 1, &job->decoder_ref);
  napi_create_reference(env, argv[1], 1, &job->inputs_ref);
  napi_create_reference(env, argv[4], 1, &job->out_ref);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "decompress", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  dec->busy = 1;
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "create", Create);
  export_fn(env, exports, "decompress", Decompress);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

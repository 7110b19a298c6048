/*
 * SHA-256 whose updates run on libuv's thread pool, for image pulls.
 *
 * A pull hashes every byte twice (the compressed blob against the manifest,
 * the uncompressed tar against the config's diff_id); node:crypto's Hash runs
 * on the JavaScript thread, so both hashes and everything else a pull does
 * share one core. Here each update is queued as async work: hashing overlaps
 * the download, the unpacker and the other hash, on as many cores as there
 * are. OpenSSL's EVP SHA-256 is the one node:crypto uses (node exports its
 * OpenSSL symbols to addons), so the speed per byte is the same.
 *
 * create() -> hasher; update(hasher, buffers) -> Promise<void> (the caller
 * keeps one update in flight per hasher and must not change the buffers until
 * it settles); digest(hasher) -> "sha256:<hex>". N-API only.
 */
#include "addon.h"
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  EVP_MD_CTX *md;
  int busy;
  int finished;
} hasher_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  hasher_t *hasher;
  napi_ref hasher_ref;
  napi_ref buffers_ref;
  size_t count;
  const void **data;
  size_t *length;
  int ok;
} job_t;

static void free_hasher(napi_env env, void *data, void *hint) {
  hasher_t *h = data;
  (void)env; (void)hint;
  EVP_MD_CTX_free(h->md);
  free(h);
}

static napi_value Create(napi_env env, napi_callback_info info) {
  napi_value out;
  hasher_t *h = calloc(1, sizeof *h);
  (void)info;
  if (h == NULL || (h->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
    if (h) { EVP_MD_CTX_free(h->md); free(h); }
    napi_throw_error(env, NULL, "sha256: cannot create an OpenSSL digest context");
    return NULL;
  }
  if (napi_create_external(env, h, free_hasher, NULL, &out) != napi_ok) {
    free_hasher(env, h, NULL);
    return NULL;
  }
  return out;
}

static hasher_t *hasher_arg(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "sha256: not a hasher");
    return NULL;
  }
  return data;
}

static void execute(napi_env env, void *data) {
  job_t *job = data;
  (void)env;
  job->ok = 1;
  for (size_t i = 0; i < job->count && job->ok; i++) {
    if (EVP_DigestUpdate(job->hasher->md, job->data[i], job->length[i]) != 1) job->ok = 0;
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  napi_value err, msg;
  job->hasher->busy = 0;
  if (status == napi_ok && job->ok) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    napi_create_string_utf8(env, "sha256: update failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, job->deferred, err);
  }
  napi_delete_reference(env, job->buffers_ref);
  napi_delete_reference(env, job->hasher_ref);
  napi_delete_async_work(env, job->work);
  free(job->data);
  free(job->length);
  free(job);
}

static napi_value Update(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  uint32_t count = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "update(hasher, buffers) takes two arguments");
    return NULL;
  }
  hasher_t *h = hasher_arg(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->busy || h->finished) {
    napi_throw_error(env, NULL, h->busy ? "sha256: an update is already in flight" : "sha256: the digest was already taken");
    return NULL;
  }
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "update(hasher, buffers): buffers must be an array of Buffers");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL || (count > 0 && ((job->data = calloc(count, sizeof *job->data)) == NULL || (job->length = calloc(count, sizeof *job->length)) == NULL))) {
    if (job) { free(job->data); free(job); }
    napi_throw_error(env, NULL, "sha256: out of memory");
    return NULL;
  }
  job->hasher = h;
  job->count = count;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    bool is_buffer = false;
    void *p = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok || napi_is_buffer(env, el, &is_buffer) != napi_ok || !is_buffer ||
        napi_get_buffer_info(env, el, &p, &len) != napi_ok) {
      free(job->data); free(job->length); free(job);
      napi_throw_type_error(env, NULL, "update(hasher, buffers): buffers must be an array of Buffers");
      return NULL;
    }
    job->data[i] = p;
    job->length[i] = len;
  }
  /* The references keep the hasher and the buffers alive while the pool thread reads them. */
  napi_create_reference(env, argv[0], 1, &job->hasher_ref);
  napi_create_reference(env, argv[1], 1, &job->buffers_ref);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "sha256.update", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  h->busy = 1;
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value Digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  char hex[7 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256:";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "digest(hasher)");
    return NULL;
  }
  hasher_t *h = hasher_arg(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->busy || h->finished) {
    napi_throw_error(env, NULL, h->busy ? "sha256: an update is still in flight" : "sha256: the digest was already taken");
    return NULL;
  }
  h->finished = 1;
  if (EVP_DigestFinal_ex(h->md, md, &len) != 1) {
    napi_throw_error(env, NULL, "sha256: finishing the digest failed");
    return NULL;
  }
  for (unsigned int i = 0; i < len; i++) {
    static const char digits[] = "0123456789abcdef";
    hex[7 + 2 * i] = digits[md[i] >> 4];
    hex[8 + 2 * i] = digits[md[i] & 15];
  }
  napi_create_string_utf8(env, hex, 7 + 2 * len, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  export_fn(env, exports, "create", Create);
  export_fn(env, exports, "update", Update);
  export_fn(env, exports, "digest", Digest);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

/*
 * SHA-256 of many streams at once, off the JavaScript thread, for image pulls.
 *
 * A pull hashes every byte twice (the compressed blob against the manifest,
 * the uncompressed tar against the config's diff_id), for several layers at
 * once, and on CPUs without SHA extensions that hashing is most of the pull's
 * CPU time. One SHA-256 stream is a chain of dependent rounds: a single core
 * does ~360 MiB/s of it however it is vectorised. Independent streams,
 * though, can share vector instructions — word t of eight streams in one
 * 256-bit register ("multi-buffer" hashing, as Intel's ISA-L does it) — and
 * eight lanes cost little more than one: ~1250 MiB/s together on this
 * machine's AVX-512 cores. So hashers feed one engine per JavaScript
 * environment. Its lane worker hashes up to eight streams in lockstep; since
 * each stream's data arrives a socket read at a time, far slower than lanes
 * hash it, a stream's data waits a little for company (see URGENT_BYTES).
 * With fewer than three streams busy, each is hashed on its own with
 * OpenSSL's single-stream code (node's own, exported to addons), a helper
 * thread taking one of two, as two streams are faster on two cores.
 *
 * create() -> hasher; update(hasher, buffers, flush) -> Promise<void> (a
 * hasher's updates are hashed in the order given, several may be in flight;
 * the caller must not change the buffers until theirs settles; with flush,
 * the caller waits on it, so it is hashed without waiting for company);
 * digest(hasher) -> "sha256:<hex>" once every update has settled;
 * kernel([name]) -> the multi-lane kernel in use ("avx512", "avx2" or
 * "none": each stream on its own through OpenSSL, the default on CPUs with
 * the SHA extensions), optionally forcing one the CPU supports (for tests).
 * N-API only.
 */
#include "addon.h"
/* SHA256_Update on whole blocks is OpenSSL's single-stream kernel with a state we own (EVP hides it). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LANES 8
/* Below this many busy streams, lanes cost more than per-stream hashing. */
#define MIN_LANES 3
/* Streams with data that make lanes worth starting before any is urgent. */
#define FULL_LANES 6
/* Blocks per lane per step (16 KiB): short enough that a finished update is reported, and its lane refilled, promptly. */
#define STEP_BLOCKS 256
#define MAX_WORKERS 4
/*
 * A stream's data waits for company until this much is queued (or its caller
 * waits on it): lanes only pay when several streams have data at once, and
 * each stream's data arrives a socket read at a time, far slower than lanes
 * hash it — hashed as it came, most of it would go through one lane at a time.
 */
#define URGENT_BYTES (1u << 20)
/* ...or until it has waited this long (a stream nobody digests, e.g. of a failed download, must still be hashed and let go). */
#define MAX_WAIT_NS (20 * 1000000LL)

static const uint32_t K256[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
static const uint32_t IV256[8] = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define X8_NAME x8_avx512
#define X8_TARGET "avx2,avx512f,avx512vl"
#define X8_ROR(x, n) _mm256_ror_epi32((x), (n))
#define X8_XOR3(a, b, c) _mm256_ternarylogic_epi32((a), (b), (c), 0x96)
#define X8_CH(e, f, g) _mm256_ternarylogic_epi32((e), (f), (g), 0xCA)
#define X8_MAJ(a, b, c) _mm256_ternarylogic_epi32((a), (b), (c), 0xE8)
#include "sha256-x8.h"

#define X8_NAME x8_avx2
#define X8_TARGET "avx2"
#define X8_ROR(x, n) _mm256_or_si256(_mm256_srli_epi32((x), (n)), _mm256_slli_epi32((x), 32 - (n)))
#define X8_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256((a), (b)), (c))
#define X8_CH(e, f, g) _mm256_xor_si256(_mm256_and_si256((e), (f)), _mm256_andnot_si256((e), (g)))
#define X8_MAJ(a, b, c) _mm256_or_si256(_mm256_and_si256((a), (b)), _mm256_and_si256((c), _mm256_or_si256((a), (b))))
#include "sha256-x8.h"

typedef void (*x8_kernel)(uint32_t state[8][8], const uint8_t *const data[8], size_t blocks);

typedef struct job job_t;

typedef struct hasher {
  uint32_t h[8];
  uint64_t bytes;           /* everything given to update(), for the final length */
  uint8_t tail[64];         /* a partial block carried to the next update */
  size_t tail_len;
  int tail_is_run;          /* the current run is the tail block (else the job's data) */
  int drained;              /* the first queued update is used up (set by a step, handled under the lock) */
  /* Updates queued, oldest first; the engine's, under its lock, while non-empty. */
  job_t *jobs, **jobs_end;
  size_t queued;            /* bytes of the queued updates (under the lock) */
  int64_t since;            /* when its data last started waiting: queued when idle, or hashed (under the lock) */
  int flushes;              /* queued updates someone waits on: hash them now (under the lock) */
  size_t in_flight;         /* updates not yet settled (JavaScript thread only) */
  int finished;
  struct hasher *next;      /* in the engine's ready queue */
} hasher_t;

struct job {
  hasher_t *hasher;
  napi_deferred deferred;
  napi_ref hasher_ref, buffers_ref;
  buffer_list_t in;
  size_t seg, off;          /* how far into the buffers the hashing is */
  int flush;                /* the caller waits for this one (a digest, or backpressure) */
  job_t *next;              /* in its hasher's queue, then in the engine's done list */
};

static void free_job(job_t *job) {
  free_buffer_list(&job->in);
  free(job);
}

typedef struct engine {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  hasher_t *ready, **ready_end;   /* hashers with updates queued that no worker holds */
  size_t ready_count;
  job_t *done;
  size_t in_flight;         /* updates not yet settled; while > 0 the event loop is kept alive */
  int lane_busy;            /* streams the lane worker holds */
  int helper_busy;          /* streams the helpers hold */
  int idle_helpers, stopping, workers;
  pthread_t threads[MAX_WORKERS];
  x8_kernel kernel;
  const char *kernel_name;
  napi_threadsafe_function report;
} engine_t;

static const uint8_t zero_blocks[STEP_BLOCKS * 64];

/* ---- hashing (worker threads) ---- */

static void solo(uint32_t h[8], const uint8_t *data, size_t blocks) {
  SHA256_CTX ctx;
  memset(&ctx, 0, sizeof ctx);
  memcpy(ctx.h, h, sizeof ctx.h);
  SHA256_Update(&ctx, data, blocks * 64);
  memcpy(h, ctx.h, sizeof ctx.h);
}

static void advance(job_t *j, size_t n) {
  j->off += n;
  if (j->off == j->in.length[j->seg]) { j->seg++; j->off = 0; }
}

/*
 * Point *run at the next whole blocks of s's oldest update and return how
 * many (0 once it is used up, its last partial block kept in the tail). A
 * block split across two buffers or two updates is assembled in the tail.
 */
static size_t next_run(hasher_t *s, const uint8_t **run) {
  job_t *j = s->jobs;
  while (j->seg < j->in.count) {
    size_t left = j->in.length[j->seg] - j->off;
    const uint8_t *d = j->in.data[j->seg] + j->off;
    if (left == 0) { j->seg++; j->off = 0; continue; }
    if (s->tail_len > 0 || left < 64) {
      size_t take = 64 - s->tail_len < left ? 64 - s->tail_len : left;
      memcpy(s->tail + s->tail_len, d, take);
      s->tail_len += take;
      advance(j, take);
      if (s->tail_len == 64) { s->tail_is_run = 1; *run = s->tail; return 1; }
      continue;
    }
    s->tail_is_run = 0;
    *run = d;
    return left / 64;
  }
  return 0;
}

static void consume(hasher_t *s, size_t blocks) {
  if (s->tail_is_run) s->tail_len = 0;
  else advance(s->jobs, blocks * 64);
}

/*
 * Hash a stretch of the streams held that `take` marks: in lanes when three
 * or more have data and a kernel is given, else each on its own. A stream
 * whose oldest update is used up is only marked drained; settle() deals with
 * it under the lock.
 */
static void step(x8_kernel kernel, hasher_t *const *held, int count, const int *take) {
  hasher_t *lane[LANES];
  const uint8_t *run[LANES];
  size_t n[LANES], blocks = STEP_BLOCKS;
  int busy = 0;
  for (int i = 0; i < count; i++) {
    if (!take[i]) continue;
    const uint8_t *r;
    size_t c = next_run(held[i], &r);
    if (c == 0) { held[i]->drained = 1; continue; }
    lane[busy] = held[i];
    run[busy] = r;
    n[busy] = c;
    if (c < blocks) blocks = c;
    busy++;
  }
  if (busy == 0) return;
  if (busy < MIN_LANES || kernel == NULL) {
    for (int i = 0; i < busy; i++) {
      size_t b = n[i] < 4 * STEP_BLOCKS ? n[i] : 4 * STEP_BLOCKS;
      solo(lane[i]->h, run[i], b);
      consume(lane[i], b);
    }
    return;
  }
  uint32_t state[8][LANES];
  const uint8_t *data[LANES];
  for (int l = 0; l < LANES; l++) {
    for (int w = 0; w < 8; w++) state[w][l] = l < busy ? lane[l]->h[w] : IV256[w];
    data[l] = l < busy ? run[l] : zero_blocks;
  }
  kernel(state, data, blocks);
  for (int l = 0; l < busy; l++) {
    for (int w = 0; w < 8; w++) lane[l]->h[w] = state[w][l];
    consume(lane[l], blocks);
  }
}

static hasher_t *pop_ready(engine_t *e) {
  hasher_t *s = e->ready;
  e->ready = s->next;
  if (e->ready == NULL) e->ready_end = &e->ready;
  e->ready_count--;
  return s;
}

static void push_ready(engine_t *e, hasher_t *s) {
  s->next = NULL;
  *e->ready_end = s;
  e->ready_end = &s->next;
  e->ready_count++;
  pthread_cond_broadcast(&e->wake);
}

/*
 * With the lock held, after a step: report drained updates to the JavaScript
 * thread, and let go of the streams with nothing more queued.
 */
static void settle(engine_t *e, hasher_t **held, int *count) {
  job_t *done = NULL;
  for (int i = 0; i < *count;) {
    hasher_t *s = held[i];
    if (s->drained) {
      job_t *j = s->jobs;
      s->drained = 0;
      s->queued -= j->in.bytes;
      s->flushes -= j->flush;
      s->jobs = j->next;
      if (s->jobs == NULL) s->jobs_end = &s->jobs;
      j->next = done;
      done = j;
      if (s->jobs == NULL) {
        held[i] = held[--*count];
        continue;
      }
    }
    i++;
  }
  if (done == NULL) return;
  job_t *last = done;
  while (last->next != NULL) last = last->next;
  last->next = e->done;
  e->done = done;
  napi_call_threadsafe_function(e->report, NULL, napi_tsfn_nonblocking);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int urgent(const hasher_t *s, int64_t now) {
  return s->flushes > 0 || s->queued >= URGENT_BYTES || now - s->since >= MAX_WAIT_NS;
}

/* With the lock held: sleep until woken, or until the first of the streams held has waited MAX_WAIT_NS. */
static void wait_for_work(engine_t *e, hasher_t *const *held, int count) {
  if (count == 0) {
    pthread_cond_wait(&e->wake, &e->lock);
    return;
  }
  int64_t first = held[0]->since;
  for (int i = 1; i < count; i++) if (held[i]->since < first) first = held[i]->since;
  int64_t deadline = first + MAX_WAIT_NS;
  struct timespec ts = { .tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL };
  pthread_cond_timedwait(&e->wake, &e->lock, &ts);
}

/*
 * Worker 0 holds up to eight streams and hashes them in lanes while three or
 * more have data. With fewer, it hashes only urgent ones (each on its own,
 * an idle helper taking one of two) and lets the rest wait for company —
 * unless there are fewer than three streams in all: then there is no company
 * to wait for, and each is hashed as its data comes. Streams gather here
 * rather than spread over the workers, since lanes pay only when full.
 */
static void *lane_worker(void *arg) {
  engine_t *e = arg;
  hasher_t *held[LANES];
  int take[LANES];
  int count = 0;
  pthread_mutex_lock(&e->lock);
  for (;;) {
    while (count < LANES && e->ready != NULL) held[count++] = pop_ready(e);
    x8_kernel kernel = count >= MIN_LANES ? e->kernel : NULL;
    int64_t now = now_ns();
    int all = e->stopping || e->kernel == NULL || count + e->helper_busy < MIN_LANES;
    /* Lanes go when most are full or someone waits; else a stream goes alone only if it is urgent. */
    int any_urgent = all;
    for (int i = 0; i < count && !any_urgent; i++) any_urgent = urgent(held[i], now);
    int go = all || count >= FULL_LANES || (kernel != NULL && any_urgent);
    int taken = 0;
    for (int i = 0; i < count; i++) taken += take[i] = go || (any_urgent && urgent(held[i], now));
    /* Two streams hash faster on two cores than in turns on one. */
    if (taken == 2 && count == 2 && e->idle_helpers > 0) {
      push_ready(e, held[--count]);
      taken--;
    }
    if (e->lane_busy != count) {
      e->lane_busy = count;
      pthread_cond_broadcast(&e->wake);
    }
    if (taken == 0) {
      if (e->stopping && count == 0) break;
      wait_for_work(e, held, count);
      continue;
    }
    pthread_mutex_unlock(&e->lock);
    step(kernel, held, count, take);
    pthread_mutex_lock(&e->lock);
    now = now_ns();
    for (int i = 0; i < count; i++) if (take[i]) held[i]->since = now;
    settle(e, held, &count);
  }
  pthread_mutex_unlock(&e->lock);
  return NULL;
}

/*
 * The other workers hash one stream each on its own while the lanes would
 * not use it: fewer than three streams in all, or the lane worker full. Once
 * there is company for it, the stream goes back to the lane worker.
 */
static void *helper(void *arg) {
  engine_t *e = arg;
  hasher_t *held[1];
  const int take[1] = { 1 };
  int count = 0;
  pthread_mutex_lock(&e->lock);
  for (;;) {
    int lanes_full = e->kernel == NULL || e->lane_busy >= LANES;
    int streams = e->lane_busy + (int)e->ready_count + e->helper_busy;
    if (count == 1 && !lanes_full && streams >= MIN_LANES) {
      push_ready(e, held[--count]);
      e->helper_busy--;
    } else if (count == 0 && e->ready != NULL && (lanes_full || streams < MIN_LANES)) {
      held[count++] = pop_ready(e);
      e->helper_busy++;
    }
    if (count == 0) {
      if (e->stopping) break;
      e->idle_helpers++;
      pthread_cond_wait(&e->wake, &e->lock);
      e->idle_helpers--;
      continue;
    }
    pthread_mutex_unlock(&e->lock);
    step(NULL, held, count, take);
    pthread_mutex_lock(&e->lock);
    held[0]->since = now_ns();
    settle(e, held, &count);
    if (count == 0) {
      e->helper_busy--;
      pthread_cond_broadcast(&e->wake); /* the lane worker counts the streams helpers hold */
    }
  }
  pthread_mutex_unlock(&e->lock);
  return NULL;
}

/* ---- the JavaScript side ---- */

/* Runs on the JavaScript thread whenever a worker has finished updates: settles their promises. */
static void report_done(napi_env env, napi_value js_cb, void *context, void *data) {
  engine_t *e = context;
  (void)js_cb; (void)data;
  if (env == NULL) return;
  pthread_mutex_lock(&e->lock);
  job_t *j = e->done;
  e->done = NULL;
  pthread_mutex_unlock(&e->lock);
  napi_value undef;
  napi_get_undefined(env, &undef);
  while (j != NULL) {
    job_t *next = j->next;
    j->hasher->in_flight--;
    napi_resolve_deferred(env, j->deferred, undef);
    napi_delete_reference(env, j->buffers_ref);
    napi_delete_reference(env, j->hasher_ref);
    free_job(j);
    if (--e->in_flight == 0) napi_unref_threadsafe_function(env, e->report);
    j = next;
  }
}

static void stop_engine(void *arg) {
  engine_t *e = arg;
  pthread_mutex_lock(&e->lock);
  e->stopping = 1;
  pthread_cond_broadcast(&e->wake);
  pthread_mutex_unlock(&e->lock);
  for (int i = 0; i < e->workers; i++) pthread_join(e->threads[i], NULL);
  e->workers = 0;
  napi_release_threadsafe_function(e->report, napi_tsfn_abort);
}

static void free_engine(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  engine_t *e = data;
  pthread_mutex_destroy(&e->lock);
  pthread_cond_destroy(&e->wake);
  free(e);
}

static engine_t *engine_of(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static int start_workers(napi_env env, engine_t *e) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int want = cpus < 1 ? 1 : cpus > MAX_WORKERS ? MAX_WORKERS : (int)cpus;
  for (; e->workers < want; e->workers++) {
    if (pthread_create(&e->threads[e->workers], NULL, e->workers == 0 ? lane_worker : helper, e) != 0) break;
  }
  if (e->workers == 0) {
    napi_throw_error(env, NULL, "sha256: cannot start a hashing thread");
    return 0;
  }
  return 1;
}

static void free_hasher(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

static napi_value Create(napi_env env, napi_callback_info info) {
  napi_value out;
  hasher_t *h = calloc(1, sizeof *h);
  (void)info;
  if (h == NULL) {
    napi_throw_error(env, NULL, "sha256: out of memory");
    return NULL;
  }
  memcpy(h->h, IV256, sizeof h->h);
  h->jobs_end = &h->jobs;
  if (napi_create_external(env, h, free_hasher, NULL, &out) != napi_ok) {
    free(h);
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

static napi_value Update(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], promise;
  bool flush = false;
  engine_t *e = engine_of(env);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "update(hasher, buffers[, flush]) takes two or three arguments");
    return NULL;
  }
  if (argc >= 3) napi_get_value_bool(env, argv[2], &flush);
  hasher_t *h = hasher_arg(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->finished) {
    napi_throw_error(env, NULL, "sha256: the digest was already taken");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "sha256: out of memory");
    return NULL;
  }
  if (!read_buffer_list(env, argv[1], "update(hasher, buffers): buffers must be an array of Buffers", &job->in)) {
    free(job);
    return NULL;
  }
  job->hasher = h;
  if (e->workers == 0 && !start_workers(env, e)) {
    free_job(job);
    return NULL;
  }
  /* The references keep the hasher and the buffers alive while a worker reads them. */
  napi_create_reference(env, argv[0], 1, &job->hasher_ref);
  napi_create_reference(env, argv[1], 1, &job->buffers_ref);
  napi_create_promise(env, &job->deferred, &promise);
  job->flush = flush;
  h->bytes += job->in.bytes;
  h->in_flight++;
  if (e->in_flight++ == 0) napi_ref_threadsafe_function(env, e->report);
  pthread_mutex_lock(&e->lock);
  /* A hasher with updates queued already is in the ready queue or held by a worker. */
  int idle = h->jobs == NULL;
  if (idle) h->since = now_ns();
  *h->jobs_end = job;
  h->jobs_end = &job->next;
  h->queued += job->in.bytes;
  h->flushes += flush;
  if (idle) push_ready(e, h);
  else if (flush || h->queued >= URGENT_BYTES) pthread_cond_broadcast(&e->wake); /* it may have become urgent */
  pthread_mutex_unlock(&e->lock);
  return promise;
}

static napi_value Digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  uint8_t pad[128];
  char hex[7 + 64 + 1] = "sha256:";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "digest(hasher)");
    return NULL;
  }
  hasher_t *h = hasher_arg(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->in_flight > 0 || h->finished) {
    napi_throw_error(env, NULL, h->in_flight ? "sha256: an update is still in flight" : "sha256: the digest was already taken");
    return NULL;
  }
  h->finished = 1;
  /* FIPS 180-4 padding: 0x80, zeros, the length in bits as a big-endian 64-bit number. */
  size_t len = h->tail_len, total = len + 9 <= 64 ? 64 : 128;
  memset(pad, 0, sizeof pad);
  memcpy(pad, h->tail, len);
  pad[len] = 0x80;
  uint64_t bits = h->bytes * 8;
  for (int i = 0; i < 8; i++) pad[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  solo(h->h, pad, total / 64);
  static const char digits[] = "0123456789abcdef";
  for (int w = 0; w < 8; w++) {
    for (int b = 0; b < 4; b++) {
      uint8_t byte = (uint8_t)(h->h[w] >> (24 - 8 * b));
      hex[7 + 8 * w + 2 * b] = digits[byte >> 4];
      hex[8 + 8 * w + 2 * b] = digits[byte & 15];
    }
  }
  napi_create_string_utf8(env, hex, 7 + 64, &out);
  return out;
}

/* kernel() -> the multi-lane kernel in use; kernel(name) forces "avx512", "avx2" or "none" (tests compare them). */
static napi_value Kernel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  engine_t *e = engine_of(env);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) {
    char name[16] = "";
    size_t n = 0;
    napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n);
    x8_kernel k = NULL;
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512vl")) k = x8_avx512;
    else if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) k = x8_avx2;
    else if (strcmp(name, "none") != 0) {
      napi_throw_error(env, NULL, "sha256: kernel must be one of avx512, avx2, none, and supported by this CPU");
      return NULL;
    }
    pthread_mutex_lock(&e->lock);
    e->kernel = k;
    e->kernel_name = k == x8_avx512 ? "avx512" : k == x8_avx2 ? "avx2" : "none";
    pthread_mutex_unlock(&e->lock);
  }
  napi_create_string_utf8(env, e->kernel_name, NAPI_AUTO_LENGTH, &out);
  return out;
}

/*
 * CPUID leaf 7 EBX bit 29: the SHA extensions. With them OpenSSL's
 * single-stream SHA256 runs the rounds in dedicated instructions and, stream
 * for stream, outruns the 8-lane AVX kernels (measured on this project's
 * machines: ~1.5 GiB/s a stream either way at 1-2 streams, and the AVX2 lanes
 * fall to ~0.8 GiB/s at 4), so lanes are only worth it without them.
 */
static int cpu_has_sha_extensions(void) {
  unsigned int a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) != 0;
}

static napi_value Init(napi_env env, napi_value exports) {
  engine_t *e = calloc(1, sizeof *e);
  napi_value name;
  if (e == NULL) {
    napi_throw_error(env, NULL, "sha256: out of memory");
    return NULL;
  }
  pthread_mutex_init(&e->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&e->wake, &attr);
  pthread_condattr_destroy(&attr);
  e->ready_end = &e->ready;
  __builtin_cpu_init();
  if (cpu_has_sha_extensions()) e->kernel_name = "none";
  else if (__builtin_cpu_supports("avx512vl")) { e->kernel = x8_avx512; e->kernel_name = "avx512"; }
  else if (__builtin_cpu_supports("avx2")) { e->kernel = x8_avx2; e->kernel_name = "avx2"; }
  else e->kernel_name = "none";
  napi_create_string_utf8(env, "sha256.report", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, e, report_done, &e->report) != napi_ok) {
    free_engine(env, e, NULL);
    napi_throw_error(env, NULL, "sha256: cannot create the completion channel");
    return NULL;
  }
  /* Idle, the engine must not keep the process alive; Update refs it while promises are pending. */
  napi_unref_threadsafe_function(env, e->report);
  napi_set_instance_data(env, e, free_engine, NULL);
  napi_add_env_cleanup_hook(env, stop_engine, e);
  export_fn(env, exports, "create", Create);
  export_fn(env, exports, "update", Update);
  export_fn(env, exports, "digest", Digest);
  export_fn(env, exports, "kernel", Kernel);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

/*
 * One SHA-256 compression kernel over eight independent streams ("lanes"),
 * one 32-bit word of each lane per vector element. Included by sha256.c once
 * per instruction set, with these defined:
 *   X8_NAME            the function's name
 *   X8_TARGET          its GCC target attribute string
 *   X8_ROR(x, n)       rotate every element right by n
 *   X8_XOR3(a, b, c)   a ^ b ^ c
 *   X8_CH(e, f, g)     (e & f) ^ (~e & g)
 *   X8_MAJ(a, b, c)    (a & b) ^ (a & c) ^ (b & c)
 *
 * state[i][l] is word i of lane l; data[l] points at `blocks` whole 64-byte
 * blocks of lane l.
 */
__attribute__((target(X8_TARGET)))
static void X8_NAME(uint32_t state[8][8], const uint8_t *const data[8], size_t blocks) {
  const __m256i bswap = _mm256_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
                                        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
  __m256i s[8];
  for (int i = 0; i < 8; i++) s[i] = _mm256_loadu_si256((const __m256i *)state[i]);
  for (size_t b = 0; b < blocks; b++) {
    __m256i w[16];
    /* Load 32 bytes of each lane and transpose 8x8 words, so w[t] holds word t of every lane. */
    for (int half = 0; half < 2; half++) {
      __m256i r[8];
      for (int l = 0; l < 8; l++) {
        r[l] = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(data[l] + b * 64 + 32 * half)), bswap);
      }
      __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
      __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
      __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
      __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
      __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
      __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
      __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
      __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
      __m256i *o = w + 8 * half;
      o[0] = _mm256_permute2x128_si256(u0, u4, 0x20); o[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
      o[2] = _mm256_permute2x128_si256(u2, u6, 0x20); o[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
      o[4] = _mm256_permute2x128_si256(u0, u4, 0x31); o[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
      o[6] = _mm256_permute2x128_si256(u2, u6, 0x31); o[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
    }
    __m256i a = s[0], bb = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int t = 0; t < 64; t++) {
      __m256i wt;
      if (t < 16) {
        wt = w[t];
      } else {
        __m256i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
        __m256i s0 = X8_XOR3(X8_ROR(w15, 7), X8_ROR(w15, 18), _mm256_srli_epi32(w15, 3));
        __m256i s1 = X8_XOR3(X8_ROR(w2, 17), X8_ROR(w2, 19), _mm256_srli_epi32(w2, 10));
        wt = _mm256_add_epi32(_mm256_add_epi32(w[t & 15], s0), _mm256_add_epi32(w[(t - 7) & 15], s1));
        w[t & 15] = wt;
      }
      __m256i big_s1 = X8_XOR3(X8_ROR(e, 6), X8_ROR(e, 11), X8_ROR(e, 25));
      __m256i t1 = _mm256_add_epi32(_mm256_add_epi32(h, big_s1),
                                    _mm256_add_epi32(X8_CH(e, f, g), _mm256_add_epi32(wt, _mm256_set1_epi32((int)K256[t]))));
      __m256i big_s0 = X8_XOR3(X8_ROR(a, 2), X8_ROR(a, 13), X8_ROR(a, 22));
      __m256i t2 = _mm256_add_epi32(big_s0, X8_MAJ(a, bb, c));
      h = g; g = f; f = e; e = _mm256_add_epi32(d, t1);
      d = c; c = bb; bb = a; a = _mm256_add_epi32(t1, t2);
    }
    s[0] = _mm256_add_epi32(s[0], a); s[1] = _mm256_add_epi32(s[1], bb);
    s[2] = _mm256_add_epi32(s[2], c); s[3] = _mm256_add_epi32(s[3], d);
    s[4] = _mm256_add_epi32(s[4], e); s[5] = _mm256_add_epi32(s[5], f);
    s[6] = _mm256_add_epi32(s[6], g); s[7] = _mm256_add_epi32(s[7], h);
  }
  for (int i = 0; i < 8; i++) _mm256_storeu_si256((__m256i *)state[i], s[i]);
}

#undef X8_NAME
#undef X8_TARGET
#undef X8_ROR
#undef X8_XOR3
#undef X8_CH
#undef X8_MAJ

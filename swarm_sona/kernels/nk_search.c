/* Top-k (float32 and int8), int8 quantisation and k-means assignment (see reference.py). */
#include <math.h>
#include <string.h>

#include "nk_kernels.h"

typedef struct {
    float s;
    int64_t i;
} nk_item;

/* a ranks before b: higher score, then lower index; NaN scores rank last. */
static inline int nk_better(nk_item a, nk_item b) {
    const int an = a.s != a.s, bn = b.s != b.s;
    if (an != bn) return bn;
    if (!an && a.s != b.s) return a.s > b.s;
    return a.i < b.i;
}

/* A heap of at most cap items whose root is the worst kept item. */
static inline void nk_sift_down(nk_item *h, size_t size, size_t node) {
    for (;;) {
        size_t w = 2 * node + 1;
        if (w >= size) return;
        if (w + 1 < size && nk_better(h[w], h[w + 1])) w++;
        if (!nk_better(h[node], h[w])) return;
        nk_item t = h[node];
        h[node] = h[w];
        h[w] = t;
        node = w;
    }
}

static inline void nk_push(nk_item *h, size_t *size, size_t cap, nk_item it) {
    if (*size < cap) {
        size_t c = (*size)++;
        h[c] = it;
        while (c > 0) {
            size_t p = (c - 1) / 2;
            if (!nk_better(h[p], h[c])) break;
            nk_item t = h[p];
            h[p] = h[c];
            h[c] = t;
            c = p;
        }
    } else if (nk_better(it, h[0])) {
        h[0] = it;
        nk_sift_down(h, *size, 0);
    }
}

/* Heap-sort in place: best first. Returns the count. */
static long long nk_finish(nk_item *h, size_t size, int64_t *out_idx, float *out_score) {
    for (size_t end = size; end > 1; end--) {
        nk_item t = h[0];
        h[0] = h[end - 1];
        h[end - 1] = t;
        nk_sift_down(h, end - 1, 0);
    }
    for (size_t j = 0; j < size; j++) {
        out_idx[j] = h[j].i;
        out_score[j] = h[j].s;
    }
    return (long long)size;
}

static inline int nk_keep(const nk_filter *f, size_t i) {
    if (f->mask != NULL && !f->mask[i]) return 0;
    if (f->values != NULL && !(f->values[i] >= f->min_value)) return 0;
    return 1;
}

static inline float nk_dot_i8(const int8_t *NK_RESTRICT a, const float *NK_RESTRICT b, size_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (float)a[i] * b[i];
    return s;
}

/* Four rows against one query at once: four independent accumulator chains, q loaded once. */
static inline void nk_dot4_f32(const float *M, size_t d, const size_t *rows, const float *q, float *out) {
    const float *a0 = M + rows[0] * d, *a1 = M + rows[1] * d, *a2 = M + rows[2] * d, *a3 = M + rows[3] * d;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (size_t j = 0; j < d; j++) {
        const float qj = q[j];
        s0 += a0[j] * qj;
        s1 += a1[j] * qj;
        s2 += a2[j] * qj;
        s3 += a3[j] * qj;
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

static inline void nk_dot4_i8(const int8_t *Q, size_t d, const size_t *rows, const float *q, float *out) {
    const int8_t *a0 = Q + rows[0] * d, *a1 = Q + rows[1] * d, *a2 = Q + rows[2] * d, *a3 = Q + rows[3] * d;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (size_t j = 0; j < d; j++) {
        const float qj = q[j];
        s0 += (float)a0[j] * qj;
        s1 += (float)a1[j] * qj;
        s2 += (float)a2[j] * qj;
        s3 += (float)a3[j] * qj;
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Kept rows are scored four at a time (the heap's order is total, so push order is free). */
#define NK_TOPK_BODY(DOT4, DOT1, SCALE)                                                        \
    if (k > n) k = n;                                                                          \
    if (k == 0) return 0;                                                                      \
    nk_item *heap = (nk_item *)malloc(k * sizeof(nk_item));                                    \
    if (heap == NULL) return -1;                                                               \
    size_t size = 0, pend = 0, rows[4];                                                        \
    float sc[4];                                                                               \
    for (size_t i = 0; i < n; i++) {                                                           \
        if (!nk_keep(f, i)) continue;                                                          \
        rows[pend++] = i;                                                                      \
        if (pend == 4) {                                                                       \
            DOT4;                                                                              \
            for (size_t t = 0; t < 4; t++) {                                                   \
                nk_item it = {sc[t] SCALE(rows[t]), (int64_t)rows[t]};                         \
                nk_push(heap, &size, k, it);                                                   \
            }                                                                                  \
            pend = 0;                                                                          \
        }                                                                                      \
    }                                                                                          \
    for (size_t t = 0; t < pend; t++) {                                                        \
        nk_item it = {DOT1(rows[t]) SCALE(rows[t]), (int64_t)rows[t]};                         \
        nk_push(heap, &size, k, it);                                                           \
    }                                                                                          \
    long long m = nk_finish(heap, size, out_idx, out_score);                                   \
    free(heap);                                                                                \
    return m;

#define NK_NOSCALE(i)
#define NK_ROWSCALE(i) *scales[i]
#define NK_F32_DOT1(i) nk_dot(M + (i) * d, q, d)
#define NK_I8_DOT1(i) nk_dot_i8(Q + (i) * d, q, d)

NK_CLONES
long long nk_topk_f32(const float *M, size_t n, size_t d, const float *q, size_t k,
                      const nk_filter *f, int64_t *out_idx, float *out_score) {
    NK_TOPK_BODY(nk_dot4_f32(M, d, rows, q, sc), NK_F32_DOT1, NK_NOSCALE)
}

NK_CLONES
long long nk_topk_i8(const int8_t *Q, const float *scales, size_t n, size_t d, const float *q,
                     size_t k, const nk_filter *f, int64_t *out_idx, float *out_score) {
    NK_TOPK_BODY(nk_dot4_i8(Q, d, rows, q, sc), NK_I8_DOT1, NK_ROWSCALE)
}

NK_CLONES
void nk_quantize_i8(const float *M, size_t n, size_t d, int8_t *Q, float *scales) {
    for (size_t i = 0; i < n; i++) {
        const float *x = M + i * d;
        int8_t *qr = Q + i * d;
        float amax = 0.0f;
        int has_nan = 0;
#pragma omp simd reduction(max : amax) reduction(| : has_nan)
        for (size_t j = 0; j < d; j++) {
            const float a = fabsf(x[j]);
            has_nan |= a != a;
            amax = a > amax ? a : amax;
        }
        /* numpy's max propagates NaN and NaN > 0 is false: such a row gets scale 1 */
        const float sc = (!has_nan && amax > 0.0f) ? amax / 127.0f : 1.0f;
        scales[i] = sc;
#pragma omp simd
        for (size_t j = 0; j < d; j++) {
            float t = rintf(x[j] / sc);
            t = t > 127.0f ? 127.0f : t;
            t = t < -127.0f ? -127.0f : t;
            t = t != t ? 0.0f : t; /* NaN -> 0 (numpy leaves it undefined); no UB in the cast */
            qr[j] = (int8_t)(int)t;
        }
    }
}

static inline uint8_t nk_i4_code(float x, float sc) {
    float t = rintf(x / sc);
    t = t > 7.0f ? 7.0f : t;
    t = t < -7.0f ? -7.0f : t;
    t = t != t ? 0.0f : t;
    return (uint8_t)((int)t + 8);
}

NK_CLONES
void nk_quantize_i4(const float *M, size_t n, size_t d, uint8_t *P, float *scales) {
    const size_t db = (d + 1) / 2;
    uint8_t codes[256];
    for (size_t i = 0; i < n; i++) {
        const float *x = M + i * d;
        uint8_t *pr = P + i * db;
        float amax = 0.0f;
#pragma omp simd reduction(max : amax)
        for (size_t j = 0; j < d; j++) {
            const float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float sc = amax > 0.0f ? amax / 7.0f : 1.0f;
        scales[i] = sc;
        for (size_t j0 = 0; j0 < d; j0 += 256) { /* codes a block at a time (vectorised), then packed */
            const size_t m = d - j0 < 256 ? d - j0 : 256;
#pragma omp simd
            for (size_t j = 0; j < m; j++) codes[j] = nk_i4_code(x[j0 + j], sc);
            for (size_t j = 0; j + 1 < m; j += 2) pr[(j0 + j) / 2] = (uint8_t)(codes[j] | (codes[j + 1] << 4));
            if (m % 2) pr[(j0 + m - 1) / 2] = (uint8_t)(codes[m - 1] | (8 << 4)); /* only at the end of a row */
        }
    }
}

NK_CLONES
int nk_kmeans_assign(const float *X, size_t n, size_t d, const float *C, size_t k,
                     int64_t *labels, float *dist2) {
    /* as the reference: d2 = (|x|^2 - 2 x.c) + |c|^2, clamped at 0; centroids four at a time */
    float *cc = (float *)malloc((k + 1) * sizeof(float));
    if (cc == NULL) return -1;
    for (size_t c = 0; c < k; c++) cc[c] = nk_dot(C + c * d, C + c * d, d);
    const size_t k4 = k - k % 4;
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * d;
        const float xx = nk_dot(x, x, d);
        size_t best = 0;
        float bd = INFINITY;
        for (size_t c = 0; c < k; c += (c < k4 ? 4 : 1)) {
            float s[4];
            size_t m = 1;
            if (c < k4) {
                const size_t rows[4] = {c, c + 1, c + 2, c + 3};
                nk_dot4_f32(C, d, rows, x, s);
                m = 4;
            } else {
                s[0] = nk_dot(C + c * d, x, d);
            }
            for (size_t t = 0; t < m; t++) {
                float v = (xx - 2.0f * s[t]) + cc[c + t];
                v = v > 0.0f ? v : 0.0f;
                if (c + t == 0 || v < bd) {
                    bd = v;
                    best = c + t;
                }
            }
        }
        labels[i] = (int64_t)best;
        dist2[i] = bd;
    }
    free(cc);
    return 0;
}

/* ---- ivf probe: the lists nearest a query until they cover enough rows ------------------- */

typedef struct {
    float s; /* squared distance up to the query's own |q|^2 */
    int64_t i;
} nk_near;

/* a before b: nearer, ties to the lower list, NaN last */
static inline int nk_nearer(nk_near a, nk_near b) {
    const int an = a.s != a.s, bn = b.s != b.s;
    if (an | bn) return an == bn ? a.i < b.i : bn;
    return a.s < b.s || (a.s == b.s && a.i < b.i);
}

static inline void nk_near_down(nk_near *h, size_t size, size_t node) {
    for (;;) {
        size_t c = 2 * node + 1;
        if (c >= size) return;
        if (c + 1 < size && nk_nearer(h[c + 1], h[c])) c++;
        if (!nk_nearer(h[c], h[node])) return;
        nk_near t = h[node];
        h[node] = h[c];
        h[c] = t;
        node = c;
    }
}

static int nk_cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

NK_CLONES
long long nk_ivf_probe(const float *C, const float *norms, const int64_t *sizes, size_t L, size_t d,
                       const float *q, double need, int64_t *out) {
    if (L == 0) return 0;
    nk_near *h = (nk_near *)malloc(L * sizeof(nk_near));
    if (h == NULL) return -1;
    const size_t L4 = L - L % 4;
    for (size_t j = 0; j < L; j += (j < L4 ? 4 : 1)) { /* as the reference: |c|^2 - 2 c.q */
        if (j < L4) {
            const size_t rows[4] = {j, j + 1, j + 2, j + 3};
            float s[4];
            nk_dot4_f32(C, d, rows, q, s);
            for (size_t t = 0; t < 4; t++) h[j + t] = (nk_near){norms[j + t] - 2.0f * s[t], (int64_t)(j + t)};
        } else {
            h[j] = (nk_near){norms[j] - 2.0f * nk_dot(C + j * d, q, d), (int64_t)j};
        }
    }
    for (size_t p = L / 2; p-- > 0;) nk_near_down(h, L, p);
    size_t size = L, m = 0;
    double covered = 0.0;
    while (size > 0) { /* nearest first, until the lists taken hold `need` rows */
        out[m++] = h[0].i;
        covered += (double)sizes[h[0].i];
        if (covered >= need) break;
        h[0] = h[--size];
        nk_near_down(h, size, 0);
    }
    free(h);
    qsort(out, m, sizeof(int64_t), nk_cmp_i64);
    return (long long)m;
}

/* ---- two-stage top-k: int8 x int8 proposal, exact float32 re-rank ---------------------------
 *
 * Stage 1 scores every kept row with an integer dot product of its int8 codes and the query
 * quantised to int8 (as one row by nk_quantize_i8): approx = (float)dot * (scales[i] * qs).
 * Those are exact integer sums, so every instruction set below gives bit-identical results.
 * Stage 2 re-scores the best `cand` rows exactly in float32 against M and keeps the best k.
 *
 * The integer dot products are the only part written with intrinsics: target_clones cannot
 * pick intrinsics per clone, so they are separate functions with per-function target
 * attributes, chosen once at start-up from the CPU's features (nk_i8_dispatch_init):
 *   avx512-vnni  64 bytes per vpdpbusd (unsigned x signed): the row bytes flipped by
 *                x ^ 0x80 = x + 128 (unsigned) times the signed query codes, and the constant
 *                128 * sum(qq) taken off once per row: x . qq = (x + 128) . qq - 128 sum(qq);
 *   avx-vnni     the same on 32 bytes (VEX vpdpbusd);
 *   avx2         vpmaddubsw(|x|, sign(qq, x)) + vpmaddwd: |x| <= 128 and |qq| <= 127, so the
 *                pairwise int16 sums (<= 32512) never saturate;
 *   generic      plain C (auto-vectorised where the compiler can).
 * Every path handles the full int8 range of the rows (-128 included); the query codes are in
 * [-127, 127] by construction. */

#define NK_I8_BLOCK 64 /* kept rows scored per call of the dot-product routine */

typedef void (*nk_i8_rows_fn)(const int8_t *Q, size_t d, const size_t *rows, size_t m, const int8_t *qq,
                              int32_t *out);

static void nk_i8_rows_generic(const int8_t *Q, size_t d, const size_t *rows, size_t m, const int8_t *qq,
                               int32_t *out) {
    for (size_t t = 0; t < m; t++) {
        const int8_t *a = Q + rows[t] * d;
        int32_t s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t j = 0; j < d; j++) s += (int32_t)a[j] * (int32_t)qq[j];
        out[t] = s;
    }
}

/* int4 rows: byte b of a packed row holds the codes (0..15, offset 8) of dims 2b (low nibble)
 * and 2b + 1 (high nibble); qe / qo are the query codes of the even / odd dims. Writes
 * sum_b lo(P[b]) * qe[b] + hi(P[b]) * qo[b] (the offset is removed by the caller). */
typedef void (*nk_i4_rows_fn)(const uint8_t *P, size_t db, const size_t *rows, size_t m, const int8_t *qe,
                              const int8_t *qo, int32_t *out);

static inline int32_t nk_i4_tail(const uint8_t *a, const int8_t *qe, const int8_t *qo, size_t from, size_t db) {
    int32_t s = 0;
    for (size_t b = from; b < db; b++) s += (int32_t)(a[b] & 15) * qe[b] + (int32_t)(a[b] >> 4) * qo[b];
    return s;
}

static void nk_i4_rows_generic(const uint8_t *P, size_t db, const size_t *rows, size_t m, const int8_t *qe,
                               const int8_t *qo, int32_t *out) {
    for (size_t t = 0; t < m; t++) {
        const uint8_t *a = P + rows[t] * db;
        int32_t s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t b = 0; b < db; b++) s += (int32_t)(a[b] & 15) * qe[b] + (int32_t)(a[b] >> 4) * qo[b];
        out[t] = s;
    }
}

static inline int32_t nk_i8_tail(const int8_t *a, const int8_t *qq, size_t from, size_t d) {
    int32_t s = 0;
    for (size_t j = from; j < d; j++) s += (int32_t)a[j] * (int32_t)qq[j];
    return s;
}

#if !defined(NK_NO_CLONES) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && \
    !defined(_MSC_VER) && (defined(__clang__) || __GNUC__ >= 11)
#define NK_HAVE_I8_DISPATCH 1
#include <immintrin.h>

/* four 8-lane int32 sums -> one vector of the four totals */
__attribute__((target("avx2"))) static inline __m128i nk_hsum4_256(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    const __m256i abcd = _mm256_hadd_epi32(ab, cd);
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

__attribute__((target("avx2"))) static inline int32_t nk_hsum_256(__m256i a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

#define NK_T512 __attribute__((target("avx2,avx512f,avx512bw,avx512vnni")))

NK_T512 static inline __m256i nk_fold_512(__m512i a) {
    return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
}

NK_T512 static inline __m128i nk_hsum4_512(__m512i a, __m512i b, __m512i c, __m512i d) {
    return nk_hsum4_256(nk_fold_512(a), nk_fold_512(b), nk_fold_512(c), nk_fold_512(d));
}

NK_T512 static inline int32_t nk_hsum_512(__m512i a) { return nk_hsum_256(nk_fold_512(a)); }

/* sum of the query codes over [0, to), times 128: the bias that x ^ 0x80 = x + 128 adds */
static inline int32_t nk_i8_bias(const int8_t *qq, size_t to) {
    int32_t s = 0;
    for (size_t j = 0; j < to; j++) s += qq[j];
    return 128 * s;
}

#define NK_LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define NK_LD512(p) _mm512_loadu_si512((const void *)(p))

/* The body of an int8 rows routine: four rows at a time share each query load (four
 * independent accumulators), then one at a time; STEP(acc, x, qv) adds x . qv per lane; BIAS
 * is what the step adds per row beyond x . qq over the vector part; the tail is scalar. */
#define NK_I8_BODY(VEC, BYTES, ZERO, LOAD, STEP, HSUM4, HSUM1, BIAS)                                   \
    const size_t dv = d & ~(size_t)(BYTES - 1);                                                        \
    const int32_t bias = BIAS;                                                                         \
    size_t t = 0;                                                                                      \
    for (; t + 4 <= m; t += 4) {                                                                       \
        const int8_t *a0 = Q + rows[t] * d, *a1 = Q + rows[t + 1] * d, *a2 = Q + rows[t + 2] * d,      \
                     *a3 = Q + rows[t + 3] * d;                                                        \
        VEC s0 = ZERO, s1 = s0, s2 = s0, s3 = s0;                                                      \
        for (size_t j = 0; j < dv; j += BYTES) {                                                       \
            const VEC qv = LOAD(qq + j);                                                               \
            s0 = STEP(s0, LOAD(a0 + j), qv);                                                           \
            s1 = STEP(s1, LOAD(a1 + j), qv);                                                           \
            s2 = STEP(s2, LOAD(a2 + j), qv);                                                           \
            s3 = STEP(s3, LOAD(a3 + j), qv);                                                           \
        }                                                                                              \
        _mm_storeu_si128((__m128i *)(out + t), _mm_sub_epi32(HSUM4(s0, s1, s2, s3), _mm_set1_epi32(bias))); \
        if (dv < d) {                                                                                  \
            out[t] += nk_i8_tail(a0, qq, dv, d);                                                       \
            out[t + 1] += nk_i8_tail(a1, qq, dv, d);                                                   \
            out[t + 2] += nk_i8_tail(a2, qq, dv, d);                                                   \
            out[t + 3] += nk_i8_tail(a3, qq, dv, d);                                                   \
        }                                                                                              \
    }                                                                                                  \
    for (; t < m; t++) {                                                                               \
        const int8_t *a = Q + rows[t] * d;                                                             \
        VEC s = ZERO;                                                                                  \
        for (size_t j = 0; j < dv; j += BYTES) s = STEP(s, LOAD(a + j), LOAD(qq + j));                 \
        out[t] = HSUM1(s) - bias + nk_i8_tail(a, qq, dv, d);                                           \
    }

/* avx2: vpmaddubsw(|x|, sign(qq, x)) = pairwise x * qq in int16 (|x| <= 128, |qq| <= 127: no
 * saturation), vpmaddwd with ones to int32 */
__attribute__((target("avx2"))) static inline __m256i nk_i8_avx2_step(__m256i acc, __m256i x, __m256i qv) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(qv, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

__attribute__((target("avx2"))) static void nk_i8_rows_avx2(const int8_t *Q, size_t d, const size_t *rows,
                                                            size_t m, const int8_t *qq, int32_t *out) {
    NK_I8_BODY(__m256i, 32, _mm256_setzero_si256(), NK_LD256, nk_i8_avx2_step, nk_hsum4_256, nk_hsum_256, 0)
}

/* vnni: (x ^ 0x80) is x + 128 as an unsigned byte, so vpdpbusd(acc, x ^ 0x80, qq) adds
 * x . qq + 128 sum(qq): one instruction per 32 / 64 bytes, the bias taken off once per row */
__attribute__((target("avx2,avxvnni"))) static inline __m256i nk_i8_vnni_step(__m256i acc, __m256i x, __m256i qv) {
    return _mm256_dpbusd_avx_epi32(acc, _mm256_xor_si256(x, _mm256_set1_epi8((char)0x80)), qv);
}

__attribute__((target("avx2,avxvnni"))) static void nk_i8_rows_avxvnni(const int8_t *Q, size_t d,
                                                                       const size_t *rows, size_t m,
                                                                       const int8_t *qq, int32_t *out) {
    NK_I8_BODY(__m256i, 32, _mm256_setzero_si256(), NK_LD256, nk_i8_vnni_step, nk_hsum4_256, nk_hsum_256,
               nk_i8_bias(qq, d & ~(size_t)31))
}

NK_T512 static inline __m512i nk_i8_vnni512_step(__m512i acc, __m512i x, __m512i qv) {
    return _mm512_dpbusd_epi32(acc, _mm512_xor_si512(x, _mm512_set1_epi8((char)0x80)), qv);
}

NK_T512 static void nk_i8_rows_avx512vnni(const int8_t *Q, size_t d, const size_t *rows, size_t m,
                                          const int8_t *qq, int32_t *out) {
    NK_I8_BODY(__m512i, 64, _mm512_setzero_si512(), NK_LD512, nk_i8_vnni512_step, nk_hsum4_512, nk_hsum_512,
               nk_i8_bias(qq, d & ~(size_t)63))
}

/* int4 x int8: nibbles are unsigned (0..15), so they go straight into vpdpbusd / vpmaddubsw
 * (pairwise int16 sums <= 2 * 15 * 127: no saturation). Four rows at a time as above. */
#define NK_I4_BODY(VEC, BYTES, ZERO, LOAD, NIB_LO, NIB_HI, STEP, HSUM4, HSUM1)                          \
    const size_t dv = db & ~(size_t)(BYTES - 1);                                                          \
    size_t t = 0;                                                                                         \
    for (; t + 4 <= m; t += 4) {                                                                          \
        const uint8_t *a0 = P + rows[t] * db, *a1 = P + rows[t + 1] * db, *a2 = P + rows[t + 2] * db,     \
                      *a3 = P + rows[t + 3] * db;                                                         \
        VEC s0 = ZERO, s1 = s0, s2 = s0, s3 = s0;                                                         \
        for (size_t b = 0; b < dv; b += BYTES) {                                                          \
            const VEC ev = LOAD(qe + b), ov = LOAD(qo + b);                                               \
            VEC x;                                                                                        \
            x = LOAD(a0 + b);                                                                             \
            s0 = STEP(STEP(s0, NIB_LO(x), ev), NIB_HI(x), ov);                                            \
            x = LOAD(a1 + b);                                                                             \
            s1 = STEP(STEP(s1, NIB_LO(x), ev), NIB_HI(x), ov);                                            \
            x = LOAD(a2 + b);                                                                             \
            s2 = STEP(STEP(s2, NIB_LO(x), ev), NIB_HI(x), ov);                                            \
            x = LOAD(a3 + b);                                                                             \
            s3 = STEP(STEP(s3, NIB_LO(x), ev), NIB_HI(x), ov);                                            \
        }                                                                                                 \
        _mm_storeu_si128((__m128i *)(out + t), HSUM4(s0, s1, s2, s3));                                    \
        if (dv < db) {                                                                                    \
            out[t] += nk_i4_tail(a0, qe, qo, dv, db);                                                     \
            out[t + 1] += nk_i4_tail(a1, qe, qo, dv, db);                                                 \
            out[t + 2] += nk_i4_tail(a2, qe, qo, dv, db);                                                 \
            out[t + 3] += nk_i4_tail(a3, qe, qo, dv, db);                                                 \
        }                                                                                                 \
    }                                                                                                     \
    for (; t < m; t++) {                                                                                  \
        const uint8_t *a = P + rows[t] * db;                                                              \
        VEC s = ZERO;                                                                                     \
        for (size_t b = 0; b < dv; b += BYTES) {                                                          \
            const VEC x = LOAD(a + b);                                                                    \
            s = STEP(STEP(s, NIB_LO(x), LOAD(qe + b)), NIB_HI(x), LOAD(qo + b));                          \
        }                                                                                                 \
        out[t] = HSUM1(s) + nk_i4_tail(a, qe, qo, dv, db);                                                \
    }

#define NK_LO256(x) _mm256_and_si256(x, _mm256_set1_epi8(15))
#define NK_HI256(x) _mm256_and_si256(_mm256_srli_epi16(x, 4), _mm256_set1_epi8(15))

__attribute__((target("avx2"))) static inline __m256i nk_i4_avx2_step(__m256i acc, __m256i u, __m256i q) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1)));
}

__attribute__((target("avx2"))) static void nk_i4_rows_avx2(const uint8_t *P, size_t db, const size_t *rows,
                                                            size_t m, const int8_t *qe, const int8_t *qo,
                                                            int32_t *out) {
    NK_I4_BODY(__m256i, 32, _mm256_setzero_si256(), NK_LD256, NK_LO256, NK_HI256, nk_i4_avx2_step, nk_hsum4_256,
               nk_hsum_256)
}

__attribute__((target("avx2,avxvnni"))) static inline __m256i nk_i4_vnni_step(__m256i acc, __m256i u, __m256i q) {
    return _mm256_dpbusd_avx_epi32(acc, u, q);
}

__attribute__((target("avx2,avxvnni"))) static void nk_i4_rows_avxvnni(const uint8_t *P, size_t db,
                                                                       const size_t *rows, size_t m,
                                                                       const int8_t *qe, const int8_t *qo,
                                                                       int32_t *out) {
    NK_I4_BODY(__m256i, 32, _mm256_setzero_si256(), NK_LD256, NK_LO256, NK_HI256, nk_i4_vnni_step, nk_hsum4_256,
               nk_hsum_256)
}

#define NK_LO512(x) _mm512_and_si512(x, _mm512_set1_epi8(15))
#define NK_HI512(x) _mm512_and_si512(_mm512_srli_epi16(x, 4), _mm512_set1_epi8(15))

NK_T512 static inline __m512i nk_i4_vnni512_step(__m512i acc, __m512i u, __m512i q) {
    return _mm512_dpbusd_epi32(acc, u, q);
}

NK_T512 static void nk_i4_rows_avx512vnni(const uint8_t *P, size_t db, const size_t *rows, size_t m,
                                          const int8_t *qe, const int8_t *qo, int32_t *out) {
    NK_I4_BODY(__m512i, 64, _mm512_setzero_si512(), NK_LD512, NK_LO512, NK_HI512, nk_i4_vnni512_step, nk_hsum4_512,
               nk_hsum_512)
}
#else
#define NK_HAVE_I8_DISPATCH 0
#endif

typedef struct {
    const char *name;
    nk_i8_rows_fn fn;
    nk_i4_rows_fn fn4;
    int supported;
} nk_i8_impl;

static nk_i8_impl nk_i8_impls[4];
static size_t nk_i8_nimpl = 0;
static nk_i8_rows_fn nk_i8_rows = nk_i8_rows_generic;
static nk_i4_rows_fn nk_i4_rows = nk_i4_rows_generic;
static const char *nk_i8_name = "generic";

/* Fills the table of paths (best first) and picks the best one this CPU and OS support. */
void nk_i8_dispatch_init(void) {
    size_t c = 0;
#if NK_HAVE_I8_DISPATCH
    __builtin_cpu_init();
    nk_i8_impls[c++] = (nk_i8_impl){"avx512-vnni", nk_i8_rows_avx512vnni, nk_i4_rows_avx512vnni,
                                    __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                        __builtin_cpu_supports("avx512vnni")};
    nk_i8_impls[c++] = (nk_i8_impl){"avx-vnni", nk_i8_rows_avxvnni, nk_i4_rows_avxvnni,
                                    __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni")};
    nk_i8_impls[c++] = (nk_i8_impl){"avx2", nk_i8_rows_avx2, nk_i4_rows_avx2, __builtin_cpu_supports("avx2")};
#endif
    nk_i8_impls[c++] = (nk_i8_impl){"generic", nk_i8_rows_generic, nk_i4_rows_generic, 1};
    nk_i8_nimpl = c;
    nk_i8_select(NULL);
}

const char *nk_i8_select(const char *name) {
    for (size_t i = 0; i < nk_i8_nimpl; i++) {
        if (nk_i8_impls[i].supported && (name == NULL || strcmp(name, nk_i8_impls[i].name) == 0)) {
            nk_i8_rows = nk_i8_impls[i].fn;
            nk_i4_rows = nk_i8_impls[i].fn4;
            nk_i8_name = nk_i8_impls[i].name;
            return nk_i8_name;
        }
    }
    return NULL;
}

const char *nk_i8_isa(void) { return nk_i8_name; }

size_t nk_i8_paths(const char **names, int *supported, size_t cap) {
    size_t i = 0;
    for (; i < nk_i8_nimpl && i < cap; i++) {
        names[i] = nk_i8_impls[i].name;
        supported[i] = nk_i8_impls[i].supported;
    }
    return i;
}

/* Up to NK_I8_BLOCK kept rows of [*next, n) (advancing *next); the filter is evaluated
 * without branches on its outcome (a random filter would mispredict on every other row). */
static inline size_t nk_next_rows(const nk_filter64 *f, size_t n, size_t *next, size_t *rows) {
    size_t i = *next, m = 0;
    if (f->mask == NULL && f->values == NULL) {
        for (; i < n && m < NK_I8_BLOCK; i++) rows[m++] = i;
    } else if (f->mask == NULL) {
        const double *v = f->values, mv = f->min_value;
        for (; i < n && m < NK_I8_BLOCK; i++) {
            rows[m] = i;
            m += (size_t)(v[i] >= mv);
        }
    } else if (f->values == NULL) {
        const uint8_t *mk = f->mask;
        for (; i < n && m < NK_I8_BLOCK; i++) {
            rows[m] = i;
            m += (size_t)(mk[i] != 0);
        }
    } else {
        const uint8_t *mk = f->mask;
        const double *v = f->values, mv = f->min_value;
        for (; i < n && m < NK_I8_BLOCK; i++) {
            rows[m] = i;
            m += (size_t)((mk[i] != 0) & (v[i] >= mv));
        }
    }
    *next = i;
    return m;
}

/* Up to NK_I8_BLOCK kept rows of sel[*next .. nsel) (advancing *next): a row list in any order. */
static inline size_t nk_sel_rows(const nk_filter64 *f, const int64_t *sel, size_t nsel, size_t *next,
                                 size_t *rows) {
    size_t j = *next, m = 0;
    const uint8_t *mk = f->mask;
    const double *v = f->values, mv = f->min_value;
    for (; j < nsel && m < NK_I8_BLOCK; j++) {
        const size_t i = (size_t)sel[j];
        rows[m] = i;
        m += (size_t)((mk == NULL || mk[i] != 0) & (v == NULL || v[i] >= mv));
    }
    *next = j;
    return m;
}

/* Ask for the lines of rows sel[0 .. m) of a (n, rb)-byte matrix: listed rows are scattered. */
static inline void nk_prefetch_rows(const char *base, size_t rb, const int64_t *sel, size_t m) {
    for (size_t t = 0; t < m; t++)
        for (size_t o = 0; o < rb; o += 64) __builtin_prefetch(base + (size_t)sel[t] * rb + o);
}

NK_CLONES
long long nk_topk_q_rerank(int bits, const void *Qv, const float *scales, const float *M, size_t n, size_t d,
                           const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                           size_t nranges, const int64_t *sel, size_t nsel, int64_t *out_idx,
                           float *out_score) {
    if (k > n) k = n;
    if (k == 0) return 0;
    if (cand < k) cand = k;
    if (cand > n) cand = n;
    const nk_i8_rows_fn rows8 = nk_i8_rows;
    const nk_i4_rows_fn rows4 = nk_i4_rows;
    const size_t db = (d + 1) / 2; /* bytes per packed int4 row */
    /* one block: candidate heap, result heap, row block, sums, scores, query codes (all, even, odd) */
    const size_t bytes = cand * sizeof(nk_item) + k * sizeof(nk_item) + NK_I8_BLOCK * sizeof(size_t) +
                         NK_I8_BLOCK * sizeof(int32_t) + NK_I8_BLOCK * sizeof(float) + d + 2 * db + 64;
    char *mem = (char *)malloc(bytes);
    if (mem == NULL) return -1;
    nk_item *heap = (nk_item *)mem;
    nk_item *best = heap + cand;
    size_t *rows = (size_t *)(best + k);
    int32_t *dots = (int32_t *)(rows + NK_I8_BLOCK);
    float *sc = (float *)(dots + NK_I8_BLOCK);
    int8_t *qq = (int8_t *)(sc + NK_I8_BLOCK);
    int8_t *qe = qq + d, *qo = qe + db;
    float qs;
    nk_quantize_i8(q, 1, d, qq, &qs);
    int32_t bias = 0; /* int4 codes carry an offset of 8: x . qq = code . qq - 8 sum(qq) */
    if (bits == 4) {
        for (size_t b = 0; b < db; b++) {
            qe[b] = qq[2 * b];
            qo[b] = 2 * b + 1 < d ? qq[2 * b + 1] : 0;
            bias += qe[b] + qo[b];
        }
        bias *= 8;
    }
    const int8_t *Q8 = (const int8_t *)Qv;
    const uint8_t *Q4 = (const uint8_t *)Qv;
    size_t size = 0, m;
    /* rows arrive in increasing order, so a row that only ties the heap's worst never enters:
     * once the heap is full a plain `s > worst` decides (NaN never passes; a NaN worst is
     * beaten by anything that is not NaN, via the full comparison) */
    float worst = 0.0f;
    int worst_nan = 0;
    const int64_t whole[2] = {0, (int64_t)n};
    if (ranges == NULL) {
        ranges = whole;
        nranges = 1;
    }
    const size_t rb = bits == 4 ? db : d; /* bytes per code row */
    const char *codes = bits == 4 ? (const char *)Q4 : (const char *)Q8;
    size_t count = sel != NULL ? nsel : 0; /* rows the scan may read */
    for (size_t g = 0; sel == NULL && g < nranges; g++) count += (size_t)(ranges[2 * g + 1] - ranges[2 * g]);
    if (cand >= count) { /* every row that passes is a candidate: score them exactly, no proposal */
        size_t nbest = 0;
        for (size_t g = 0; g < (sel != NULL ? 1 : nranges); g++) {
            size_t next = sel != NULL ? 0 : (size_t)ranges[2 * g];
            const size_t end = sel != NULL ? nsel : (size_t)ranges[2 * g + 1];
            while ((m = sel != NULL ? nk_sel_rows(f, sel, end, &next, rows) : nk_next_rows(f, end, &next, rows)) > 0) {
                size_t t = 0;
                for (; t + 4 <= m; t += 4) {
                    nk_dot4_f32(M, d, rows + t, q, sc);
                    for (size_t u = 0; u < 4; u++) {
                        nk_item it = {sc[u], (int64_t)rows[t + u]};
                        nk_push(best, &nbest, k, it);
                    }
                }
                for (; t < m; t++) {
                    nk_item it = {nk_dot(M + rows[t] * d, q, d), (int64_t)rows[t]};
                    nk_push(best, &nbest, k, it);
                }
            }
        }
        long long res = nk_finish(best, nbest, out_idx, out_score);
        free(mem);
        return res;
    }
    if (sel != NULL) { /* a row list replaces the ranges; the first block's lines asked for now */
        nranges = 1;
        nk_prefetch_rows(codes, rb, sel, nsel < NK_I8_BLOCK ? nsel : NK_I8_BLOCK);
    }
    for (size_t g = 0; g < nranges; g++) {
        size_t next = sel != NULL ? 0 : (size_t)ranges[2 * g];
        const size_t end = sel != NULL ? nsel : (size_t)ranges[2 * g + 1];
        while ((m = sel != NULL ? nk_sel_rows(f, sel, end, &next, rows) : nk_next_rows(f, end, &next, rows)) > 0) {
            if (sel != NULL) /* the next block's lines, asked for while this one is scored */
                nk_prefetch_rows(codes, rb, sel + next, end - next < NK_I8_BLOCK ? end - next : NK_I8_BLOCK);
            if (bits == 4)
                rows4(Q4, db, rows, m, qe, qo, dots);
            else
                rows8(Q8, d, rows, m, qq, dots);
            for (size_t t = 0; t < m; t++) sc[t] = (float)(dots[t] - bias) * (scales[rows[t]] * qs);
            for (size_t t = 0; t < m; t++) {
                /* in row order a tie with the worst never enters (`>`); a row list may come in any
                 * order, so a tie goes to nk_push's full comparison (lower row wins) */
                if (size < cand || worst_nan || sc[t] > worst || (sel != NULL && sc[t] == worst)) {
                    nk_item it = {sc[t], (int64_t)rows[t]};
                    nk_push(heap, &size, cand, it);
                    worst = heap[0].s;
                    worst_nan = worst != worst;
                }
            }
        }
    }
    size_t nbest = 0;
    for (size_t c = 0; c < size; c++) /* the candidates' float32 rows are scattered: ask for them all first */
        for (size_t o = 0; o < d; o += 16) __builtin_prefetch(M + (size_t)heap[c].i * d + o);
    for (size_t c = 0; c < size; c++) {
        const size_t r = (size_t)heap[c].i;
        nk_item it = {nk_dot(M + r * d, q, d), (int64_t)r};
        nk_push(best, &nbest, k, it);
    }
    long long res = nk_finish(best, nbest, out_idx, out_score);
    free(mem);
    return res;
}

long long nk_ivf_topk(const int8_t *Q, const float *scales, const float *M, size_t n, size_t d, const float *q,
                      size_t k, size_t cand, size_t exact_rows, const float *C, const float *norms,
                      const int64_t *sizes, const int64_t *offsets, size_t L, size_t ordered, double need,
                      const nk_filter64 *f, int64_t *out_idx, float *out_score, int64_t *rows_read) {
    int64_t *lists = (int64_t *)malloc((L + 1) * sizeof(int64_t));
    int64_t *runs = (int64_t *)malloc(2 * (L + 1) * sizeof(int64_t));
    if (lists == NULL || runs == NULL) {
        free(lists);
        free(runs);
        return -1;
    }
    long long res = nk_ivf_probe(C, norms, sizes, L, d, q, need, lists);
    if (res >= 0) {
        size_t r = 0, count = 0;
        for (long long t = 0; t < res; t++) { /* the lists' runs of rows, clipped to the ordered rows */
            const int64_t j = lists[t];
            const size_t lo = (size_t)offsets[j] < ordered ? (size_t)offsets[j] : ordered;
            const size_t hi = (size_t)offsets[j + 1] < ordered ? (size_t)offsets[j + 1] : ordered;
            runs[2 * r] = (int64_t)lo;
            runs[2 * r + 1] = (int64_t)hi;
            r++;
            count += hi - lo;
        }
        if (ordered < n) { /* the rows appended since: scanned exactly */
            runs[2 * r] = (int64_t)ordered;
            runs[2 * r + 1] = (int64_t)n;
            r++;
            count += n - ordered;
        }
        *rows_read = (int64_t)count;
        if (count <= exact_rows) cand = count > k ? count : k;
        res = nk_topk_q_rerank(8, Q, scales, M, n, d, q, k, cand, f, runs, r, NULL, 0, out_idx, out_score);
    }
    free(lists);
    free(runs);
    return res;
}

long long nk_topk_i8_rerank(const int8_t *Q, const float *scales, const float *M, size_t n, size_t d,
                            const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                            size_t nranges, int64_t *out_idx, float *out_score) {
    return nk_topk_q_rerank(8, Q, scales, M, n, d, q, k, cand, f, ranges, nranges, NULL, 0, out_idx,
                            out_score);
}

long long nk_topk_i4_rerank(const uint8_t *P, const float *scales, const float *M, size_t n, size_t d,
                            const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                            size_t nranges, int64_t *out_idx, float *out_score) {
    return nk_topk_q_rerank(4, P, scales, M, n, d, q, k, cand, f, ranges, nranges, NULL, 0, out_idx,
                            out_score);
}

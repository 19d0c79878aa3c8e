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

/* Native kernels of swarm_sona: plain C, no Python. The bindings live in _native.c.
 *
 * Semantics are those of swarm_sona/kernels/reference.py (the numpy reference).
 * Every pointer argument is a C-contiguous float32 (or the stated type) block of exactly the
 * stated size; the bindings check sizes before calling, so the kernels trust them.
 *
 * Per-CPU code without -march=native: on x86_64 Linux/glibc with GCC >= 12 the outer
 * kernels are compiled twice (x86-64-v3 = AVX2+FMA, and the baseline) with
 * target_clones, and the loader picks one at start-up (ifunc). Elsewhere (aarch64, macOS,
 * musl, MSVC, clang) they are compiled once for the baseline of the target.
 * Reductions use `#pragma omp simd reduction` (needs -fopenmp-simd; ignored otherwise).
 */
#ifndef NK_KERNELS_H
#define NK_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#if !defined(NK_NO_CLONES) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
    defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define NK_HAVE_CLONES 1
#define NK_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NK_HAVE_CLONES 0
#define NK_CLONES
#endif

#if defined(_MSC_VER)
#define NK_RESTRICT __restrict
#else
#define NK_RESTRICT __restrict__
#endif

/* The instruction set the cloned kernels run with on this CPU (static string). */
const char *nk_isa(void);

/* ---- LoRA (nk_linalg.c) ---------------------------------------------------------------- */

/* Y[i] = (add_input ? X[i] : 0) + scale * B (A X[i]) for n rows.
 * X (n, d_in), A (r, d_in), B (d_out, r), Y (n, d_out); add_input needs d_out == d_in.
 * Scratch: z (r floats); bt (r * d_out floats, used only when r > 2, may be NULL otherwise). */
/* 1 when every one of the n floats is finite (no NaN, no inf), 0 otherwise */
int nk_all_finite(const float *x, size_t n);
/* 1 when the float32 sum of squares of the n floats is finite (no NaN/inf, no overflow) */
int nk_sumsq_finite(const float *x, size_t n);
void nk_lora_rows(const float *X, size_t n, size_t d_in, const float *A, size_t r,
                  const float *B, size_t d_out, float scale, int add_input, float *Y, float *z,
                  float *bt);

/* gA = scale * sum_rows outer(B^T g, x), gB = scale * sum_rows outer(g, A x).
 * X (n, d_in), G (n, d_out), gA (r, d_in), gB (d_out, r).
 * Scratch: z, gb (r floats each); bt, gbt (r * d_out floats each). */
void nk_lora_grad(const float *X, const float *G, size_t n, size_t d_in, size_t d_out,
                  const float *A, const float *B, size_t r, float scale, float *gA, float *gB,
                  float *z, float *gb, float *bt, float *gbt);

/* One instant-loop SGD step on MicroLoRA + value/router heads, in place (see reference.py).
 * h (d), A (r, d), B (d, r), wv (d), bv (1), Wr (M, d), br (M); arm < 0: no router label.
 * Scratch: z (r floats), h2 (d floats), gh (d doubles), bg (r doubles).
 * Writes v and u (u = NaN when arm < 0). */
void nk_instant_step(const float *h, size_t d, float *A, float *B, size_t r, double scale,
                     float *wv, float *bv, float *Wr, float *br, size_t M, long long arm,
                     double reward, double success, double lr, int train_a, double clip,
                     float *z, float *h2, double *gh, double *bg, double *v, double *u);

/* Instant-loop steps for n rows of H (n, d) in order, each exactly nk_instant_step on the
 * parameters as the previous row left them. arms (n) int64, rs (n, 2) doubles (reward,
 * success); writes vu (n, 2) doubles (v, u). Same scratch as nk_instant_step. */
void nk_instant_steps(const float *H, size_t n, size_t d, float *A, float *B, size_t r, double scale,
                      float *wv, float *bv, float *Wr, float *br, size_t M, const int64_t *arms,
                      const double *rs, double lr, int train_a, double clip, float *z, float *h2,
                      double *gh, double *bg, double *vu);

/* The router's diagonal Bayesian logistic update for n rows in order (swarm_sona.routing.posterior):
 * row k updates model i = idx[k] (0 <= i < M) from features X[k] (D) and label y[k]:
 *   z = W[i].x;  p = sigmoid(z);  P[i] += x^2 p (1 - p);  V[i] = 1 / P[i];  W[i] += lr (y - p) x V[i]
 * W, P, V (M, D) doubles, in place. Returns -1 when every row was applied, else the first row
 * whose z is not finite (that row and the later ones left unapplied). */
long long nk_bandit_update(double *W, double *P, double *V, size_t M, size_t D, const int64_t *idx,
                           const double *X, const double *y, size_t n, double lr, double decay, const double *AP,
                           const double *AE);

/* The inference forward of one task token (no steps) through the fused one-token block, then
 * MicroLoRA and the value/router heads (reference.forward_one):
 *   h1 = e + LN(e) WovT + bov;  u = relu(LN(h1) WinT + bin);  h2 = h1 + u WoutT + bout
 *   h = LN(h2) / sqrt(d);  hm = h + scale B (A h);  vl = wv.hm + bv;  rl = Wr hm + br;  rp = sigmoid(rl)
 * LN(x) = (x - mean) / sqrt(var + eps) (no affine; mean and var accumulated in double).
 * e (d), WovT (d, d), bov (d), WinT (d, H), bin (H), WoutT (H, d), bout (d), A (r, d), B (d, r),
 * wv (d), Wr (M, d), br (M). Writes h, hm (d), rl, rp (M) and *vl.
 * Scratch: t, h1 (d floats each), u (H floats), z (r floats), bt (r * d floats when r > 2, else unused). */
void nk_forward_one(const float *e, size_t d, size_t H, const float *WovT, const float *bov,
                    const float *WinT, const float *bin, const float *WoutT, const float *bout,
                    const float *A, const float *B, size_t r, float scale, const float *wv, float bv,
                    const float *Wr, const float *br, size_t M, double eps, float *h, float *hm,
                    float *rl, float *rp, double *vl, float *t, float *h1, float *u, float *z, float *bt);

/* ---- EWC++ (nk_linalg.c) --------------------------------------------------------------- */

/* F <- (1 - a) F + a g2 over n elements. */
void nk_fisher_update(float *F, const float *g2, size_t n, double a);

/* g = lam F (theta - anchor); returns (lam / 2) sum F (theta - anchor)^2 (in double). */
double nk_ewc_penalty_grad(const float *theta, const float *anchor, const float *F, size_t n,
                           double lam, float *g);

/* ---- search (nk_search.c) -------------------------------------------------------------- */

/* Row filter shared by the top-k kernels: a row is kept when mask is NULL or mask[i] != 0,
 * and values is NULL or values[i] >= min_value (compared in float32). */
typedef struct {
    const uint8_t *mask;
    const float *values;
    float min_value;
} nk_filter;

/* Top-k rows of M (n, d) by dot product with q (d); best first, ties to the lower row,
 * NaN scores last. Writes up to k (index, score) pairs; returns how many (-1: out of memory). */
long long nk_topk_f32(const float *M, size_t n, size_t d, const float *q, size_t k,
                      const nk_filter *f, int64_t *out_idx, float *out_score);

/* Same over an int8 matrix Q (n, d) with per-row scales: score = scales[i] * (Q[i] . q). */
long long nk_topk_i8(const int8_t *Q, const float *scales, size_t n, size_t d, const float *q,
                     size_t k, const nk_filter *f, int64_t *out_idx, float *out_score);

/* Symmetric per-row int8 quantisation of M (n, d) into Q (n, d) and scales (n). */
void nk_quantize_i8(const float *M, size_t n, size_t d, int8_t *Q, float *scales);

/* Symmetric per-row int4 of a finite M (n, d) into P (n, (d + 1) / 2) and scales (n), as
 * reference.quantize_int4: scale = max|x| / 7 (1 for a zero row), code = clip(rint(x / scale),
 * -7, 7) + 8, byte b = code(2b) | code(2b + 1) << 4 (8 pads an odd d). */
void nk_quantize_i4(const float *M, size_t n, size_t d, uint8_t *P, float *scales);

/* Row filter of the two-stage search: kept when mask is NULL or mask[i] != 0, and values is
 * NULL or values[i] >= min_value compared in float64 (the bank's reward column, so that the
 * cache decides exactly as the store's float64 payload range filter does). */
typedef struct {
    const uint8_t *mask;
    const double *values;
    double min_value;
} nk_filter64;

/* Two-stage top-k (see reference.topk_int8_rerank): the kept rows are ranked by
 * (float)(Q[i] . qq) * (scales[i] * qs), with (qq, qs) the query quantised as one row by
 * nk_quantize_i8 (integer dot products, exact); the best `cand` (at least k) are re-scored as
 * M[i] . q in float32 and the best k of those written, best first, ties to the lower row, NaN
 * last. Q (n, d) int8, scales (n), M (n, d), q (d, finite). ranges (NULL: all rows) holds
 * nranges [lo, hi) pairs, increasing and disjoint within [0, n]: only rows inside them are
 * considered. Returns the count (-1: no memory). */
long long nk_topk_i8_rerank(const int8_t *Q, const float *scales, const float *M, size_t n, size_t d,
                            const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                            size_t nranges, int64_t *out_idx, float *out_score);

/* The same with int4 codes (see reference.topk_int4_rerank): P (n, (d + 1) / 2) packed, byte b
 * = code(2b) | code(2b + 1) << 4 with code = clip(rint(x / scale), -7, 7) + 8, scales (n):
 * approx = (float)(sum (code - 8) * qq) * (scales[i] * qs). */
long long nk_topk_i4_rerank(const uint8_t *P, const float *scales, const float *M, size_t n, size_t d,
                            const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                            size_t nranges, int64_t *out_idx, float *out_score);

/* Common core of the two (bits 8 or 4). sel (NULL: none) replaces the ranges with a list of nsel
 * row numbers in [0, n), in any order, each at most once; the result does not depend on their order. */
long long nk_topk_q_rerank(int bits, const void *Q, const float *scales, const float *M, size_t n, size_t d,
                           const float *q, size_t k, size_t cand, const nk_filter64 *f, const int64_t *ranges,
                           size_t nranges, const int64_t *sel, size_t nsel, int64_t *out_idx, float *out_score);

/* The int8 (and int4) dot-product paths of the two-stage searches (x86_64: avx512-vnni,
 * avx-vnni, avx2, generic; elsewhere generic). nk_i8_dispatch_init picks the best the CPU supports (call once
 * at start-up); nk_i8_select(name) switches to a supported path by name (NULL: the best) and
 * returns its name, or NULL when there is no such supported path (nothing changes); nk_i8_isa
 * names the active path; nk_i8_paths lists every path compiled in and whether it runs here. */
void nk_i8_dispatch_init(void);
const char *nk_i8_select(const char *name);
const char *nk_i8_isa(void);
size_t nk_i8_paths(const char **names, int *supported, size_t cap);

/* Nearest centroid by squared Euclidean distance (ties to the lower centroid), computed as
 * the reference does: (|x|^2 - 2 x.c) + |c|^2 clamped at 0. X (n, d), C (k, d) with k >= 1
 * when n > 0. Returns 0, or -1 when out of memory. */
int nk_kmeans_assign(const float *X, size_t n, size_t d, const float *C, size_t k,
                     int64_t *labels, float *dist2);

/* ivf probe: the lists of centroids C (L, d) nearest q by |c|^2 - 2 c.q (norms = |c|^2; ties to
 * the lower list, NaN last), taken nearest first until their sizes sum to >= need (all lists when
 * they never do), written to out (L,) in increasing list order. Returns how many, or -1 when out
 * of memory. */
/* ivf query: nk_ivf_probe's lists as runs of rows stored in list order (list j at rows
 * offsets[j]:offsets[j + 1], non-decreasing, clipped to `ordered` <= n), plus rows [ordered, n),
 * searched by the int8 proposal + float32 re-rank with `cand` candidates, or every row of the runs
 * when they hold <= exact_rows rows. rows_read gets their row count. Returns the results' count,
 * or -1 when out of memory. */
long long nk_ivf_topk(const int8_t *Q, const float *scales, const float *M, size_t n, size_t d, const float *q,
                      size_t k, size_t cand, size_t exact_rows, const float *C, const float *norms,
                      const int64_t *sizes, const int64_t *offsets, size_t L, size_t ordered, double need,
                      const nk_filter64 *f, int64_t *out_idx, float *out_score, int64_t *rows_read);
long long nk_ivf_probe(const float *C, const float *norms, const int64_t *sizes, size_t L, size_t d,
                       const float *q, double need, int64_t *out);

/* ---- quantised linear layers (nk_quant.c) --------------------------------------------- */

/* W (d_out, d_in) flattened row-major in groups of `group` (even) entries with one float32
 * absmax each; bits 4: nf4 codes packed two per byte, low nibble first (codes: ceil(size / 2)
 * bytes at least); bits 8: int8 codes (size bytes at least). absmax: ceil(size / group). */

/* out[0..m) = entries [f0, f0 + m) of W, dequantised exactly as reference.dequantize_rows. */
void nk_q_dequant(int bits, const void *codes, const float *absmax, size_t group, size_t f0, size_t m,
                  float *out);

/* Y (n, d_out) = X (n, d_in) @ W^T. Scratch w: d_in floats. */
void nk_q_linear(int bits, const void *codes, const float *absmax, size_t group, size_t d_out, size_t d_in,
                 const float *X, size_t n, float *Y, float *w);

/* Y (n, d_in) = G (n, d_out) @ W (the input gradient of nk_q_linear). Scratch w: d_in floats. */
void nk_q_linear_t(int bits, const void *codes, const float *absmax, size_t group, size_t d_out, size_t d_in,
                   const float *G, size_t n, float *Y, float *w);

/* Picks the nf4 decoder (avx2 or generic) for this CPU; call once at start-up. nk_q_isa names it. */
void nk_q_dispatch_init(void);
const char *nk_q_isa(void);

/* ---- hashing embedder (nk_hash.c) ------------------------------------------------------ */

/* One text (lower-cased except for ASCII letters, which are folded here) into out (dim),
 * L2-normalised float32. row is scratch of dim doubles. */
void nk_hash_text(const unsigned char *s, size_t len, uint64_t dim, double w_word,
                  double w_bigram, double w_char, double *row, float *out);

/* ---- small inline helpers, inlined into each clone of their callers ------------------- */

static inline float nk_dot(const float *NK_RESTRICT a, const float *NK_RESTRICT b, size_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#endif /* NK_KERNELS_H */

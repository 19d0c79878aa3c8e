/* Linear layers over a group-wise quantised weight (see nk_kernels.h and reference.qlinear).
 *
 * W (d_out, d_in) is stored flattened row-major in groups of `group` consecutive entries, one
 * float32 absmax per group: nf4 (bits 4) packs two codes per byte, low nibble first, entry f =
 * NK_NF4[code(f)] * absmax[f / group]; int8 (bits 8) is entry f = ((float)code(f) * (1/127))
 * * absmax[f / group]. Both are exactly the float32 operations of the numpy reference, so the
 * dequantised values agree bit for bit; products differ only by summation order.
 *
 * Intrinsics, chosen once at start-up from the CPU's features (nk_q_dispatch_init): the nf4
 * decoding of 8 entries in AVX2 (vpsrlvd splits 4 bytes into 8 nibbles, two vpermps over the
 * 16 levels, vblendvps on bit 3), and the one-row product x @ W^T fused with the decoding
 * (four rows of W per pass, each group's partial sum scaled once by its absmax) in AVX2+FMA
 * (8 entries per step) or AVX-512F (16 per step: the 16 levels in one vpermps). Everything
 * else is plain C, vectorised by the compiler in the target_clones of the outer kernels.
 */
#include <string.h>

#include "nk_kernels.h"

/* The NormalFloat4 levels of QLoRA (reference.NF4_LEVELS, bit for bit). */
static const float NK_NF4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

typedef void (*nk_nf4_span_fn)(const uint8_t *P, const float *absmax, size_t group, size_t f0, size_t m,
                               float *out);

/* entries [f0, f0 + m) of an nf4 matrix, one at a time */
static void nk_nf4_span_generic(const uint8_t *P, const float *absmax, size_t group, size_t f0, size_t m,
                                float *out) {
    const size_t end = f0 + m;
    for (size_t f = f0; f < end;) {
        const size_t g = f / group;
        const size_t gend = (g + 1) * group < end ? (g + 1) * group : end;
        const float s = absmax[g];
        for (; f < gend; f++) {
            const uint8_t b = P[f >> 1];
            *out++ = NK_NF4[(f & 1) ? (b >> 4) : (b & 15)] * s;
        }
    }
}

static nk_nf4_span_fn nk_nf4_span = nk_nf4_span_generic;
static const char *nk_q_name = "generic";

#if !defined(NK_NO_CLONES) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && \
    !defined(_MSC_VER) && (defined(__clang__) || __GNUC__ >= 11)
#define NK_HAVE_Q_DISPATCH 1
#include <immintrin.h>

/* the same with 8 entries per step where a step lies inside one group and starts on a byte */
__attribute__((target("avx2"))) static void nk_nf4_span_avx2(const uint8_t *P, const float *absmax, size_t group,
                                                             size_t f0, size_t m, float *out) {
    const __m256 lo = _mm256_loadu_ps(NK_NF4), hi = _mm256_loadu_ps(NK_NF4 + 8);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), low4 = _mm256_set1_epi32(15);
    const size_t end = f0 + m;
    size_t f = f0;
    if (f & 1) { /* an odd start: one entry, then every step starts on a byte (group is even) */
        nk_nf4_span_generic(P, absmax, group, f, 1, out++);
        f++;
    }
    while (f < end) {
        const size_t g = f / group;
        const size_t gend = (g + 1) * group < end ? (g + 1) * group : end;
        const __m256 s = _mm256_set1_ps(absmax[g]);
        for (; f + 8 <= gend; f += 8, out += 8) {
            uint32_t w;
            memcpy(&w, P + (f >> 1), 4);
            const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), shifts), low4);
            const __m256 a = _mm256_permutevar8x32_ps(lo, idx), b = _mm256_permutevar8x32_ps(hi, idx);
            const __m256 v = _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
            _mm256_storeu_ps(out, _mm256_mul_ps(v, s));
        }
        if (f < gend) {
            nk_nf4_span_generic(P, absmax, group, f, gend - f, out);
            out += gend - f;
            f = gend;
        }
    }
}

/* 8 nf4 levels from 4 packed bytes (no masking: vpermps reads bits 0-2, the blend bit 3) */
__attribute__((target("avx2"))) static inline __m256 nk_nf4_dec8(const uint8_t *p, __m256 lo, __m256 hi,
                                                                 __m256i shifts) {
    uint32_t w;
    memcpy(&w, p, 4);
    const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)w), shifts);
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

__attribute__((target("avx2"))) static inline __m256 nk_i8_dec8(const int8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

__attribute__((target("avx2,fma"))) static inline float nk_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y = W x for one x, when every row starts a group (d_in % group == 0, group % 8 == 0): rows
 * four at a time (four independent chains sharing each chunk of x), each group's partial
 * sum of level * x scaled once by its absmax. */
__attribute__((target("avx2,fma"))) static void nk_q_matvec_avx2(int bits, const void *codes, const float *absmax,
                                                                 size_t group, size_t d_out, size_t d_in,
                                                                 const float *x, float *y) {
    const __m256 lo = _mm256_loadu_ps(NK_NF4), hi = _mm256_loadu_ps(NK_NF4 + 8);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const float inv = (float)(1.0 / 127.0);
    const size_t gpr = d_in / group; /* groups per row */
    const uint8_t *P = (const uint8_t *)codes;
    const int8_t *Q = (const int8_t *)codes;
    size_t i = 0;
    for (; i + 4 <= d_out; i += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t gi = 0; gi < gpr; gi++) {
            __m256 part[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            const size_t j0 = gi * group;
            for (size_t j = j0; j < j0 + group; j += 8) {
                const __m256 xc = _mm256_loadu_ps(x + j);
                for (int r = 0; r < 4; r++) {
                    const size_t f = (i + (size_t)r) * d_in + j;
                    const __m256 v = bits == 4 ? nk_nf4_dec8(P + (f >> 1), lo, hi, shifts) : nk_i8_dec8(Q + f);
                    part[r] = _mm256_fmadd_ps(v, xc, part[r]);
                }
            }
            for (int r = 0; r < 4; r++) {
                const float sc = absmax[(i + (size_t)r) * gpr + gi];
                acc[r] = _mm256_fmadd_ps(part[r], _mm256_set1_ps(bits == 4 ? sc : inv * sc), acc[r]);
            }
        }
        for (int r = 0; r < 4; r++) y[i + (size_t)r] = nk_hsum8(acc[r]);
    }
    for (; i < d_out; i++) {
        __m256 acc = _mm256_setzero_ps();
        for (size_t gi = 0; gi < gpr; gi++) {
            __m256 part = _mm256_setzero_ps();
            for (size_t j = gi * group; j < (gi + 1) * group; j += 8) {
                const size_t f = i * d_in + j;
                const __m256 v = bits == 4 ? nk_nf4_dec8(P + (f >> 1), lo, hi, shifts) : nk_i8_dec8(Q + f);
                part = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + j), part);
            }
            const float sc = absmax[i * gpr + gi];
            acc = _mm256_fmadd_ps(part, _mm256_set1_ps(bits == 4 ? sc : inv * sc), acc);
        }
        y[i] = nk_hsum8(acc);
    }
}

/* AVX-512: 16 entries per step, the 16 levels in one register (vpermps reads bits 0-3). */
#define NK_T512Q __attribute__((target("avx512f,fma")))

NK_T512Q static inline __m512 nk_nf4_dec16(const uint8_t *p, __m512 lut, __m512i shifts) {
    const __m128i b = _mm_loadl_epi64((const __m128i *)p);
    const __m512i w = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)); /* b0 b0 b1 b1 ... */
    return _mm512_permutexvar_ps(_mm512_srlv_epi32(w, shifts), lut);
}

NK_T512Q static inline __m512 nk_i8_dec16(const int8_t *q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

/* nk_q_matvec_avx2 with 16 entries per step (group % 16 == 0) */
NK_T512Q static void nk_q_matvec_avx512(int bits, const void *codes, const float *absmax, size_t group,
                                        size_t d_out, size_t d_in, const float *x, float *y) {
    const __m512 lut = _mm512_loadu_ps(NK_NF4);
    const __m512i shifts = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    const float inv = (float)(1.0 / 127.0);
    const size_t gpr = d_in / group;
    const uint8_t *P = (const uint8_t *)codes;
    const int8_t *Q = (const int8_t *)codes;
    size_t i = 0;
    for (; i + 4 <= d_out; i += 4) {
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t gi = 0; gi < gpr; gi++) {
            __m512 part[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            const size_t j0 = gi * group;
            for (size_t j = j0; j < j0 + group; j += 16) {
                const __m512 xc = _mm512_loadu_ps(x + j);
                for (int r = 0; r < 4; r++) {
                    const size_t f = (i + (size_t)r) * d_in + j;
                    const __m512 v = bits == 4 ? nk_nf4_dec16(P + (f >> 1), lut, shifts) : nk_i8_dec16(Q + f);
                    part[r] = _mm512_fmadd_ps(v, xc, part[r]);
                }
            }
            for (int r = 0; r < 4; r++) {
                const float sc = absmax[(i + (size_t)r) * gpr + gi];
                acc[r] = _mm512_fmadd_ps(part[r], _mm512_set1_ps(bits == 4 ? sc : inv * sc), acc[r]);
            }
        }
        for (int r = 0; r < 4; r++) y[i + (size_t)r] = _mm512_reduce_add_ps(acc[r]);
    }
    for (; i < d_out; i++) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t gi = 0; gi < gpr; gi++) {
            __m512 part = _mm512_setzero_ps();
            for (size_t j = gi * group; j < (gi + 1) * group; j += 16) {
                const size_t f = i * d_in + j;
                const __m512 v = bits == 4 ? nk_nf4_dec16(P + (f >> 1), lut, shifts) : nk_i8_dec16(Q + f);
                part = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + j), part);
            }
            const float sc = absmax[i * gpr + gi];
            acc = _mm512_fmadd_ps(part, _mm512_set1_ps(bits == 4 ? sc : inv * sc), acc);
        }
        y[i] = _mm512_reduce_add_ps(acc);
    }
}
#endif

typedef void (*nk_q_matvec_fn)(int bits, const void *codes, const float *absmax, size_t group, size_t d_out,
                               size_t d_in, const float *x, float *y);
/* the fused matvecs this CPU runs (NULL: none): 16 entries per step (group % 16 == 0), else 8 */
static nk_q_matvec_fn nk_q_matvec16 = NULL, nk_q_matvec8 = NULL;

void nk_q_dispatch_init(void) {
#if NK_HAVE_Q_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        nk_nf4_span = nk_nf4_span_avx2;
        nk_q_name = "avx2";
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        nk_q_matvec8 = nk_q_matvec16 = nk_q_matvec_avx2;
        nk_q_name = "avx2+fma";
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
        nk_q_matvec16 = nk_q_matvec_avx512;
        nk_q_name = "avx512f matvec (groups of 16k), avx2+fma";
    }
#endif
}

const char *nk_q_isa(void) { return nk_q_name; }

NK_CLONES
static void nk_i8_span(const int8_t *Q, const float *absmax, size_t group, size_t f0, size_t m, float *out) {
    const float inv = (float)(1.0 / 127.0); /* numpy: np.float32(1.0 / 127) */
    const size_t end = f0 + m;
    for (size_t f = f0; f < end;) {
        const size_t g = f / group;
        const size_t gend = (g + 1) * group < end ? (g + 1) * group : end;
        const float s = absmax[g];
        const int8_t *q = Q + f;
        const size_t len = gend - f;
#pragma omp simd
        for (size_t j = 0; j < len; j++) out[j] = ((float)q[j] * inv) * s;
        out += len;
        f = gend;
    }
}

void nk_q_dequant(int bits, const void *codes, const float *absmax, size_t group, size_t f0, size_t m,
                  float *out) {
    if (bits == 4)
        nk_nf4_span((const uint8_t *)codes, absmax, group, f0, m, out);
    else
        nk_i8_span((const int8_t *)codes, absmax, group, f0, m, out);
}

NK_CLONES
void nk_q_linear(int bits, const void *codes, const float *absmax, size_t group, size_t d_out, size_t d_in,
                 const float *X, size_t n, float *Y, float *w) {
    if (n == 1 && d_in % group == 0) { /* every row starts a group */
        nk_q_matvec_fn mv = group % 16 == 0 ? nk_q_matvec16 : group % 8 == 0 ? nk_q_matvec8 : NULL;
        if (mv != NULL) {
            mv(bits, codes, absmax, group, d_out, d_in, X, Y);
            return;
        }
    }
    for (size_t i = 0; i < d_out; i++) {
        nk_q_dequant(bits, codes, absmax, group, i * d_in, d_in, w);
        size_t r = 0;
        for (; r + 4 <= n; r += 4) { /* four x rows per pass: four independent sums */
            const float *x0 = X + r * d_in, *x1 = x0 + d_in, *x2 = x1 + d_in, *x3 = x2 + d_in;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (size_t j = 0; j < d_in; j++) {
                const float wj = w[j];
                s0 += wj * x0[j];
                s1 += wj * x1[j];
                s2 += wj * x2[j];
                s3 += wj * x3[j];
            }
            Y[r * d_out + i] = s0;
            Y[(r + 1) * d_out + i] = s1;
            Y[(r + 2) * d_out + i] = s2;
            Y[(r + 3) * d_out + i] = s3;
        }
        for (; r < n; r++) Y[r * d_out + i] = nk_dot(w, X + r * d_in, d_in);
    }
}

NK_CLONES
void nk_q_linear_t(int bits, const void *codes, const float *absmax, size_t group, size_t d_out, size_t d_in,
                   const float *G, size_t n, float *Y, float *w) {
    memset(Y, 0, n * d_in * sizeof(float));
    for (size_t i = 0; i < d_out; i++) {
        nk_q_dequant(bits, codes, absmax, group, i * d_in, d_in, w);
        for (size_t r = 0; r < n; r++) {
            const float c = G[r * d_out + i];
            float *y = Y + r * d_in;
            if (c == 0.0f) continue;
#pragma omp simd
            for (size_t j = 0; j < d_in; j++) y[j] += c * w[j];
        }
    }
}

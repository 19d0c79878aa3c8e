/* LoRA, instant-loop and EWC++ kernels (see nk_kernels.h and reference.py). */
#include <math.h>
#include <string.h>

#include "nk_kernels.h"

const char *nk_isa(void) {
#if NK_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA, target_clones)";
    return "x86-64 baseline (target_clones default)";
#elif defined(__x86_64__) || defined(_M_X64)
    return "x86-64 baseline";
#elif defined(__aarch64__) || defined(_M_ARM64)
    return "aarch64 (NEON baseline)";
#else
    return "generic";
#endif
}

NK_CLONES
int nk_all_finite(const float *x, size_t n) {
    float acc = 0.0f; /* x - x is 0 for a finite x and NaN for a NaN or an inf; the sum stays NaN */
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += x[i] - x[i];
    return acc == 0.0f;
}

int nk_sumsq_finite(const float *x, size_t n) {
    float acc = 0.0f; /* NaN or inf in x, or a square that overflows: acc is NaN or inf */
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) acc += x[i] * x[i];
    return isfinite(acc);
}

void nk_lora_rows(const float *X, size_t n, size_t d_in, const float *A, size_t r,
                  const float *B, size_t d_out, float scale, int add_input, float *Y, float *z,
                  float *bt) {
    if (r > 2) { /* B^T once, so that every row is r contiguous axpys */
        for (size_t i = 0; i < d_out; i++)
            for (size_t j = 0; j < r; j++) bt[j * d_out + i] = B[i * r + j];
    }
    for (size_t row = 0; row < n; row++) {
        const float *x = X + row * d_in;
        float *y = Y + row * d_out;
        for (size_t j = 0; j < r; j++) z[j] = nk_dot(A + j * d_in, x, d_in);
        if (r == 0) {
#pragma omp simd
            for (size_t i = 0; i < d_out; i++) y[i] = add_input ? x[i] : 0.0f;
        } else if (r == 1) {
            const float z0 = z[0];
            if (add_input) {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = x[i] + scale * (B[i] * z0);
            } else {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = scale * (B[i] * z0);
            }
        } else if (r == 2) {
            const float z0 = z[0], z1 = z[1];
            if (add_input) {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = x[i] + scale * (B[2 * i] * z0 + B[2 * i + 1] * z1);
            } else {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = scale * (B[2 * i] * z0 + B[2 * i + 1] * z1);
            }
        } else {
            const float z0 = z[0];
#pragma omp simd
            for (size_t i = 0; i < d_out; i++) y[i] = bt[i] * z0;
            for (size_t j = 1; j < r; j++) {
                const float *b = bt + j * d_out;
                const float zj = z[j];
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] += b[i] * zj;
            }
            if (add_input) {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = x[i] + scale * y[i];
            } else {
#pragma omp simd
                for (size_t i = 0; i < d_out; i++) y[i] = scale * y[i];
            }
        }
    }
}

NK_CLONES
void nk_lora_grad(const float *X, const float *G, size_t n, size_t d_in, size_t d_out,
                  const float *A, const float *B, size_t r, float scale, float *gA, float *gB,
                  float *z, float *gb, float *bt, float *gbt) {
    for (size_t i = 0; i < d_out; i++)
        for (size_t j = 0; j < r; j++) bt[j * d_out + i] = B[i * r + j];
    memset(gA, 0, r * d_in * sizeof(float));
    memset(gbt, 0, r * d_out * sizeof(float));
    for (size_t row = 0; row < n; row++) {
        const float *x = X + row * d_in;
        const float *g = G + row * d_out;
        for (size_t j = 0; j < r; j++) {
            z[j] = nk_dot(A + j * d_in, x, d_in);
            gb[j] = nk_dot(bt + j * d_out, g, d_out);
        }
        for (size_t j = 0; j < r; j++) {
            float *acc = gbt + j * d_out;
            const float zj = z[j];
#pragma omp simd
            for (size_t i = 0; i < d_out; i++) acc[i] += g[i] * zj;
            float *ga = gA + j * d_in;
            const float c = gb[j];
#pragma omp simd
            for (size_t k = 0; k < d_in; k++) ga[k] += c * x[k];
        }
    }
#pragma omp simd
    for (size_t i = 0; i < r * d_in; i++) gA[i] *= scale;
    for (size_t i = 0; i < d_out; i++)
        for (size_t j = 0; j < r; j++) gB[i * r + j] = scale * gbt[j * d_out + i];
}

static double nk_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

NK_CLONES
void nk_instant_step(const float *h, size_t d, float *A, float *B, size_t r, double scale,
                     float *wv, float *bv, float *Wr, float *br, size_t M, long long arm,
                     double reward, double success, double lr, int train_a, double clip,
                     float *z, float *h2, double *gh, double *bg, double *v, double *u) {
    (void)M;
    const float s = (float)scale;
    /* forward through MicroLoRA: z = A h, h2 = h + s * B z */
    for (size_t j = 0; j < r; j++) z[j] = nk_dot(A + j * d, h, d);
    if (r == 1) {
        const float z0 = z[0];
#pragma omp simd
        for (size_t i = 0; i < d; i++) h2[i] = h[i] + s * (B[i] * z0);
    } else if (r == 2) {
        const float z0 = z[0], z1 = z[1];
#pragma omp simd
        for (size_t i = 0; i < d; i++) h2[i] = h[i] + s * (B[2 * i] * z0 + B[2 * i + 1] * z1);
    } else {
        for (size_t i = 0; i < d; i++) {
            float t = 0.0f;
            for (size_t j = 0; j < r; j++) t += B[i * r + j] * z[j];
            h2[i] = h[i] + s * t;
        }
    }
    /* heads and the gradient reaching h2 */
    const double vv = nk_sigmoid((double)(nk_dot(wv, h2, d) + bv[0]));
    const double gv = vv - reward;
#pragma omp simd
    for (size_t i = 0; i < d; i++) gh[i] = gv * (double)wv[i];
    double uu = NAN, gu = 0.0;
    float *wr = NULL;
    if (arm >= 0) {
        wr = Wr + (size_t)arm * d;
        uu = nk_sigmoid((double)(nk_dot(wr, h2, d) + br[arm]));
        gu = uu - success;
        const float guf = (float)gu;
#pragma omp simd
        for (size_t i = 0; i < d; i++) gh[i] += (double)(guf * wr[i]);
    }
    if (clip > 0) {
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (size_t i = 0; i < d; i++) ss += gh[i] * gh[i];
        const double nrm = sqrt(ss);
        if (nrm > clip) {
            const double c = clip / nrm;
#pragma omp simd
            for (size_t i = 0; i < d; i++) gh[i] *= c;
        }
    }
    /* B^T gh with the old B (only needed for A) */
    if (train_a) {
        for (size_t j = 0; j < r; j++) {
            double acc = 0.0;
#pragma omp simd reduction(+ : acc)
            for (size_t i = 0; i < d; i++) acc += (double)B[i * r + j] * gh[i];
            bg[j] = acc;
        }
    }
    /* updates: heads, then B, then A */
    const float sv = (float)(lr * gv);
#pragma omp simd
    for (size_t i = 0; i < d; i++) wv[i] -= sv * h2[i];
    bv[0] -= sv;
    if (wr != NULL) {
        const float su = (float)(lr * gu);
#pragma omp simd
        for (size_t i = 0; i < d; i++) wr[i] -= su * h2[i];
        br[arm] -= su;
    }
    /* B -= lr * scale * outer(gh, z), A -= lr * scale * outer(B^T gh, h): products in double */
    if (r == 1) {
        const double c0 = lr * scale * (double)z[0];
#pragma omp simd
        for (size_t i = 0; i < d; i++) B[i] -= (float)(gh[i] * c0);
    } else if (r == 2) {
        const double c0 = lr * scale * (double)z[0], c1 = lr * scale * (double)z[1];
#pragma omp simd
        for (size_t i = 0; i < d; i++) {
            B[2 * i] -= (float)(gh[i] * c0);
            B[2 * i + 1] -= (float)(gh[i] * c1);
        }
    } else {
        for (size_t i = 0; i < d; i++)
            for (size_t j = 0; j < r; j++) B[i * r + j] -= (float)(gh[i] * (lr * scale * (double)z[j]));
    }
    if (train_a) {
        for (size_t j = 0; j < r; j++) {
            float *a = A + j * d;
            const double c = lr * scale * bg[j];
#pragma omp simd
            for (size_t k = 0; k < d; k++) a[k] -= (float)(c * (double)h[k]);
        }
    }
    *v = vv;
    *u = uu;
}

NK_CLONES
void nk_fisher_update(float *F, const float *g2, size_t n, double a) {
    const float keep = (float)(1.0 - a), take = (float)a;
#pragma omp simd
    for (size_t i = 0; i < n; i++) F[i] = F[i] * keep + take * g2[i];
}

NK_CLONES
double nk_ewc_penalty_grad(const float *theta, const float *anchor, const float *F, size_t n,
                           double lam, float *g) {
    const float lf = (float)lam;
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (size_t i = 0; i < n; i++) {
        const float di = theta[i] - anchor[i];
        g[i] = (lf * F[i]) * di;
        acc += (double)F[i] * ((double)di * (double)di);
    }
    return 0.5 * lam * acc;
}

void nk_instant_steps(const float *H, size_t n, size_t d, float *A, float *B, size_t r, double scale,
                      float *wv, float *bv, float *Wr, float *br, size_t M, const int64_t *arms,
                      const double *rs, double lr, int train_a, double clip, float *z, float *h2,
                      double *gh, double *bg, double *vu) {
    for (size_t k = 0; k < n; k++) {
        const long long arm = arms[k] < 0 ? -1 : (long long)arms[k];
        nk_instant_step(H + k * d, d, A, B, r, scale, wv, bv, Wr, br, M, arm, rs[2 * k], rs[2 * k + 1], lr,
                        train_a, clip, z, h2, gh, bg, vu + 2 * k, vu + 2 * k + 1);
    }
}

NK_CLONES
long long nk_bandit_update(double *W, double *P, double *V, size_t M, size_t D, const int64_t *idx,
                           const double *X, const double *y, size_t n, double lr, double decay, const double *AP,
                           const double *AE) {
    (void)M;
    const int forget = decay < 1.0 && AP != NULL && AE != NULL;
    for (size_t k = 0; k < n; k++) {
        const double *x = X + k * D;
        const size_t off = (size_t)idx[k] * D;
        double *w = W + off, *pr = P + off, *v = V + off;
        double zz = 0.0;
        if (forget) {
            /* the evidence beyond the anchor (AP, AE) times decay, in natural parameters;
               z from the decayed weights, the row written only once z is finite */
            const double *ap = AP + off, *ae = AE + off;
            for (size_t j = 0; j < D; j++) {
                const double pd = ap[j] + decay * (pr[j] - ap[j]);
                zz += ((ae[j] + decay * (pr[j] * w[j] - ae[j])) / pd) * x[j];
            }
            if (!isfinite(zz)) return (long long)k;
            for (size_t j = 0; j < D; j++) {
                const double pd = ap[j] + decay * (pr[j] - ap[j]);
                w[j] = (ae[j] + decay * (pr[j] * w[j] - ae[j])) / pd;
                pr[j] = pd;
            }
        } else {
            for (size_t j = 0; j < D; j++) zz += w[j] * x[j];
            if (!isfinite(zz)) return (long long)k;
        }
        double p;
        if (zz >= 0) {
            p = 1.0 / (1.0 + exp(-zz));
        } else {
            const double e = exp(zz);
            p = e / (1.0 + e);
        }
        const double c = p * (1.0 - p), g = lr * (y[k] - p);
#pragma omp simd
        for (size_t j = 0; j < D; j++) {
            pr[j] += (x[j] * x[j]) * c;
            v[j] = 1.0 / pr[j];
            w[j] += (x[j] * v[j]) * g;
        }
    }
    return -1;
}

/* ---- one-token inference forward --------------------------------------------------------- */

/* out = mul * (x - mean) / sqrt(var + eps) */
static inline void nk_ln(const float *NK_RESTRICT x, size_t d, double eps, double mul, float *NK_RESTRICT out) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < d; i++) s += x[i];
    const float m = (float)(s / (double)d);
    double q = 0.0;
#pragma omp simd reduction(+ : q)
    for (size_t i = 0; i < d; i++) {
        const float c = x[i] - m;
        out[i] = c;
        q += (double)c * (double)c;
    }
    const float k = (float)(mul / sqrt(q / (double)d + eps));
#pragma omp simd
    for (size_t i = 0; i < d; i++) out[i] *= k;
}

/* y (+)= x WT for x (n_in), WT (n_in, n_out) row-major: axpys of WT's rows, four at a time */
static inline void nk_vecmat_acc(const float *NK_RESTRICT x, size_t n_in, const float *NK_RESTRICT WT, size_t n_out,
                                 float *NK_RESTRICT y) {
    size_t i = 0;
    for (; i + 4 <= n_in; i += 4) {
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        const float *w0 = WT + i * n_out, *w1 = w0 + n_out, *w2 = w1 + n_out, *w3 = w2 + n_out;
#pragma omp simd
        for (size_t j = 0; j < n_out; j++) y[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
    }
    for (; i < n_in; i++) {
        const float xi = x[i];
        const float *w = WT + i * n_out;
#pragma omp simd
        for (size_t j = 0; j < n_out; j++) y[j] += xi * w[j];
    }
}

NK_CLONES
void nk_forward_one(const float *e, size_t d, size_t H, const float *WovT, const float *bov,
                    const float *WinT, const float *bin, const float *WoutT, const float *bout,
                    const float *A, const float *B, size_t r, float scale, const float *wv, float bv,
                    const float *Wr, const float *br, size_t M, double eps, float *h, float *hm,
                    float *rl, float *rp, double *vl, float *t, float *h1, float *u, float *z, float *bt) {
    nk_ln(e, d, eps, 1.0, t);
    for (size_t i = 0; i < d; i++) h1[i] = bov[i];
    nk_vecmat_acc(t, d, WovT, d, h1);
    for (size_t i = 0; i < d; i++) h1[i] += e[i];
    nk_ln(h1, d, eps, 1.0, t);
    memcpy(u, bin, H * sizeof(float));
    nk_vecmat_acc(t, d, WinT, H, u);
#pragma omp simd
    for (size_t j = 0; j < H; j++) u[j] = u[j] > 0.0f ? u[j] : 0.0f;
    for (size_t i = 0; i < d; i++) t[i] = bout[i];
    nk_vecmat_acc(u, H, WoutT, d, t);
    for (size_t i = 0; i < d; i++) t[i] += h1[i];
    nk_ln(t, d, eps, 1.0 / sqrt((double)d), h);
    nk_lora_rows(h, 1, d, A, r, B, d, scale, 1, hm, z, bt);
    *vl = (double)nk_dot(hm, wv, d) + (double)bv;
    for (size_t k = 0; k < M; k++) {
        const float x = nk_dot(Wr + k * d, hm, d) + br[k];
        rl[k] = x;
        rp[k] = 0.5f * (1.0f + tanhf(0.5f * x));
    }
}

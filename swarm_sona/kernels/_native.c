/* CPython bindings of the native kernels: swarm_sona.kernels._native.
 *
 * Buffers come in through the plain buffer protocol (no numpy headers at build time).
 * Two kinds of entry points:
 *  - hot paths (lora_apply, instant_step): parse their arguments themselves and return
 *    NotImplemented when any input is not exactly right (float32, C-contiguous, writable
 *    where updated in place, consistent shapes); the Python wrapper then validates,
 *    converts or refuses with a clear error, and calls again.
 *  - batch kernels: the Python wrapper validates and allocates outputs; these re-check every
 *    size they rely on (TypeError/ValueError otherwise) and release the GIL while computing.
 * Nothing reads or writes outside the buffers it was given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "nk_kernels.h"

static PyObject *nk_np_empty = NULL; /* numpy.empty */
static PyObject *nk_np_f32 = NULL;   /* numpy.dtype("float32") */
static PyObject *nk_np_i64 = NULL;   /* numpy.dtype("int64") */

#define NK_STACK_D 1024
#define NK_STACK_R 64
/* keep in sync with native_backend.GEMM_MIN_RANK / GEMM_MIN_ROWS */
#define NK_GEMM_MIN_RANK 2
#define NK_GEMM_MIN_ROWS 16

/* ---- buffer helpers --------------------------------------------------------------------- */

static int nk_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Is the struct-module format `got` the native type code `code` (one of f b ? and the
 * 8-byte integer codes l q)? Accepts an optional native or matching-endianness prefix. */
static int nk_fmt_is(const char *got, char code) {
    if (got == NULL) return code == 'B';
    if (got[0] == '@' || got[0] == '=' || (got[0] == '<' && nk_little_endian()) ||
        (got[0] == '>' && !nk_little_endian()))
        got++;
    if (got[0] == '\0' || got[1] != '\0') return 0;
    if (code == 'q') return got[0] == 'q' || (got[0] == 'l' && sizeof(long) == 8);
    return got[0] == code;
}

/* Acquire a C-contiguous buffer of type `code` and item size `itemsize`. Returns 1 when
 * held, 0 when not (no error set, nothing held). */
static int nk_try(PyObject *o, Py_buffer *v, char code, Py_ssize_t itemsize, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, flags) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (v->itemsize != itemsize || !nk_fmt_is(v->format, code)) {
        PyBuffer_Release(v);
        return 0;
    }
    return 1;
}

/* Like nk_try but sets TypeError naming the argument when it fails. */
static int nk_need(PyObject *o, Py_buffer *v, char code, Py_ssize_t itemsize, int writable,
                   const char *fn, const char *name) {
    if (nk_try(o, v, code, itemsize, writable)) return 1;
    PyErr_Format(PyExc_TypeError,
                 "%s: argument '%s' must be a%s C-contiguous buffer of type code '%c'", fn, name,
                 writable ? " writable" : "", code);
    return 0;
}

static Py_ssize_t nk_dim(const Py_buffer *v, int axis) { return v->shape[axis]; }

static Py_ssize_t nk_count(const Py_buffer *v) { return v->len / v->itemsize; }

/* numpy.empty(shape, float32) for 1 or 2 dimensions */
static PyObject *nk_empty_f32(int ndim, Py_ssize_t a, Py_ssize_t b) {
    PyObject *shape = ndim == 1 ? PyLong_FromSsize_t(a) : Py_BuildValue("(nn)", a, b);
    if (shape == NULL) return NULL;
    PyObject *args[2] = {shape, nk_np_f32};
    PyObject *out = PyObject_Vectorcall(nk_np_empty, args, 2, NULL);
    Py_DECREF(shape);
    return out;
}

/* numpy.empty(n, dtype) holding a copy of n items of `src` */
static PyObject *nk_array_1d(PyObject *dtype, Py_ssize_t n, const void *src, size_t itemsize) {
    PyObject *shape = PyLong_FromSsize_t(n);
    if (shape == NULL) return NULL;
    PyObject *args[2] = {shape, dtype};
    PyObject *out = PyObject_Vectorcall(nk_np_empty, args, 2, NULL);
    Py_DECREF(shape);
    if (out == NULL || n == 0) return out;
    Py_buffer v;
    if (PyObject_GetBuffer(out, &v, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if ((size_t)v.len == (size_t)n * itemsize) memcpy(v.buf, src, (size_t)n * itemsize);
    const int ok = (size_t)v.len == (size_t)n * itemsize;
    PyBuffer_Release(&v);
    if (!ok) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "numpy.empty returned a buffer of an unexpected size");
        return NULL;
    }
    return out;
}

static int nk_shape_err(const char *fn, const char *what) {
    PyErr_Format(PyExc_ValueError, "%s: %s", fn, what);
    return 0;
}

/* The buffers one call holds, released together (in reverse order) by nk_release. */
#define NK_MAX_BUFS 20
typedef struct {
    Py_buffer v[NK_MAX_BUFS];
    int n;
} nk_bufset;

/* Hold o as a C-contiguous buffer of type `code`; NULL when it is not one. With fn == NULL
 * no error is set (the hot paths then answer NotImplemented), otherwise a TypeError names
 * the argument. */
static Py_buffer *nk_hold(nk_bufset *s, PyObject *o, char code, Py_ssize_t itemsize, int writable,
                          const char *fn, const char *name) {
    if (s->n >= NK_MAX_BUFS) {
        if (fn != NULL) PyErr_Format(PyExc_RuntimeError, "%s: too many buffers", fn);
        return NULL;
    }
    Py_buffer *v = &s->v[s->n];
    if (fn == NULL ? !nk_try(o, v, code, itemsize, writable)
                   : !nk_need(o, v, code, itemsize, writable, fn, name))
        return NULL;
    s->n++;
    return v;
}

static void nk_release(nk_bufset *s) {
    while (s->n > 0) PyBuffer_Release(&s->v[--s->n]);
}

/* a Python float argument; 0 (error cleared) when it is not one */
static int nk_real(PyObject *o, double *out) {
    *out = PyFloat_AsDouble(o);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* ---- hot path: LoRA apply (one vector or rows) ------------------------------------------ */

PyDoc_STRVAR(lora_apply_doc,
             "lora_apply(x, A, B, scale, add_input[, finite]) -> ndarray | None | NotImplemented\n\n"
             "(x if add_input else 0) + scale * B @ (A @ x) for x (d_in,) or (n, d_in); with finite true,\n"
             "None when x or the result holds a NaN or an inf.");

static PyObject *nk_py_lora_apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "lora_apply takes 5 or 6 arguments");
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    PyObject *out = NULL, *res = NULL;
    float zs[NK_STACK_R];
    float *z = zs, *bt = NULL;
    Py_buffer *bx, *bA, *bB, *by;
    double scale;
    const int add = PyObject_IsTrue(args[4]);
    const int finite = nargs == 6 ? PyObject_IsTrue(args[5]) : 0;
    if (add < 0 || finite < 0 || !nk_real(args[3], &scale)) goto notimpl;
    if (!(bx = nk_hold(&s, args[0], 'f', 4, 0, NULL, NULL)) || !(bA = nk_hold(&s, args[1], 'f', 4, 0, NULL, NULL)) ||
        !(bB = nk_hold(&s, args[2], 'f', 4, 0, NULL, NULL)))
        goto notimpl;
    if ((bx->ndim != 1 && bx->ndim != 2) || bA->ndim != 2 || bB->ndim != 2) goto notimpl;
    const Py_ssize_t n = bx->ndim == 2 ? nk_dim(bx, 0) : 1;
    const Py_ssize_t d_in = nk_dim(bx, bx->ndim - 1);
    const Py_ssize_t r = nk_dim(bA, 0), d_out = nk_dim(bB, 0);
    if (nk_dim(bA, 1) != d_in || nk_dim(bB, 1) != r || (add && d_out != d_in)) goto notimpl;
    /* many rows at rank > 2 is a GEMM: the wrapper hands it to BLAS (numpy), which wins there */
    if (bx->ndim == 2 && r > NK_GEMM_MIN_RANK && n >= NK_GEMM_MIN_ROWS) goto notimpl;
    out = nk_empty_f32(bx->ndim, bx->ndim == 2 ? n : d_out, d_out);
    if (out == NULL || !(by = nk_hold(&s, out, 'f', 4, 1, "lora_apply", "out"))) goto done;
    if (r > NK_STACK_R) z = (float *)malloc((size_t)r * sizeof(float));
    if (r > 2) bt = (float *)malloc((size_t)r * (size_t)d_out * sizeof(float) + 1);
    if (z == NULL || (r > 2 && bt == NULL)) {
        PyErr_NoMemory();
        goto done;
    }
    if ((double)n * (double)(d_in + d_out) * (double)(r + 1) > 65536.0) {
        Py_BEGIN_ALLOW_THREADS
        nk_lora_rows(bx->buf, (size_t)n, (size_t)d_in, bA->buf, (size_t)r, bB->buf, (size_t)d_out,
                     (float)scale, add, by->buf, z, bt);
        Py_END_ALLOW_THREADS
    } else {
        nk_lora_rows(bx->buf, (size_t)n, (size_t)d_in, bA->buf, (size_t)r, bB->buf, (size_t)d_out,
                     (float)scale, add, by->buf, z, bt);
    }
    if (finite && !(nk_all_finite(bx->buf, (size_t)n * (size_t)d_in) &&
                    nk_all_finite(by->buf, (size_t)n * (size_t)d_out))) {
        res = Py_NewRef(Py_None);
        goto done;
    }
    res = out;
    out = NULL;
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    if (z != zs) free(z);
    free(bt);
    nk_release(&s);
    Py_XDECREF(out);
    return res;
}

/* ---- finiteness of a float32 buffer ------------------------------------------------------ */

PyDoc_STRVAR(finite_norm_doc, "finite_norm(x) -> bool | NotImplemented\n\n"
                              "True when the float32 sum of squares of the C-contiguous float32 array x is\n"
                              "finite: no NaN, no inf, and no entry so large that its square overflows.");

static PyObject *nk_py_finite_norm(PyObject *self, PyObject *x) {
    (void)self;
    Py_buffer v;
    if (!nk_try(x, &v, 'f', 4, 0)) {
        PyErr_Clear();
        return Py_NewRef(Py_NotImplemented);
    }
    const int ok = nk_sumsq_finite((const float *)v.buf, (size_t)(v.len / 4));
    PyBuffer_Release(&v);
    return PyBool_FromLong(ok);
}

/* ---- hot path: instant-loop step --------------------------------------------------------- */

PyDoc_STRVAR(instant_step_doc,
             "instant_step(h, A, B, scale, wv, bv, Wr, br, arm, reward, success, lr, train_a, clip)"
             " -> (v, u) | NotImplemented\n\nOne fused MicroLoRA + heads SGD step, in place.");

static PyObject *nk_py_instant_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "instant_step takes exactly 14 arguments");
        return NULL;
    }
    enum { H, A_, B_, WV, BV, WR, BR, NB };
    static const int arg_of[NB] = {0, 1, 2, 4, 5, 6, 7};
    Py_buffer *b[NB];
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL;
    float zs[NK_STACK_R], h2s[NK_STACK_D];
    double gbs[NK_STACK_R], ghs[NK_STACK_D];
    float *z = zs, *h2 = h2s;
    double *bg = gbs, *gh = ghs;
    double scale, reward, success, lr, clip;
    const long long arm = PyLong_AsLongLong(args[8]);
    if (arm == -1 && PyErr_Occurred()) goto notimpl;
    const int train_a = PyObject_IsTrue(args[12]);
    if (train_a < 0 || !nk_real(args[3], &scale) || !nk_real(args[9], &reward) || !nk_real(args[10], &success) ||
        !nk_real(args[11], &lr) || !nk_real(args[13], &clip))
        goto notimpl;
    for (int i = 0; i < NB; i++) /* h is read-only; the rest are updated in place */
        if (!(b[i] = nk_hold(&s, args[arg_of[i]], 'f', 4, i != H, NULL, NULL))) goto notimpl;
    if (b[H]->ndim != 1 || b[A_]->ndim != 2 || b[B_]->ndim != 2 || b[WV]->ndim != 1 ||
        b[BV]->ndim != 1 || b[WR]->ndim != 2 || b[BR]->ndim != 1)
        goto notimpl;
    const Py_ssize_t d = nk_dim(b[H], 0), r = nk_dim(b[A_], 0), M = nk_dim(b[WR], 0);
    if (nk_dim(b[A_], 1) != d || nk_dim(b[B_], 0) != d || nk_dim(b[B_], 1) != r ||
        nk_dim(b[WV], 0) != d || nk_dim(b[BV], 0) != 1 || nk_dim(b[WR], 1) != d ||
        nk_dim(b[BR], 0) != M || arm >= (long long)M)
        goto notimpl;
    if (r > NK_STACK_R) {
        z = (float *)malloc((size_t)r * sizeof(float));
        bg = (double *)malloc((size_t)r * sizeof(double));
    }
    if (d > NK_STACK_D) {
        h2 = (float *)malloc((size_t)d * sizeof(float));
        gh = (double *)malloc((size_t)d * sizeof(double));
    }
    if (z == NULL || bg == NULL || h2 == NULL || gh == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double v, u;
    nk_instant_step(b[H]->buf, (size_t)d, b[A_]->buf, b[B_]->buf, (size_t)r, scale, b[WV]->buf,
                    b[BV]->buf, b[WR]->buf, b[BR]->buf, (size_t)M, arm < 0 ? -1 : arm, reward,
                    success, lr, train_a, clip, z, h2, gh, bg, &v, &u);
    res = Py_BuildValue("(dd)", v, u);
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    if (z != zs) free(z);
    if (bg != gbs) free(bg);
    if (h2 != h2s) free(h2);
    if (gh != ghs) free(gh);
    nk_release(&s);
    return res;
}

/* ---- hot path: one-token inference forward ----------------------------------------------- */

PyDoc_STRVAR(forward_one_doc,
             "forward_one(e, WovT, bov, WinT, bin, WoutT, bout, A, B, scale, wv, bv, Wr, br, eps)"
             " -> (h, hm, value_logit, router_logits, router_probs) | NotImplemented\n\n"
             "The fused one-token block, MicroLoRA and the value/router heads (see nk_kernels.h).");

static PyObject *nk_py_forward_one(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "forward_one takes exactly 15 arguments");
        return NULL;
    }
    enum { E, WOV, BOV, WIN, BIN, WOUT, BOUT, A_, B_, WV, BV, WR, BR, NB };
    static const int arg_of[NB] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13};
    static const int ndim_of[NB] = {1, 2, 1, 2, 1, 2, 1, 2, 2, 1, 1, 2, 1};
    Py_buffer *b[NB];
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL, *o[4] = {NULL, NULL, NULL, NULL};
    Py_buffer *ob[4];
    float stack[3 * NK_STACK_D + NK_STACK_R];
    float *scratch = stack, *bt = NULL;
    double scale, eps;
    if (!nk_real(args[9], &scale) || !nk_real(args[14], &eps)) goto notimpl;
    for (int i = 0; i < NB; i++) {
        if (!(b[i] = nk_hold(&s, args[arg_of[i]], 'f', 4, 0, NULL, NULL))) goto notimpl;
        if (b[i]->ndim != ndim_of[i]) goto notimpl;
    }
    const Py_ssize_t d = nk_dim(b[E], 0), H = nk_dim(b[BIN], 0), r = nk_dim(b[A_], 0), M = nk_dim(b[BR], 0);
    if (d == 0 || nk_dim(b[WOV], 0) != d || nk_dim(b[WOV], 1) != d || nk_dim(b[BOV], 0) != d ||
        nk_dim(b[WIN], 0) != d || nk_dim(b[WIN], 1) != H || nk_dim(b[WOUT], 0) != H ||
        nk_dim(b[WOUT], 1) != d || nk_dim(b[BOUT], 0) != d || nk_dim(b[A_], 1) != d ||
        nk_dim(b[B_], 0) != d || nk_dim(b[B_], 1) != r || nk_dim(b[WV], 0) != d || nk_dim(b[BV], 0) != 1 ||
        nk_dim(b[WR], 0) != M || (M > 0 && nk_dim(b[WR], 1) != d) || !(eps >= 0.0))
        goto notimpl;
    const Py_ssize_t lens[4] = {d, d, M, M};
    for (int i = 0; i < 4; i++) {
        o[i] = nk_empty_f32(1, lens[i], 0);
        if (o[i] == NULL || !(ob[i] = nk_hold(&s, o[i], 'f', 4, 1, "forward_one", "out"))) goto done;
    }
    if (d > NK_STACK_D || H > NK_STACK_D || r > NK_STACK_R)
        scratch = (float *)malloc(((size_t)(2 * d + H + r) + 1) * sizeof(float));
    if (r > 2) bt = (float *)malloc((size_t)r * (size_t)d * sizeof(float) + 1);
    if (scratch == NULL || (r > 2 && bt == NULL)) {
        PyErr_NoMemory();
        goto done;
    }
    double vl;
    float *t = scratch, *h1 = t + d, *u = h1 + d, *z = u + H;
    nk_forward_one(b[E]->buf, (size_t)d, (size_t)H, b[WOV]->buf, b[BOV]->buf, b[WIN]->buf, b[BIN]->buf,
                   b[WOUT]->buf, b[BOUT]->buf, b[A_]->buf, b[B_]->buf, (size_t)r, (float)scale, b[WV]->buf,
                   ((const float *)b[BV]->buf)[0], b[WR]->buf, b[BR]->buf, (size_t)M, eps, ob[0]->buf, ob[1]->buf,
                   ob[2]->buf, ob[3]->buf, &vl, t, h1, u, z, bt);
    nk_release(&s);
    res = Py_BuildValue("(OOdOO)", o[0], o[1], vl, o[2], o[3]);
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    if (scratch != stack) free(scratch);
    free(bt);
    nk_release(&s);
    for (int i = 0; i < 4; i++) Py_XDECREF(o[i]);
    return res;
}

/* ---- batch kernels: the wrappers validated and allocated; sizes are re-checked here -------- */

PyDoc_STRVAR(instant_steps_doc,
             "instant_steps(H, A, B, scale, wv, bv, Wr, br, arms, rs, lr, train_a, clip, vu_out)\n\n"
             "instant_step for every row of H (n, d) in order, in place; arms (n,) int64, rs (n, 2)\n"
             "float64 (reward, success); writes vu_out (n, 2) float64 (v, u).");

static PyObject *nk_py_instant_steps(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "instant_steps";
    PyObject *o[14];
    double scale, lr, clip;
    int train_a;
    if (!PyArg_ParseTuple(args, "OOOdOOOOOOdpdO", &o[0], &o[1], &o[2], &scale, &o[4], &o[5], &o[6], &o[7],
                          &o[8], &o[9], &lr, &train_a, &clip, &o[13]))
        return NULL;
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL;
    float *z = NULL, *h2 = NULL;
    double *gh = NULL, *bg = NULL;
    Py_buffer *H, *A, *B, *WV, *BV, *WR, *BR, *AR, *RS, *VU;
    if (!(H = nk_hold(&s, o[0], 'f', 4, 0, fn, "H")) || !(A = nk_hold(&s, o[1], 'f', 4, 1, fn, "A")) ||
        !(B = nk_hold(&s, o[2], 'f', 4, 1, fn, "B")) || !(WV = nk_hold(&s, o[4], 'f', 4, 1, fn, "wv")) ||
        !(BV = nk_hold(&s, o[5], 'f', 4, 1, fn, "bv")) || !(WR = nk_hold(&s, o[6], 'f', 4, 1, fn, "Wr")) ||
        !(BR = nk_hold(&s, o[7], 'f', 4, 1, fn, "br")) || !(AR = nk_hold(&s, o[8], 'q', 8, 0, fn, "arms")) ||
        !(RS = nk_hold(&s, o[9], 'd', 8, 0, fn, "rs")) || !(VU = nk_hold(&s, o[13], 'd', 8, 1, fn, "vu_out")))
        goto done;
    if (H->ndim != 2 || A->ndim != 2 || B->ndim != 2 || WR->ndim != 2) {
        nk_shape_err(fn, "H, A, B and Wr must be 2-D");
        goto done;
    }
    const Py_ssize_t n = nk_dim(H, 0), d = nk_dim(H, 1), r = nk_dim(A, 0), M = nk_dim(WR, 0);
    if (nk_dim(A, 1) != d || nk_dim(B, 0) != d || nk_dim(B, 1) != r || nk_count(WV) != d || nk_count(BV) != 1 ||
        nk_dim(WR, 1) != d || nk_count(BR) != M || nk_count(AR) != n || nk_count(RS) != 2 * n ||
        nk_count(VU) != 2 * n) {
        nk_shape_err(fn, "inconsistent shapes");
        goto done;
    }
    const int64_t *arms = AR->buf;
    for (Py_ssize_t k = 0; k < n; k++)
        if (arms[k] >= (int64_t)M) {
            nk_shape_err(fn, "an arm is not a row of the router head");
            goto done;
        }
    z = (float *)malloc((size_t)(r > 0 ? r : 1) * sizeof(float));
    bg = (double *)malloc((size_t)(r > 0 ? r : 1) * sizeof(double));
    h2 = (float *)malloc((size_t)(d > 0 ? d : 1) * sizeof(float));
    gh = (double *)malloc((size_t)(d > 0 ? d : 1) * sizeof(double));
    if (z == NULL || bg == NULL || h2 == NULL || gh == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    nk_instant_steps(H->buf, (size_t)n, (size_t)d, A->buf, B->buf, (size_t)r, scale, WV->buf, BV->buf, WR->buf,
                     BR->buf, (size_t)M, arms, RS->buf, lr, train_a, clip, z, h2, gh, bg, VU->buf);
    res = Py_NewRef(Py_None);
done:
    free(z);
    free(bg);
    free(h2);
    free(gh);
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(bandit_update_doc,
             "bandit_update(W, P, V, idx, X, y, lr, decay=1.0, AP=None, AE=None) -> int\n\n"
             "The router posterior's update for every row of X (n, D) in order, in place; W, P, V (M, D)\n"
             "float64, idx (n,) int64 in [0, M), y (n,) float64. decay < 1: each updated row's evidence\n"
             "beyond the anchor AP, AE (M, D) float64 is first multiplied by decay. Returns -1, or the\n"
             "first row whose w.x is not finite (it and the later rows not applied).");

static PyObject *nk_py_bandit_update(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "bandit_update";
    PyObject *ow, *op, *ov, *oi, *ox, *oy, *oap = Py_None, *oae = Py_None;
    double lr, decay = 1.0;
    if (!PyArg_ParseTuple(args, "OOOOOOd|dOO", &ow, &op, &ov, &oi, &ox, &oy, &lr, &decay, &oap, &oae)) return NULL;
    const int forget = decay < 1.0;
    if (forget && (oap == Py_None || oae == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "bandit_update: decay < 1 needs the anchor arrays AP and AE");
        return NULL;
    }
    if (!(decay > 0.0 && decay <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "bandit_update: decay must be in (0, 1]");
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL;
    Py_buffer *W, *P, *V, *I, *X, *Y, *AP = NULL, *AE = NULL;
    if (!(W = nk_hold(&s, ow, 'd', 8, 1, fn, "W")) || !(P = nk_hold(&s, op, 'd', 8, 1, fn, "P")) ||
        !(V = nk_hold(&s, ov, 'd', 8, 1, fn, "V")) || !(I = nk_hold(&s, oi, 'q', 8, 0, fn, "idx")) ||
        !(X = nk_hold(&s, ox, 'd', 8, 0, fn, "X")) || !(Y = nk_hold(&s, oy, 'd', 8, 0, fn, "y")))
        goto done;
    if (forget && (!(AP = nk_hold(&s, oap, 'd', 8, 0, fn, "AP")) || !(AE = nk_hold(&s, oae, 'd', 8, 0, fn, "AE"))))
        goto done;
    if (W->ndim != 2 || X->ndim != 2) {
        nk_shape_err(fn, "W and X must be 2-D");
        goto done;
    }
    const Py_ssize_t M = nk_dim(W, 0), D = nk_dim(W, 1), n = nk_dim(X, 0);
    if (nk_dim(X, 1) != D || nk_count(P) != M * D || nk_count(V) != M * D || nk_count(I) != n ||
        nk_count(Y) != n || (forget && (nk_count(AP) != M * D || nk_count(AE) != M * D))) {
        nk_shape_err(fn, "inconsistent shapes");
        goto done;
    }
    const int64_t *idx = I->buf;
    for (Py_ssize_t k = 0; k < n; k++)
        if (idx[k] < 0 || idx[k] >= (int64_t)M) {
            nk_shape_err(fn, "a model index is out of range");
            goto done;
        }
    long long bad;
    Py_BEGIN_ALLOW_THREADS
    bad = nk_bandit_update(W->buf, P->buf, V->buf, (size_t)M, (size_t)D, idx, X->buf, Y->buf, (size_t)n, lr, decay,
                           forget ? AP->buf : NULL, forget ? AE->buf : NULL);
    Py_END_ALLOW_THREADS
    res = PyLong_FromLongLong(bad);
done:
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(lora_grad_doc,
             "lora_grad(x, g, A, B, scale, gA, gB)\n\nx (n, d_in), g (n, d_out) float32; writes gA "
             "(r, d_in) and gB (d_out, r).");

static PyObject *nk_py_lora_grad(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "lora_grad";
    static const char *names[6] = {"x", "g", "A", "B", "gA", "gB"};
    PyObject *o[6];
    double scale;
    if (!PyArg_ParseTuple(args, "OOOOdOO", &o[0], &o[1], &o[2], &o[3], &scale, &o[4], &o[5])) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *b[6];
    PyObject *res = NULL;
    float *z = NULL, *gb = NULL, *bt = NULL, *gbt = NULL;
    for (int i = 0; i < 6; i++) {
        if (!(b[i] = nk_hold(&s, o[i], 'f', 4, i >= 4, fn, names[i]))) goto done;
        if (b[i]->ndim != 2) {
            nk_shape_err(fn, "every array must be 2-D");
            goto done;
        }
    }
    const Py_ssize_t n = nk_dim(b[0], 0), d_in = nk_dim(b[0], 1), d_out = nk_dim(b[1], 1);
    const Py_ssize_t r = nk_dim(b[2], 0);
    if (nk_dim(b[1], 0) != n || nk_dim(b[2], 1) != d_in || nk_dim(b[3], 0) != d_out ||
        nk_dim(b[3], 1) != r || nk_dim(b[4], 0) != r || nk_dim(b[4], 1) != d_in ||
        nk_dim(b[5], 0) != d_out || nk_dim(b[5], 1) != r) {
        nk_shape_err(fn, "inconsistent shapes");
        goto done;
    }
    z = (float *)malloc(((size_t)r + 1) * sizeof(float));
    gb = (float *)malloc(((size_t)r + 1) * sizeof(float));
    bt = (float *)malloc(((size_t)r * (size_t)d_out + 1) * sizeof(float));
    gbt = (float *)malloc(((size_t)r * (size_t)d_out + 1) * sizeof(float));
    if (z == NULL || gb == NULL || bt == NULL || gbt == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    nk_lora_grad(b[0]->buf, b[1]->buf, (size_t)n, (size_t)d_in, (size_t)d_out, b[2]->buf, b[3]->buf,
                 (size_t)r, (float)scale, b[4]->buf, b[5]->buf, z, gb, bt, gbt);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    free(z);
    free(gb);
    free(bt);
    free(gbt);
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(fisher_update_doc, "fisher_update(F, g2_mean, a)\n\nF <- (1 - a) F + a g2_mean in place.");

static PyObject *nk_py_fisher_update(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "fisher_update";
    PyObject *oF, *og;
    double a;
    if (!PyArg_ParseTuple(args, "OOd", &oF, &og, &a)) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *F, *g;
    PyObject *res = NULL;
    if (!(F = nk_hold(&s, oF, 'f', 4, 1, fn, "F")) || !(g = nk_hold(&s, og, 'f', 4, 0, fn, "g2_mean"))) goto done;
    if (nk_count(F) != nk_count(g)) {
        nk_shape_err(fn, "F and g2_mean differ in size");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    nk_fisher_update(F->buf, g->buf, (size_t)nk_count(F), a);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(ewc_penalty_grad_doc,
             "ewc_penalty_grad(theta, anchor, F, lam, g) -> penalty\n\nWrites g = lam F (theta - "
             "anchor).");

static PyObject *nk_py_ewc_penalty_grad(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "ewc_penalty_grad";
    static const char *names[4] = {"theta", "anchor", "F", "g"};
    PyObject *o[4];
    double lam;
    if (!PyArg_ParseTuple(args, "OOOdO", &o[0], &o[1], &o[2], &lam, &o[3])) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *b[4];
    PyObject *res = NULL;
    for (int i = 0; i < 4; i++)
        if (!(b[i] = nk_hold(&s, o[i], 'f', 4, i == 3, fn, names[i]))) goto done;
    const Py_ssize_t n = nk_count(b[0]);
    if (nk_count(b[1]) != n || nk_count(b[2]) != n || nk_count(b[3]) != n) {
        nk_shape_err(fn, "theta, anchor, F and g differ in size");
        goto done;
    }
    double pen;
    Py_BEGIN_ALLOW_THREADS
    pen = nk_ewc_penalty_grad(b[0]->buf, b[1]->buf, b[2]->buf, (size_t)n, lam, b[3]->buf);
    Py_END_ALLOW_THREADS
    res = PyFloat_FromDouble(pen);
done:
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(topk_doc,
             "topk(matrix, query, k, mask, values, min_value, out_idx, out_score) -> m\n\n"
             "Writes the best m <= k rows (int64 indices, float32 scores), best first.");

PyDoc_STRVAR(topk_int8_doc,
             "topk_int8(q, scales, query, k, mask, values, min_value, out_idx, out_score) -> m\n\n"
             "Top-k over an int8 matrix with per-row scales.");

static PyObject *nk_topk_common(PyObject *args, int int8) {
    const char *fn = int8 ? "topk_int8" : "topk";
    PyObject *om, *osc = Py_None, *oq, *omask, *ovals, *omin, *oidx, *osco;
    Py_ssize_t k;
    if (int8) {
        if (!PyArg_ParseTuple(args, "OOOnOOOOO", &om, &osc, &oq, &k, &omask, &ovals, &omin, &oidx, &osco))
            return NULL;
    } else if (!PyArg_ParseTuple(args, "OOnOOOOO", &om, &oq, &k, &omask, &ovals, &omin, &oidx, &osco)) {
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    Py_buffer *M, *S = NULL, *q, *bi, *bo;
    PyObject *res = NULL;
    nk_filter f = {NULL, NULL, 0.0f};
    if (!(M = nk_hold(&s, om, int8 ? 'b' : 'f', int8 ? 1 : 4, 0, fn, int8 ? "q" : "matrix"))) goto done;
    if (M->ndim != 2) {
        nk_shape_err(fn, "the matrix must be 2-D");
        goto done;
    }
    const Py_ssize_t n = nk_dim(M, 0), d = nk_dim(M, 1);
    if (int8 && !(S = nk_hold(&s, osc, 'f', 4, 0, fn, "scales"))) goto done;
    if (!(q = nk_hold(&s, oq, 'f', 4, 0, fn, "query"))) goto done;
    if ((S != NULL && nk_count(S) != n) || nk_count(q) != d) {
        nk_shape_err(fn, "scales or query do not match the matrix");
        goto done;
    }
    if (omask != Py_None) {
        Py_buffer *m = nk_hold(&s, omask, '?', 1, 0, fn, "mask");
        if (m == NULL) goto done;
        if (nk_count(m) != n) {
            nk_shape_err(fn, "mask must have one entry per row");
            goto done;
        }
        f.mask = (const uint8_t *)m->buf;
    }
    if (ovals != Py_None && omin != Py_None) {
        double mv;
        Py_buffer *v = nk_hold(&s, ovals, 'f', 4, 0, fn, "values");
        if (v == NULL) goto done;
        if (nk_count(v) != n) {
            nk_shape_err(fn, "values must have one entry per row");
            goto done;
        }
        mv = PyFloat_AsDouble(omin);
        if (mv == -1.0 && PyErr_Occurred()) goto done;
        f.values = (const float *)v->buf;
        f.min_value = (float)mv;
    }
    if (!(bi = nk_hold(&s, oidx, 'q', 8, 1, fn, "out_idx")) || !(bo = nk_hold(&s, osco, 'f', 4, 1, fn, "out_score")))
        goto done;
    if (k < 0) k = 0;
    if (k > n) k = n;
    if (nk_count(bi) < k || nk_count(bo) < k) {
        nk_shape_err(fn, "output buffers are shorter than min(k, n)");
        goto done;
    }
    long long m;
    Py_BEGIN_ALLOW_THREADS
    if (int8)
        m = nk_topk_i8(M->buf, S->buf, (size_t)n, (size_t)d, q->buf, (size_t)k, &f, bi->buf, bo->buf);
    else
        m = nk_topk_f32(M->buf, (size_t)n, (size_t)d, q->buf, (size_t)k, &f, bi->buf, bo->buf);
    Py_END_ALLOW_THREADS
    res = m < 0 ? PyErr_NoMemory() : PyLong_FromLongLong(m);
done:
    nk_release(&s);
    return res;
}

static PyObject *nk_py_topk(PyObject *self, PyObject *args) {
    (void)self;
    return nk_topk_common(args, 0);
}

static PyObject *nk_py_topk_int8(PyObject *self, PyObject *args) {
    (void)self;
    return nk_topk_common(args, 1);
}

PyDoc_STRVAR(quantize_int8_doc, "quantize_int8(matrix, q_out, scales_out)\n\nPer-row symmetric int8.");

/* quantize_int8 / quantize_int4 (bits 8 or 4): matrix (n, d) float32 into codes (n, d) int8 or
 * (n, (d + 1) / 2) uint8, and scales (n) */
static PyObject *nk_quantize_common(PyObject *args, int bits) {
    const char *fn = bits == 8 ? "quantize_int8" : "quantize_int4";
    const char *out = bits == 8 ? "q_out" : "packed_out";
    PyObject *om, *oq, *os;
    if (!PyArg_ParseTuple(args, "OOO", &om, &oq, &os)) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *M, *Q, *S;
    PyObject *res = NULL;
    if (!(M = nk_hold(&s, om, 'f', 4, 0, fn, "matrix")) || !(Q = nk_hold(&s, oq, bits == 8 ? 'b' : 'B', 1, 1, fn, out)) ||
        !(S = nk_hold(&s, os, 'f', 4, 1, fn, "scales_out")))
        goto done;
    if (M->ndim != 2) {
        nk_shape_err(fn, "matrix must be 2-D");
        goto done;
    }
    const Py_ssize_t n = nk_dim(M, 0), d = nk_dim(M, 1);
    if (nk_count(Q) != n * (bits == 8 ? d : (d + 1) / 2) || nk_count(S) != n) {
        nk_shape_err(fn, "output sizes differ from the matrix");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (bits == 8)
        nk_quantize_i8(M->buf, (size_t)n, (size_t)d, Q->buf, S->buf);
    else
        nk_quantize_i4(M->buf, (size_t)n, (size_t)d, Q->buf, S->buf);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    nk_release(&s);
    return res;
}

static PyObject *nk_py_quantize_int8(PyObject *self, PyObject *args) {
    (void)self;
    return nk_quantize_common(args, 8);
}

PyDoc_STRVAR(quantize_int4_doc, "quantize_int4(matrix, packed_out, scales_out)\n\nPer-row symmetric int4, packed "
                                  "(a finite matrix: the wrapper checks).");

static PyObject *nk_py_quantize_int4(PyObject *self, PyObject *args) {
    (void)self;
    return nk_quantize_common(args, 4);
}

PyDoc_STRVAR(kmeans_assign_doc, "kmeans_assign(X, C, labels_out, d2_out)\n\nNearest centroid per row.");

static PyObject *nk_py_kmeans_assign(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "kmeans_assign";
    PyObject *ox, *oc, *ol, *od;
    if (!PyArg_ParseTuple(args, "OOOO", &ox, &oc, &ol, &od)) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *X, *C, *L, *D;
    PyObject *res = NULL;
    if (!(X = nk_hold(&s, ox, 'f', 4, 0, fn, "X")) || !(C = nk_hold(&s, oc, 'f', 4, 0, fn, "C")) ||
        !(L = nk_hold(&s, ol, 'q', 8, 1, fn, "labels_out")) || !(D = nk_hold(&s, od, 'f', 4, 1, fn, "d2_out")))
        goto done;
    if (X->ndim != 2 || C->ndim != 2) {
        nk_shape_err(fn, "X and C must be 2-D");
        goto done;
    }
    const Py_ssize_t n = nk_dim(X, 0), d = nk_dim(X, 1), k = nk_dim(C, 0);
    if (nk_dim(C, 1) != d || nk_count(L) != n || nk_count(D) != n || (n > 0 && k < 1)) {
        nk_shape_err(fn, "inconsistent shapes (or no centroid)");
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = nk_kmeans_assign(X->buf, (size_t)n, (size_t)d, C->buf, (size_t)k, L->buf, D->buf);
    Py_END_ALLOW_THREADS
    res = rc < 0 ? PyErr_NoMemory() : Py_NewRef(Py_None);
done:
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(hash_embed_doc,
             "hash_embed(texts, dim, w_word, w_bigram, w_char, out)\n\nHashing embedder rows into "
             "out (len(texts), dim) float32.");

static PyObject *nk_py_hash_embed(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "hash_embed";
    PyObject *otexts, *oout;
    Py_ssize_t dim;
    double ww, wb, wc;
    if (!PyArg_ParseTuple(args, "OndddO", &otexts, &dim, &ww, &wb, &wc, &oout)) return NULL;
    if (dim < 1) {
        PyErr_SetString(PyExc_ValueError, "hash_embed: dim must be >= 1");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(otexts, "hash_embed: texts must be a sequence of str");
    if (seq == NULL) return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    nk_bufset s;
    s.n = 0;
    Py_buffer *bo;
    PyObject *res = NULL;
    PyObject **owners = NULL;
    const unsigned char **ptrs = NULL;
    Py_ssize_t *lens = NULL, got = 0;
    double *row = NULL;
    if (!(bo = nk_hold(&s, oout, 'f', 4, 1, fn, "out"))) goto done;
    if (nk_count(bo) != n * dim) {
        nk_shape_err(fn, "out must have len(texts) * dim floats");
        goto done;
    }
    owners = (PyObject **)calloc((size_t)n + 1, sizeof(PyObject *));
    ptrs = (const unsigned char **)calloc((size_t)n + 1, sizeof(unsigned char *));
    lens = (Py_ssize_t *)calloc((size_t)n + 1, sizeof(Py_ssize_t));
    row = (double *)malloc((size_t)dim * sizeof(double));
    if (owners == NULL || ptrs == NULL || lens == NULL || row == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (got = 0; got < n; got++) {
        PyObject *t = items[got];
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "hash_embed: text %zd is %.100s, expected str", got,
                         Py_TYPE(t)->tp_name);
            goto done;
        }
        if (PyUnicode_IS_ASCII(t)) { /* ASCII letters are folded in the kernel */
            owners[got] = Py_NewRef(t);
            ptrs[got] = (const unsigned char *)PyUnicode_DATA(t);
            lens[got] = PyUnicode_GET_LENGTH(t);
        } else {
            PyObject *low = PyObject_CallMethod(t, "lower", NULL);
            if (low == NULL) goto done;
            owners[got] = low;
            Py_ssize_t len;
            const char *u = PyUnicode_AsUTF8AndSize(low, &len);
            if (u == NULL) goto done;
            ptrs[got] = (const unsigned char *)u;
            lens[got] = len;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        nk_hash_text(ptrs[i], (size_t)lens[i], (uint64_t)dim, ww, wb, wc, row,
                     (float *)bo->buf + (size_t)i * (size_t)dim);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    if (owners != NULL)
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(owners[i]); /* calloc'd: NULL past got */
    free(owners);
    free(ptrs);
    free(lens);
    free(row);
    nk_release(&s);
    Py_DECREF(seq);
    return res;
}

/* ---- quantised linear layers (nk_quant.c) ---------------------------------------------- */

/* Hold the codes (uint8 for bits 4, int8 for bits 8) and absmax of a quantised matrix and check
 * that they cover `entries` entries in groups of `group`. */
static int nk_hold_qweight(nk_bufset *s, PyObject *oc, PyObject *oa, int bits, Py_ssize_t group, Py_ssize_t entries,
                           const char *fn, Py_buffer **codes, Py_buffer **absmax) {
    if (bits != 4 && bits != 8) return nk_shape_err(fn, "bits must be 4 (nf4) or 8 (int8)");
    if (group < 2 || group % 2) return nk_shape_err(fn, "group must be even and >= 2");
    if (!(*codes = nk_hold(s, oc, bits == 4 ? 'B' : 'b', 1, 0, fn, "codes")) ||
        !(*absmax = nk_hold(s, oa, 'f', 4, 0, fn, "absmax")))
        return 0;
    if (nk_count(*codes) < (bits == 4 ? (entries + 1) / 2 : entries) || nk_count(*absmax) < (entries + group - 1) / group)
        return nk_shape_err(fn, "codes or absmax are shorter than the matrix needs");
    return 1;
}

PyDoc_STRVAR(qdequant_doc,
             "qdequant(codes, absmax, group, bits, f0, out)\n\nWrites entries [f0, f0 + out.size) of a "
             "group-wise quantised matrix (flattened row-major) into out (float32).");

static PyObject *nk_py_qdequant(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "qdequant";
    PyObject *oc, *oa, *oo;
    Py_ssize_t group, f0;
    int bits;
    if (!PyArg_ParseTuple(args, "OOninO", &oc, &oa, &group, &bits, &f0, &oo)) return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *C, *A, *O;
    PyObject *res = NULL;
    if (!(O = nk_hold(&s, oo, 'f', 4, 1, fn, "out"))) goto done;
    if (f0 < 0) {
        nk_shape_err(fn, "f0 must be >= 0");
        goto done;
    }
    const Py_ssize_t m = nk_count(O);
    if (!nk_hold_qweight(&s, oc, oa, bits, group, f0 + m, fn, &C, &A)) goto done;
    Py_BEGIN_ALLOW_THREADS
    nk_q_dequant(bits, C->buf, A->buf, (size_t)group, (size_t)f0, (size_t)m, O->buf);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(qlinear_doc,
             "qlinear(x, codes, absmax, d_out, d_in, group, bits, transpose, out)\n\nout = x @ W^T "
             "(x (n, d_in), out (n, d_out)) or, with transpose, out = x @ W (x (n, d_out), out (n, d_in)) "
             "for the quantised W (d_out, d_in).");

static PyObject *nk_py_qlinear(PyObject *self, PyObject *args) {
    (void)self;
    static const char *fn = "qlinear";
    PyObject *ox, *oc, *oa, *oo;
    Py_ssize_t d_out, d_in, group;
    int bits, transpose;
    if (!PyArg_ParseTuple(args, "OOOnnnipO", &ox, &oc, &oa, &d_out, &d_in, &group, &bits, &transpose, &oo))
        return NULL;
    nk_bufset s;
    s.n = 0;
    Py_buffer *X, *C, *A, *O;
    PyObject *res = NULL;
    float *w = NULL;
    if (d_out < 0 || d_in < 0) {
        nk_shape_err(fn, "d_out and d_in must be >= 0");
        goto done;
    }
    if (!nk_hold_qweight(&s, oc, oa, bits, group, d_out * d_in, fn, &C, &A)) goto done;
    if (!(X = nk_hold(&s, ox, 'f', 4, 0, fn, "x")) || !(O = nk_hold(&s, oo, 'f', 4, 1, fn, "out"))) goto done;
    const Py_ssize_t k_in = transpose ? d_out : d_in, k_out = transpose ? d_in : d_out;
    if (X->ndim != 2 || O->ndim != 2 || nk_dim(X, 1) != k_in || nk_dim(O, 0) != nk_dim(X, 0) || nk_dim(O, 1) != k_out) {
        nk_shape_err(fn, "x and out must be 2-D (n, inputs) and (n, outputs) of the matrix");
        goto done;
    }
    const size_t n = (size_t)nk_dim(X, 0);
    w = (float *)malloc(((size_t)d_in + 1) * sizeof(float));
    if (w == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (transpose)
        nk_q_linear_t(bits, C->buf, A->buf, (size_t)group, (size_t)d_out, (size_t)d_in, X->buf, n, O->buf, w);
    else
        nk_q_linear(bits, C->buf, A->buf, (size_t)group, (size_t)d_out, (size_t)d_in, X->buf, n, O->buf, w);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    free(w);
    nk_release(&s);
    return res;
}

static PyObject *nk_py_q_isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(nk_q_isa());
}

/* ---- shared by the quantised searches' bindings --------------------------------------------- */

/* The row filter of a search over n rows: `omask` (bool (n,)) or None, `ovalues` (float64 (n,))
 * with `omin` or None. 0, or -1 when an input is not exactly right (NotImplemented). */
static int nk_hold_filter(nk_bufset *s, PyObject *omask, PyObject *ovalues, PyObject *omin, Py_ssize_t n,
                          nk_filter64 *f) {
    f->mask = NULL;
    f->values = NULL;
    f->min_value = 0.0;
    if (omask != Py_None) {
        Py_buffer *m = nk_hold(s, omask, '?', 1, 0, NULL, NULL);
        if (m == NULL || m->ndim != 1 || nk_dim(m, 0) != n) return -1;
        f->mask = (const uint8_t *)m->buf;
    }
    if (ovalues != Py_None && omin != Py_None) {
        Py_buffer *v = nk_hold(s, ovalues, 'd', 8, 0, NULL, NULL);
        if (v == NULL || v->ndim != 1 || nk_dim(v, 0) != n || !nk_real(omin, &f->min_value)) return -1;
        f->values = (const double *)v->buf;
    }
    return 0;
}

/* The k results of a top-k: on the stack up to 64, else on the heap. */
typedef struct {
    int64_t *idx;
    float *sc;
    int64_t idx_stack[64];
    float sc_stack[64];
} nk_topk_out;

static int nk_out_init(nk_topk_out *o, Py_ssize_t k) { /* 0, or -1 with MemoryError set */
    o->idx = o->idx_stack;
    o->sc = o->sc_stack;
    if (k > 64) {
        o->idx = (int64_t *)malloc((size_t)k * sizeof(int64_t));
        o->sc = (float *)malloc((size_t)k * sizeof(float));
        if (o->idx == NULL || o->sc == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static void nk_out_free(nk_topk_out *o) {
    if (o->idx != o->idx_stack) free(o->idx);
    if (o->sc != o->sc_stack) free(o->sc);
}

/* (idx int64 (m,), scores float32 (m,)) as new arrays; NULL with the error set. */
static int nk_out_arrays(const nk_topk_out *o, long long m, PyObject **oi, PyObject **os) {
    if (m < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (!(*oi = nk_array_1d(nk_np_i64, (Py_ssize_t)m, o->idx, sizeof(int64_t))) ||
        !(*os = nk_array_1d(nk_np_f32, (Py_ssize_t)m, o->sc, sizeof(float))))
        return -1;
    return 0;
}

/* ---- ivf probe --------------------------------------------------------------------------- */

PyDoc_STRVAR(ivf_probe_doc,
             "ivf_probe(centroids, norms, sizes, query, need) -> lists | NotImplemented\n\n"
             "The lists nearest the query until they cover `need` rows, in increasing order (see reference.py).\n"
             "NotImplemented when an input is not exactly right (the wrapper then validates).");

static PyObject *nk_py_ivf_probe(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "ivf_probe takes exactly 5 arguments");
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL;
    int64_t stack[256];
    int64_t *out = stack;
    Py_buffer *bC, *bN, *bS, *bq;
    double need;
    if (!(bC = nk_hold(&s, args[0], 'f', 4, 0, NULL, NULL)) || !(bN = nk_hold(&s, args[1], 'f', 4, 0, NULL, NULL)) ||
        !(bS = nk_hold(&s, args[2], 'q', 8, 0, NULL, NULL)) || !(bq = nk_hold(&s, args[3], 'f', 4, 0, NULL, NULL)))
        goto notimpl;
    if (bC->ndim != 2 || bN->ndim != 1 || bS->ndim != 1 || bq->ndim != 1) goto notimpl;
    const Py_ssize_t L = nk_dim(bC, 0), d = nk_dim(bC, 1);
    if (nk_dim(bN, 0) != L || nk_dim(bS, 0) != L || nk_dim(bq, 0) != d) goto notimpl;
    if (!nk_real(args[4], &need) || !isfinite(need)) goto notimpl;
    const float *q = (const float *)bq->buf;
    for (Py_ssize_t j = 0; j < d; j++)
        if (!isfinite(q[j])) goto notimpl;
    const int64_t *sizes = (const int64_t *)bS->buf;
    for (Py_ssize_t j = 0; j < L; j++)
        if (sizes[j] < 0) goto notimpl;
    if (L > 256 && !(out = (int64_t *)malloc((size_t)L * sizeof(int64_t)))) {
        PyErr_NoMemory();
        goto done;
    }
    const long long m = nk_ivf_probe(bC->buf, bN->buf, sizes, (size_t)L, (size_t)d, q, need, out);
    if (m < 0) {
        PyErr_NoMemory();
        goto done;
    }
    res = nk_array_1d(nk_np_i64, (Py_ssize_t)m, out, sizeof(int64_t));
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    if (out != stack) free(out);
    nk_release(&s);
    return res;
}

PyDoc_STRVAR(ivf_topk_doc,
             "ivf_topk(q, scales, matrix, query, k, candidates, exact_rows, centroids, norms, sizes, offsets, ordered,"
             " need, mask, values, min_value) -> (idx, scores, rows_read) | NotImplemented\n\n"
             "ivf_probe + topk_int8_rerank over the probed lists' runs of rows (see reference.py).\n"
             "NotImplemented when an input is not exactly right (the wrapper then validates).");

static PyObject *nk_py_ivf_topk(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "ivf_topk takes exactly 16 arguments");
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL, *oi = NULL, *os = NULL;
    nk_topk_out out;
    out.idx = out.idx_stack;
    out.sc = out.sc_stack;
    Py_buffer *bQ, *bS, *bM, *bq, *bC, *bN, *bZ, *bO;
    nk_filter64 f;
    double need;
    Py_ssize_t k = PyLong_AsSsize_t(args[4]), cand = PyLong_AsSsize_t(args[5]), exact = PyLong_AsSsize_t(args[6]),
               ordered = PyLong_AsSsize_t(args[11]);
    if ((k == -1 || cand == -1 || exact == -1 || ordered == -1) && PyErr_Occurred()) goto notimpl;
    if (!(bQ = nk_hold(&s, args[0], 'b', 1, 0, NULL, NULL)) || !(bS = nk_hold(&s, args[1], 'f', 4, 0, NULL, NULL)) ||
        !(bM = nk_hold(&s, args[2], 'f', 4, 0, NULL, NULL)) || !(bq = nk_hold(&s, args[3], 'f', 4, 0, NULL, NULL)) ||
        !(bC = nk_hold(&s, args[7], 'f', 4, 0, NULL, NULL)) || !(bN = nk_hold(&s, args[8], 'f', 4, 0, NULL, NULL)) ||
        !(bZ = nk_hold(&s, args[9], 'q', 8, 0, NULL, NULL)) || !(bO = nk_hold(&s, args[10], 'q', 8, 0, NULL, NULL)))
        goto notimpl;
    if (bQ->ndim != 2 || bM->ndim != 2 || bS->ndim != 1 || bq->ndim != 1 || bC->ndim != 2 || bN->ndim != 1 ||
        bZ->ndim != 1 || bO->ndim != 1)
        goto notimpl;
    const Py_ssize_t n = nk_dim(bM, 0), d = nk_dim(bM, 1), L = nk_dim(bC, 0);
    if (nk_dim(bQ, 0) != n || nk_dim(bQ, 1) != d || nk_dim(bS, 0) != n || nk_dim(bq, 0) != d || nk_dim(bC, 1) != d ||
        nk_dim(bN, 0) != L || nk_dim(bZ, 0) != L || nk_dim(bO, 0) != L + 1)
        goto notimpl;
    if (d > 65536 || exact < 0 || ordered < 0 || ordered > n) goto notimpl;
    if (!nk_real(args[12], &need) || !isfinite(need)) goto notimpl;
    const float *q = (const float *)bq->buf;
    for (Py_ssize_t j = 0; j < d; j++)
        if (!isfinite(q[j])) goto notimpl;
    const int64_t *sizes = (const int64_t *)bZ->buf, *offsets = (const int64_t *)bO->buf;
    for (Py_ssize_t j = 0; j < L; j++)
        if (sizes[j] < 0) goto notimpl;
    if (offsets[0] < 0) goto notimpl;
    for (Py_ssize_t j = 0; j < L; j++)
        if (offsets[j + 1] < offsets[j]) goto notimpl;
    if (nk_hold_filter(&s, args[13], args[14], args[15], n, &f) < 0) goto notimpl;
    if (k < 0) k = 0;
    if (k > n) k = n;
    if (cand < k) cand = k;
    if (nk_out_init(&out, k) < 0) goto done;
    int64_t rows_read = 0;
    long long m;
    Py_BEGIN_ALLOW_THREADS
    m = nk_ivf_topk(bQ->buf, bS->buf, bM->buf, (size_t)n, (size_t)d, q, (size_t)k, (size_t)cand, (size_t)exact,
                    bC->buf, bN->buf, sizes, offsets, (size_t)L, (size_t)ordered, need, &f, out.idx, out.sc,
                    &rows_read);
    Py_END_ALLOW_THREADS
    if (nk_out_arrays(&out, m, &oi, &os) < 0) goto done;
    res = Py_BuildValue("(OOL)", oi, os, (long long)rows_read);
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    nk_out_free(&out);
    Py_XDECREF(oi);
    Py_XDECREF(os);
    nk_release(&s);
    return res;
}

/* ---- hot path: two-stage int8 search ------------------------------------------------------- */

PyDoc_STRVAR(topk_int8_rerank_doc,
             "topk_int8_rerank(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows)"
             " -> (idx, scores) | NotImplemented\n\n"
             "int8 x int8 proposal of `candidates` rows, exact float32 re-rank to k (see reference.py).\n"
             "NotImplemented when an input is not exactly right (the wrapper then validates).");

PyDoc_STRVAR(topk_int4_rerank_doc,
             "topk_int4_rerank(q4, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows)"
             " -> (idx, scores) | NotImplemented\n\n"
             "int4 x int8 proposal of `candidates` rows, exact float32 re-rank to k (see reference.py).\n"
             "NotImplemented when an input is not exactly right (the wrapper then validates).");

static PyObject *nk_rerank_common(PyObject *const *args, Py_ssize_t nargs, int bits) {
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "topk_int%d_rerank takes exactly 11 arguments", bits);
        return NULL;
    }
    nk_bufset s;
    s.n = 0;
    PyObject *res = NULL, *oi = NULL, *os = NULL;
    nk_topk_out out;
    out.idx = out.idx_stack;
    out.sc = out.sc_stack;
    Py_buffer *bQ, *bS, *bM, *bq;
    nk_filter64 f;
    Py_ssize_t k = PyLong_AsSsize_t(args[4]), cand = PyLong_AsSsize_t(args[5]);
    if ((k == -1 || cand == -1) && PyErr_Occurred()) goto notimpl;
    if (!(bQ = nk_hold(&s, args[0], bits == 8 ? 'b' : 'B', 1, 0, NULL, NULL)) ||
        !(bS = nk_hold(&s, args[1], 'f', 4, 0, NULL, NULL)) || !(bM = nk_hold(&s, args[2], 'f', 4, 0, NULL, NULL)) ||
        !(bq = nk_hold(&s, args[3], 'f', 4, 0, NULL, NULL)))
        goto notimpl;
    if (bQ->ndim != 2 || bM->ndim != 2 || bS->ndim != 1 || bq->ndim != 1) goto notimpl;
    const Py_ssize_t n = nk_dim(bM, 0), d = nk_dim(bM, 1);
    if (nk_dim(bQ, 0) != n || nk_dim(bQ, 1) != (bits == 8 ? d : (d + 1) / 2) || nk_dim(bS, 0) != n ||
        nk_dim(bq, 0) != d)
        goto notimpl;
    if (d > 65536) goto notimpl; /* int32 sums (validate.INT8_MAX_DIM): the wrapper refuses it */
    const float *q = (const float *)bq->buf;
    for (Py_ssize_t j = 0; j < d; j++)
        if (!isfinite(q[j])) goto notimpl;
    if (nk_hold_filter(&s, args[6], args[7], args[8], n, &f) < 0) goto notimpl;
    const int64_t *ranges = NULL;
    size_t nranges = 0;
    if (args[9] != Py_None) { /* (r, 2) int64, increasing, disjoint, within [0, n] */
        Py_buffer *rb = nk_hold(&s, args[9], 'q', 8, 0, NULL, NULL);
        if (rb == NULL || rb->ndim != 2 || nk_dim(rb, 1) != 2) goto notimpl;
        ranges = (const int64_t *)rb->buf;
        nranges = (size_t)nk_dim(rb, 0);
        int64_t prev = 0;
        for (size_t g = 0; g < nranges; g++) {
            if (ranges[2 * g] < prev || ranges[2 * g + 1] < ranges[2 * g] || ranges[2 * g + 1] > (int64_t)n) goto notimpl;
            prev = ranges[2 * g + 1];
        }
    }
    const int64_t *sel = NULL;
    size_t nsel = 0;
    if (args[10] != Py_None) { /* rows (m,) int64: distinct, within [0, n); replaces ranges */
        if (ranges != NULL) goto notimpl;
        Py_buffer *sb = nk_hold(&s, args[10], 'q', 8, 0, NULL, NULL);
        if (sb == NULL || sb->ndim != 1) goto notimpl;
        sel = (const int64_t *)sb->buf;
        nsel = (size_t)nk_dim(sb, 0);
        uint8_t *seen = (uint8_t *)calloc((size_t)n / 8 + 1, 1);
        if (seen == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        int bad = 0;
        for (size_t j = 0; j < nsel && !bad; j++) {
            const int64_t r = sel[j];
            if (r < 0 || r >= (int64_t)n || (seen[r >> 3] >> (r & 7)) & 1) bad = 1;
            else seen[r >> 3] |= (uint8_t)(1u << (r & 7));
        }
        free(seen);
        if (bad) goto notimpl;
    }
    if (k < 0) k = 0;
    if (k > n) k = n;
    if (cand < k) cand = k;
    if (nk_out_init(&out, k) < 0) goto done;
    long long m;
    if ((double)n * (double)d > 65536.0) {
        Py_BEGIN_ALLOW_THREADS
        m = nk_topk_q_rerank(bits, bQ->buf, bS->buf, bM->buf, (size_t)n, (size_t)d, q, (size_t)k, (size_t)cand, &f,
                             ranges, nranges, sel, nsel, out.idx, out.sc);
        Py_END_ALLOW_THREADS
    } else {
        m = nk_topk_q_rerank(bits, bQ->buf, bS->buf, bM->buf, (size_t)n, (size_t)d, q, (size_t)k, (size_t)cand, &f,
                             ranges, nranges, sel, nsel, out.idx, out.sc);
    }
    if (nk_out_arrays(&out, m, &oi, &os) < 0) goto done;
    res = PyTuple_Pack(2, oi, os);
    goto done;
notimpl:
    PyErr_Clear();
    res = Py_NewRef(Py_NotImplemented);
done:
    nk_out_free(&out);
    Py_XDECREF(oi);
    Py_XDECREF(os);
    nk_release(&s);
    return res;
}

static PyObject *nk_py_topk_int8_rerank(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return nk_rerank_common(args, nargs, 8);
}

static PyObject *nk_py_topk_int4_rerank(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return nk_rerank_common(args, nargs, 4);
}

static PyObject *nk_py_int8_paths(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    const char *names[8];
    int ok[8];
    const size_t c = nk_i8_paths(names, ok, 8);
    PyObject *out = PyList_New((Py_ssize_t)c);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < c; i++) {
        PyObject *t = Py_BuildValue("(sO)", names[i], ok[i] ? Py_True : Py_False);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    return out;
}

static PyObject *nk_py_set_int8_isa(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = NULL;
    if (arg != Py_None && !(name = PyUnicode_AsUTF8(arg))) return NULL;
    const char *got = nk_i8_select(name);
    if (got == NULL) return PyErr_Format(PyExc_ValueError, "int8 path %R is not compiled in or not supported here", arg);
    return PyUnicode_FromString(got);
}

static PyObject *nk_py_int8_isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(nk_i8_isa());
}

static PyObject *nk_py_isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(nk_isa());
}

static PyMethodDef nk_methods[] = {
    {"lora_apply", (PyCFunction)(void (*)(void))nk_py_lora_apply, METH_FASTCALL, lora_apply_doc},
    {"finite_norm", nk_py_finite_norm, METH_O, finite_norm_doc},
    {"instant_step", (PyCFunction)(void (*)(void))nk_py_instant_step, METH_FASTCALL, instant_step_doc},
    {"forward_one", (PyCFunction)(void (*)(void))nk_py_forward_one, METH_FASTCALL, forward_one_doc},
    {"instant_steps", nk_py_instant_steps, METH_VARARGS, instant_steps_doc},
    {"bandit_update", nk_py_bandit_update, METH_VARARGS, bandit_update_doc},
    {"lora_grad", nk_py_lora_grad, METH_VARARGS, lora_grad_doc},
    {"fisher_update", nk_py_fisher_update, METH_VARARGS, fisher_update_doc},
    {"ewc_penalty_grad", nk_py_ewc_penalty_grad, METH_VARARGS, ewc_penalty_grad_doc},
    {"topk", nk_py_topk, METH_VARARGS, topk_doc},
    {"topk_int8", nk_py_topk_int8, METH_VARARGS, topk_int8_doc},
    {"topk_int8_rerank", (PyCFunction)(void (*)(void))nk_py_topk_int8_rerank, METH_FASTCALL, topk_int8_rerank_doc},
    {"topk_int4_rerank", (PyCFunction)(void (*)(void))nk_py_topk_int4_rerank, METH_FASTCALL, topk_int4_rerank_doc},
    {"int8_isa", nk_py_int8_isa, METH_NOARGS, "The int8 dot-product path topk_int8_rerank uses on this CPU."},
    {"int8_paths", nk_py_int8_paths, METH_NOARGS, "[(name, supported here)] of every int8 path compiled in, best first."},
    {"set_int8_isa", nk_py_set_int8_isa, METH_O,
     "set_int8_isa(name | None) -> name: switch the int8 path (None = the best); for tests and benchmarks."},
    {"quantize_int8", nk_py_quantize_int8, METH_VARARGS, quantize_int8_doc},
    {"quantize_int4", nk_py_quantize_int4, METH_VARARGS, quantize_int4_doc},
    {"kmeans_assign", nk_py_kmeans_assign, METH_VARARGS, kmeans_assign_doc},
    {"ivf_probe", (PyCFunction)(void (*)(void))nk_py_ivf_probe, METH_FASTCALL, ivf_probe_doc},
    {"ivf_topk", (PyCFunction)(void (*)(void))nk_py_ivf_topk, METH_FASTCALL, ivf_topk_doc},
    {"hash_embed", nk_py_hash_embed, METH_VARARGS, hash_embed_doc},
    {"qdequant", nk_py_qdequant, METH_VARARGS, qdequant_doc},
    {"qlinear", nk_py_qlinear, METH_VARARGS, qlinear_doc},
    {"q_isa", nk_py_q_isa, METH_NOARGS, "The nf4 decoder the quantised linear kernels use on this CPU."},
    {"isa", nk_py_isa, METH_NOARGS, "The instruction set the kernels run with on this CPU."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef nk_module = {
    PyModuleDef_HEAD_INIT, "_native", "Native kernels of swarm_sona (see nk_kernels.h).", -1,
    nk_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *np = PyImport_ImportModule("numpy");
    if (np == NULL) return NULL;
    nk_np_empty = PyObject_GetAttrString(np, "empty");
    PyObject *dtype = PyObject_GetAttrString(np, "dtype");
    Py_DECREF(np);
    if (nk_np_empty == NULL || dtype == NULL) {
        Py_XDECREF(dtype);
        return NULL;
    }
    nk_np_f32 = PyObject_CallFunction(dtype, "s", "float32");
    nk_np_i64 = PyObject_CallFunction(dtype, "s", "int64");
    Py_DECREF(dtype);
    if (nk_np_f32 == NULL || nk_np_i64 == NULL) return NULL;
    nk_i8_dispatch_init();
    nk_q_dispatch_init();
    return PyModule_Create(&nk_module);
}

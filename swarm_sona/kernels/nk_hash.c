/* The hashing embedder (see swarm_sona/embed.py for the process it reproduces exactly). */
#include <math.h>
#include <string.h>

#include "nk_kernels.h"

#define NK_FNV_OFFSET 0xCBF29CE484222325ULL
#define NK_FNV_PRIME 0x100000001B3ULL

static inline unsigned char nk_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static inline int nk_is_word(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static inline uint64_t nk_fnv(uint64_t h, unsigned char b) { return (h ^ b) * NK_FNV_PRIME; }

static inline void nk_add(double *row, uint64_t h, uint64_t dim, uint64_t pow2_mask, double w) {
    const uint64_t bucket = pow2_mask ? (h & pow2_mask) : (h % dim);
    row[bucket] += (h >> 63) ? -w : w;
}

void nk_hash_text(const unsigned char *s, size_t len, uint64_t dim, double w_word,
                  double w_bigram, double w_char, double *row, float *out) {
    /* when dim is a power of two (> 1), h % dim == h & (dim - 1); mask 0 means use % */
    const uint64_t mask = (dim > 1 && (dim & (dim - 1)) == 0) ? dim - 1 : 0;
    memset(row, 0, (size_t)dim * sizeof(double));
    size_t i = 0, prev_start = 0, prev_len = 0;
    int have_prev = 0;
    while (i < len) {
        if (!nk_is_word(s[i])) {
            i++;
            continue;
        }
        const size_t st = i;
        while (i < len && nk_is_word(s[i])) i++;
        const unsigned char *w = s + st;
        const size_t wl = i - st;
        uint64_t h = nk_fnv(NK_FNV_OFFSET, 'w');
        for (size_t t = 0; t < wl; t++) h = nk_fnv(h, nk_lower(w[t]));
        nk_add(row, h, dim, mask, w_word);
        if (have_prev) {
            h = nk_fnv(NK_FNV_OFFSET, 'b');
            for (size_t t = 0; t < prev_len; t++) h = nk_fnv(h, nk_lower(s[prev_start + t]));
            h = nk_fnv(h, ' ');
            for (size_t t = 0; t < wl; t++) h = nk_fnv(h, nk_lower(w[t]));
            nk_add(row, h, dim, mask, w_bigram);
        }
        have_prev = 1;
        prev_start = st;
        prev_len = wl;
        /* byte 3-grams of "<" + word + ">": wl windows starting at padded positions 0..wl-1 */
        for (size_t p = 0; p < wl; p++) {
            h = nk_fnv(NK_FNV_OFFSET, 'c');
            for (size_t q = p; q < p + 3; q++) {
                const unsigned char b = q == 0 ? '<' : (q == wl + 1 ? '>' : nk_lower(w[q - 1]));
                h = nk_fnv(h, b);
            }
            nk_add(row, h, dim, mask, w_char);
        }
    }
    double ss = 0.0;
    for (uint64_t j = 0; j < dim; j++) ss += row[j] * row[j];
    const double nrm = sqrt(ss);
    if (nrm > 0) {
        for (uint64_t j = 0; j < dim; j++) out[j] = (float)(row[j] / nrm);
    } else {
        for (uint64_t j = 0; j < dim; j++) out[j] = (float)row[j];
    }
}

"""C source of the compiled CPU engine of the Izhikevich reservoir (see ``compiled.py``).

Kept as a Python string so that it ships with the package (no package-data entry needed);
``compiled.py`` writes it to its cache directory and builds it with the system C compiler.
Compiled with ``-ffp-contract=off`` (and no fast-math): every multiply and add below is one
IEEE operation rounded once, in the order of ``naive.py``'s reference step.
"""

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

/* ---- uniform bits: xoshiro256** (Blackman & Vigna 2018), seeded by splitmix64 ----
   The generator state is RNG_WORDS uint64: one scalar stream (words 0-3, for the rare
   slow path of the ziggurat) and LANES interleaved streams (words 4.., lane l of word k at
   4 + k * LANES + l) advanced together as one vector. */

#define LANES 4
#define RNG_WORDS (4 + 4 * LANES)
typedef uint64_t u64v __attribute__((vector_size(8 * LANES)));
typedef int64_t i64v __attribute__((vector_size(8 * LANES)));
typedef double f64v __attribute__((vector_size(8 * LANES)));

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline u64v rotl64v(u64v x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_bits(uint64_t *s) {
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

int64_t nb_rng_words(void) { return RNG_WORDS; }

void nb_rng_seed(uint64_t seed, uint64_t *s) {
    for (int i = 0; i < RNG_WORDS; i++) {  /* splitmix64 */
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        s[i] = z ^ (z >> 31);
    }
}

/* ---- standard normal: ziggurat of Marsaglia & Tsang (2000), 256 layers ----
   f(x) = exp(-x^2 / 2); layer i (1 <= i < 256) is [0, X[i]] x [f(X[i]), f(X[i+1])], of
   area V; layer 0 is [0, R] x [0, f(R)] plus the tail x > R, of area V, drawn as the
   rectangle [0, V / f(R)] x [0, f(R)]. A draw from 64 random bits: bits 0-7 pick the
   layer, bit 8 the sign, bits 12-63 u in [0, 1); x = u X[i] is accepted at once when
   x < X[i+1] (under the curve); else layer 0 draws from the tail (Marsaglia 1964) and other
   layers test a uniform height against f(x), and a rejected draw starts over with fresh
   bits. Exact: accepted x are distributed as |N(0, 1)|. The fast test runs on LANES
   candidates at once; rejected lanes (~1%) finish on the scalar stream, so every output
   is one complete run of the algorithm on its own bits. */

#define ZIG_LAYERS 256
static const double ZIG_R = 3.6541528853610088;
static const double ZIG_V = 4.92867323399e-3;
static double zig_x[ZIG_LAYERS + 1], zig_f[ZIG_LAYERS + 1];

double nb_ziggurat_init(void) {
    /* returns f(X[255]) + V / X[255], which is 1 when R and V close the ziggurat */
    zig_x[0] = ZIG_V / exp(-0.5 * ZIG_R * ZIG_R);
    zig_x[1] = ZIG_R;
    zig_f[0] = 0.0;
    zig_f[1] = exp(-0.5 * ZIG_R * ZIG_R);
    for (int i = 1; i < ZIG_LAYERS - 1; i++) {
        zig_x[i + 1] = sqrt(-2.0 * log(zig_f[i] + ZIG_V / zig_x[i]));
        zig_f[i + 1] = exp(-0.5 * zig_x[i + 1] * zig_x[i + 1]);
    }
    zig_x[ZIG_LAYERS] = 0.0;
    zig_f[ZIG_LAYERS] = 1.0;
    return zig_f[ZIG_LAYERS - 1] + ZIG_V / zig_x[ZIG_LAYERS - 1];
}

static inline double open_uniform(uint64_t *s) {  /* (0, 1] */
    return (double)(int64_t)((next_bits(s) >> 11) + 1) * 0x1.0p-53;
}

static inline double with_sign(double x, uint64_t sign_bit) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits ^= sign_bit;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline double candidate(uint64_t r, int *layer) {  /* u X[layer], from bits 0-7, 12-63 */
    const uint64_t ubits = (r >> 12) | 0x3ff0000000000000ULL;
    double u;
    memcpy(&u, &ubits, sizeof u);
    *layer = (int)(r & 255u);
    return (u - 1.0) * zig_x[*layer];
}

static double finish_normal(uint64_t *s, int layer, double x, uint64_t sign_bit) {
    /* a candidate that failed the fast test: tail or wedge, then fresh draws */
    for (;;) {
        if (layer == 0) {
            double a, b;
            do {
                a = -log(open_uniform(s)) / ZIG_R;
                b = -log(open_uniform(s));
            } while (b + b < a * a);
            return with_sign(ZIG_R + a, sign_bit);
        }
        const double height = zig_f[layer] + open_uniform(s) * (zig_f[layer + 1] - zig_f[layer]);
        if (height < exp(-0.5 * x * x)) return with_sign(x, sign_bit);
        const uint64_t r = next_bits(s);
        x = candidate(r, &layer);
        sign_bit = (r & 256u) << 55;
        if (x < zig_x[layer + 1]) return with_sign(x, sign_bit);
    }
}

/* count N(0, 1) draws into out (count rounded up to a multiple of LANES: out must hold it) */
static void fill_normal(uint64_t *rng, double *out, int64_t count) {
    u64v s0, s1, s2, s3;
    uint64_t *lanes = rng + 4;
    memcpy(&s0, lanes, sizeof s0);
    memcpy(&s1, lanes + LANES, sizeof s1);
    memcpy(&s2, lanes + 2 * LANES, sizeof s2);
    memcpy(&s3, lanes + 3 * LANES, sizeof s3);
    for (int64_t i = 0; i < count; i += LANES) {
        const u64v r = rotl64v(s1 * 5, 7) * 9;
        const u64v t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = rotl64v(s3, 45);
        const u64v layer = r & 255u;
        f64v width, next;
        for (int l = 0; l < LANES; l++) {
            width[l] = zig_x[layer[l]];
            next[l] = zig_x[layer[l] + 1];
        }
        const u64v ubits = (r >> 12) | 0x3ff0000000000000ULL;
        f64v u;
        memcpy(&u, &ubits, sizeof u);
        const f64v x = (u - 1.0) * width;
        const i64v reject = x >= next;
        u64v signed_bits;
        memcpy(&signed_bits, &x, sizeof signed_bits);
        signed_bits ^= (r & 256u) << 55;
        memcpy(out + i, &signed_bits, sizeof signed_bits);
        uint64_t any = 0;
        for (int l = 0; l < LANES; l++) any |= (uint64_t)reject[l];
        if (any)
            for (int l = 0; l < LANES; l++)
                if (reject[l]) out[i + l] = finish_normal(rng, (int)layer[l], x[l], (r[l] & 256u) << 55);
    }
    memcpy(lanes, &s0, sizeof s0);
    memcpy(lanes + LANES, &s1, sizeof s1);
    memcpy(lanes + 2 * LANES, &s2, sizeof s2);
    memcpy(lanes + 3 * LANES, &s3, sizeof s3);
}

void nb_fill_normal(uint64_t *rng, double *out, int64_t count) { fill_normal(rng, out, count); }

/* ---- the network loop (REAL: float or double, chosen at build time) ----
   state [B, 3N+1] = [v | u | I_syn | sink] per network; per step and network: drive d
   (given, or (z * noise_scale + input) + 140), the split-Euler update of naive.py
   (hc = (d [+ I_syn] - u) h; v = (v k1 + k2) v + hc twice; u = v u_v_gain + u u_decay;
   I_syn *= synapse_decay), threshold v >= v_peak, delivery of the spiking neurons' table
   rows in ascending (neuron, column) order, reset v = c, finiteness of v and u.
   status[0..5] out: steps done, spikes written, diverged step (-1: none), its network,
   neuron, and 1 if v (0 if u) was the first non-finite value. With trace (else NULL):
   the spike traces [B, N] advanced in place, each step's copied to traces_out (network
   b's row at b * traces_stride + t * N). */

#define DEFINE_RUN(REAL, UINT, EXP_MASK)                                                            \
int64_t nb_run(                                                                                     \
    int64_t num_steps, int64_t batch, int64_t n, int64_t width,                                     \
    REAL *state, const REAL *drive, int64_t drive_complete, const REAL *noise_scale,                \
    uint64_t *rng, double *normal, REAL *scratch,                                                   \
    REAL half_step, REAL k1, REAL k2, const REAL *u_decay, const REAL *u_v_gain,                    \
    const REAL *v_reset, REAL v_peak, int64_t exponential, REAL synapse_decay,                      \
    const int64_t *targets, int64_t shared_targets, const REAL *weights,                            \
    int64_t *spikes_out, int64_t capacity, int64_t *counts_out, int64_t first_step,                 \
    int64_t *status, REAL *trace, REAL trace_decay, REAL *traces_out, int64_t traces_stride)        \
{                                                                                                   \
    const int64_t row = 3 * n + 1;                                                                  \
    int64_t written = 0, t;                                                                         \
    status[2] = -1;                                                                                 \
    for (t = 0; t < num_steps; t++) {                                                               \
        if (capacity - written < batch * n) break;                                                  \
        const int64_t step_start = written;                                                         \
        for (int64_t b = 0; b < batch; b++) {                                                       \
            REAL *v = state + b * row, *u = v + n, *isyn = v + 2 * n;                               \
            const REAL *ud = u_decay + b * n, *ug = u_v_gain + b * n, *c = v_reset + b * n;         \
            const REAL *base = drive ? drive + (t * batch + b) * n : 0;                             \
            REAL *d = scratch;                                                                      \
            if (noise_scale) {                                                                      \
                const REAL *scale = noise_scale + b * n;                                            \
                fill_normal(rng, normal, n);                                                        \
                for (int64_t j = 0; j < n; j++) d[j] = (REAL)normal[j] * scale[j];                  \
                if (base) for (int64_t j = 0; j < n; j++) d[j] = d[j] + base[j];                    \
                for (int64_t j = 0; j < n; j++) d[j] = d[j] + (REAL)140.0;                          \
            } else if (base && drive_complete) {                                                    \
                d = (REAL *)base;                                                                   \
            } else {                                                                                \
                for (int64_t j = 0; j < n; j++) d[j] = (base ? base[j] : (REAL)0.0) + (REAL)140.0;  \
            }                                                                                       \
            for (int64_t j = 0; j < n; j++) {                                                       \
                REAL hc = exponential ? (d[j] + isyn[j]) - u[j] : d[j] - u[j];                      \
                hc = hc * half_step;                                                                \
                REAL vj = v[j], uj = u[j];                                                          \
                REAL decayed = uj * ud[j];                                                          \
                REAL tt = vj * k1; tt = tt + k2; tt = tt * vj; vj = tt + hc;                        \
                tt = vj * k1; tt = tt + k2; tt = tt * vj; vj = tt + hc;                             \
                tt = vj * ug[j];                                                                    \
                v[j] = vj;                                                                          \
                u[j] = tt + decayed;                                                                \
                if (exponential) isyn[j] = isyn[j] * synapse_decay;                                 \
            }                                                                                       \
            /* threshold: groups of 16 compared at once (vectorised), the members of groups         \
               that fired one by one; each spike's table rows are prefetched as it is found         \
               (the weights of a batch mostly miss the L2 cache) */                                 \
            const int64_t first = written;                                                          \
            for (int64_t j0 = 0; j0 < n; j0 += 16) {                                                \
                const int64_t end = j0 + 16 < n ? j0 + 16 : n;                                      \
                int fired = 0;                                                                      \
                if (end - j0 == 16)                                                                 \
                    for (int l = 0; l < 16; l++) fired |= v[j0 + l] >= v_peak;                      \
                else                                                                                \
                    fired = 1;                                                                      \
                if (!fired) continue;                                                               \
                for (int64_t j = j0; j < end; j++) {                                                \
                    if (!(v[j] >= v_peak)) continue;                                                \
                    const int64_t g = b * n + j;                                                    \
                    spikes_out[written++] = g;                                                      \
                    const char *pw = (const char *)(weights + g * width);                           \
                    const char *pt = (const char *)(targets + (shared_targets ? j : g) * width);    \
                    for (int64_t o = 0; o < width * (int64_t)sizeof(REAL); o += 64) __builtin_prefetch(pw + o); \
                    for (int64_t o = 0; o < width * 8; o += 64) __builtin_prefetch(pt + o);         \
                }                                                                                   \
            }                                                                                       \
            const int64_t shift = shared_targets ? b * row : 0;                                     \
            for (int64_t k = first; k < written; k++) {                                             \
                const int64_t g = spikes_out[k];                                                    \
                const int64_t *tr = targets + (shared_targets ? g - b * n : g) * width;             \
                const REAL *wr = weights + g * width;                                               \
                for (int64_t col = 0; col < width; col++) {                                         \
                    REAL *slot = state + tr[col] + shift;                                           \
                    *slot = *slot + wr[col];                                                        \
                }                                                                                   \
            }                                                                                       \
            for (int64_t k = first; k < written; k++) {                                             \
                const int64_t j = spikes_out[k] - b * n;                                            \
                v[j] = c[j];                                                                        \
            }                                                                                       \
            if (trace) {  /* r = r d + s (eager: trace.mul_(d).add_(spikes)), recorded per step */  \
                REAL *r = trace + b * n, *out = traces_out + b * traces_stride + t * n;             \
                for (int64_t j = 0; j < n; j++) r[j] = r[j] * trace_decay;                          \
                for (int64_t k = first; k < written; k++) {                                         \
                    const int64_t j = spikes_out[k] - b * n;                                        \
                    r[j] = r[j] + (REAL)1.0;                                                        \
                }                                                                                   \
                memcpy(out, r, (size_t)n * sizeof(REAL));                                           \
            }                                                                                       \
            UINT bad = 0;                                                                           \
            for (int64_t j = 0; j < 2 * n; j++) {                                                   \
                UINT bits; memcpy(&bits, v + j, sizeof bits);                                       \
                bad |= (UINT)((bits & EXP_MASK) == EXP_MASK);                                       \
            }                                                                                       \
            if (bad) {  /* stop here (later networks of this step not advanced): the caller   \
                           raises SimulationDiverged and its state buffer is a copy */             \
                for (int64_t j = 0; j < 2 * n; j++) {                                               \
                    UINT bits; memcpy(&bits, v + j, sizeof bits);                                   \
                    if ((bits & EXP_MASK) == EXP_MASK) {                                            \
                        status[2] = first_step + t; status[3] = b; status[4] = j % n;               \
                        status[5] = j < n; break;                                                   \
                    }                                                                               \
                }                                                                                   \
                counts_out[t] = written - step_start;                                               \
                status[0] = t + 1; status[1] = written;                                             \
                return 1;                                                                           \
            }                                                                                       \
        }                                                                                           \
        counts_out[t] = written - step_start;                                                       \
    }                                                                                               \
    status[0] = t; status[1] = written;                                                             \
    return 0;                                                                                       \
}

/* one real type per build (-DNB_F32 or -DNB_F64): half the compile time */
#ifdef NB_F32
DEFINE_RUN(float, uint32_t, 0x7f800000u)
#endif
#ifdef NB_F64
DEFINE_RUN(double, uint64_t, 0x7ff0000000000000ull)
#endif
"""

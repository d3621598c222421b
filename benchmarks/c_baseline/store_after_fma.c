/* Why the first layer's update is a multiply and an add rather than a fused multiply-add.
 *
 * The fused per-sample step (kernels/simd.py, step_and_accumulate) runs down the rows of
 * a 100 x 64 float32 weight matrix in blocks of four AVX registers: load w, update it, store
 * it back, and add x_next * w to the block's pre-activations. This program times that loop
 * with the updated w made by a fused multiply-add and by a multiply and an add. On the
 * project's Zen 3 the first runs at 1.9-2.1 cycles per register and the second at 1.1-1.2
 * (the loop without its store: ~1.05), in rounds when the machine is otherwise quiet; in busy
 * spells both read ~2.1. Build and run (x86-64 with AVX2 and FMA):
 *
 *     gcc -O3 -march=native -ffp-contract=off -o store_after_fma store_after_fma.c
 *     ./store_after_fma 3.15     # the CPU's clock in GHz, to print cycles per register
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROWS 100
#define COLS 64
#define BLOCK 32 /* four registers of eight floats */

static float W[ROWS * COLS] __attribute__((aligned(64)));
static float X[2][ROWS] __attribute__((aligned(64)));
static float Z[COLS] __attribute__((aligned(64)));
static float MINUS_LR_DELTA[COLS] __attribute__((aligned(64)));

static __m256 update_fma(__m256 w, __m256 x, __m256 minus_lr_delta) {
    return _mm256_fmadd_ps(x, minus_lr_delta, w);
}

static __m256 update_mul_add(__m256 w, __m256 x, __m256 minus_lr_delta) {
    return _mm256_add_ps(w, _mm256_mul_ps(x, minus_lr_delta));
}

#define STEP(name, update)                                                                   \
    __attribute__((noinline)) static void name(const float *x, const float *x_next) {        \
        for (int b = 0; b < COLS; b += BLOCK) {                                              \
            __m256 z[4], d[4];                                                               \
            for (int r = 0; r < 4; r++) {                                                    \
                z[r] = _mm256_load_ps(Z + b + 8 * r);                                        \
                d[r] = _mm256_load_ps(MINUS_LR_DELTA + b + 8 * r);                           \
            }                                                                                \
            for (int k = 0; k < ROWS; k++) {                                                 \
                float *row = W + k * COLS + b;                                               \
                __m256 xk = _mm256_broadcast_ss(x + k), nk = _mm256_broadcast_ss(x_next + k); \
                for (int r = 0; r < 4; r++) {                                                \
                    __m256 w = update(_mm256_load_ps(row + 8 * r), xk, d[r]);                \
                    _mm256_store_ps(row + 8 * r, w);                                         \
                    z[r] = _mm256_fmadd_ps(nk, w, z[r]);                                     \
                }                                                                            \
            }                                                                                \
            for (int r = 0; r < 4; r++) _mm256_store_ps(Z + b + 8 * r, z[r]);                \
        }                                                                                    \
    }

STEP(step_fma, update_fma)
STEP(step_mul_add, update_mul_add)

static double seconds(void (*step)(const float *, const float *), int samples) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int s = 0; s < samples; s++) step(X[s & 1], X[(s + 1) & 1]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
}

int main(int argc, char **argv) {
    double ghz = argc > 1 ? atof(argv[1]) : 3.15;
    for (int i = 0; i < ROWS * COLS; i++) W[i] = 1e-3f * (i % 7);
    for (int k = 0; k < ROWS; k++) X[0][k] = 0.01f * k, X[1][k] = -0.01f * k;
    for (int j = 0; j < COLS; j++) MINUS_LR_DELTA[j] = 1e-6f;
    const int samples = 200000, registers = ROWS * COLS / 8;
    for (int round = 0; round < 3; round++) {
        double fma = seconds(step_fma, samples), mul_add = seconds(step_mul_add, samples);
        printf("multiply-add stored: %.2f cycles/register   multiply, add stored: %.2f\n",
               fma / samples * ghz * 1e9 / registers, mul_add / samples * ghz * 1e9 / registers);
    }
    return 0;
}

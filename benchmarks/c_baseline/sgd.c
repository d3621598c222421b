/* Straightforward per-sample SGD, d-h-1 MLP: ReLU hidden, sigmoid output, BCE loss.
   Weights stored (fan_out, fan_in) as a naive C programmer would: W1[j*d + k]. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static unsigned long long s = 88172645463325252ULL;
static double urand(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (s >> 11) * (1.0 / 9007199254740992.0); }
static double nrand(void) { double u = urand() + 1e-300, v = urand(); return sqrt(-2 * log(u)) * cos(6.283185307179586 * v); }

int main(int argc, char **argv) {
    int d = atoi(argv[1]), h = atoi(argv[2]), n = atoi(argv[3]), epochs = atoi(argv[4]);
    double lr = 0.01;
    double *X = malloc(sizeof(double) * n * d), *y = malloc(sizeof(double) * n);
    double *W1 = malloc(sizeof(double) * h * d), *b1 = calloc(h, sizeof(double));
    double *W2 = malloc(sizeof(double) * h), b2 = 0;
    double *a = malloc(sizeof(double) * h), *dz = malloc(sizeof(double) * h);
    int *order = malloc(sizeof(int) * n);
    double *w = malloc(sizeof(double) * d);
    for (int k = 0; k < d; k++) w[k] = nrand();
    for (int i = 0; i < n; i++) {
        double t = 0;
        for (int k = 0; k < d; k++) { X[i * d + k] = nrand(); t += X[i * d + k] * w[k]; }
        y[i] = t + 0.3 * sqrt(d) * nrand() > 0;
    }
    double lim1 = sqrt(6.0 / (d + h)), lim2 = sqrt(6.0 / (h + 1));
    for (int i = 0; i < h * d; i++) W1[i] = (2 * urand() - 1) * lim1;
    for (int j = 0; j < h; j++) W2[j] = (2 * urand() - 1) * lim2;
    double best = 1e30, loss = 0;
    for (int e = 0; e < epochs; e++) {
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = n - 1; i > 0; i--) { int j = (int)(urand() * (i + 1)); int t = order[i]; order[i] = order[j]; order[j] = t; }
        double t0 = now();
        loss = 0;
        for (int s_ = 0; s_ < n; s_++) {
            const double *x = X + (size_t)order[s_] * d;
            double yi = y[order[s_]];
            double z2 = b2;
            for (int j = 0; j < h; j++) {
                double z = b1[j];
                for (int k = 0; k < d; k++) z += W1[j * d + k] * x[k];
                a[j] = z > 0 ? z : 0;
                z2 += W2[j] * a[j];
            }
            double p = 1 / (1 + exp(-z2));
            loss += fmax(z2, 0) - yi * z2 + log1p(exp(-fabs(z2)));
            double d2 = p - yi;
            for (int j = 0; j < h; j++) {
                dz[j] = a[j] > 0 ? d2 * W2[j] : 0;
                W2[j] -= lr * d2 * a[j];
            }
            b2 -= lr * d2;
            for (int j = 0; j < h; j++) {
                double g = dz[j];
                for (int k = 0; k < d; k++) W1[j * d + k] -= lr * g * x[k];
                b1[j] -= lr * g;
            }
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("%d-%d-1 C: %.4g samples/s (best epoch %.4f s, last loss %.4f)\n", d, h, n / best, best, loss / n);
    return 0;
}

/* The classic RMSProp example through the C API: a 10 -> 50 -> 1 ReLU network fitted with MSE,
 * forward and backward written by hand, weights updated in place by rmsprop_step_f32.
 * Must not contain optimizer math (that is the library's job).
 *
 * Usage: simple_net [DATA]
 *   DATA: raw float32 x[100*10], y[100], w1[50*10], b1[50], w2[50], b2[1] (what
 *   examples/simple_net.py draws; tests/test_hosts.py writes it). Without it the data come from
 *   a small built-in generator, so the losses differ from the Python example's.
 * Exit status 0 when the last loss is below 0.8 times the first. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <rmsprop/rmsprop.h>

enum { kBatch = 100, kIn = 10, kHidden = 50, kEpochs = 10 };

typedef struct {
  float x[kBatch * kIn], y[kBatch];
  float w1[kHidden * kIn], b1[kHidden], w2[kHidden], b2[1];
} Data;

/* splitmix64 and Box-Muller: enough for a demo without a data file. */
static uint64_t rng_state = 0;
static double uniform01(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static float normal(void) {
  const double u = 1.0 - uniform01(), v = uniform01();
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static void fill_uniform(float* a, int n, int fan_in) { /* torch's Linear init */
  const double bound = 1.0 / sqrt((double)fan_in);
  for (int i = 0; i < n; ++i) a[i] = (float)(-bound + 2.0 * bound * uniform01());
}

static int load(Data* d, const char* path) {
  if (path == NULL) {
    for (int i = 0; i < kBatch * kIn; ++i) d->x[i] = normal();
    for (int i = 0; i < kBatch; ++i) d->y[i] = normal();
    fill_uniform(d->w1, kHidden * kIn, kIn);
    fill_uniform(d->b1, kHidden, kIn);
    fill_uniform(d->w2, kHidden, kHidden);
    fill_uniform(d->b2, 1, kHidden);
    return 0;
  }
  FILE* f = fopen(path, "rb");
  if (f == NULL) return -1;
  const size_t n = fread(d, sizeof(float), sizeof(Data) / sizeof(float), f);
  fclose(f);
  return n == sizeof(Data) / sizeof(float) ? 0 : -1;
}

/* Loss and gradients of the MSE over the batch; sums in double, stored as float32. */
static float loss_and_grads(const Data* d, float* gw1, float* gb1, float* gw2, float* gb2) {
  static float pre[kBatch * kHidden], hid[kBatch * kHidden], dout[kBatch];
  double loss = 0.0;
  for (int n = 0; n < kBatch; ++n) {
    double out = d->b2[0];
    for (int h = 0; h < kHidden; ++h) {
      double s = d->b1[h];
      for (int i = 0; i < kIn; ++i) s += (double)d->x[n * kIn + i] * d->w1[h * kIn + i];
      pre[n * kHidden + h] = (float)s;
      hid[n * kHidden + h] = s > 0.0 ? (float)s : 0.0f;
      out += (double)hid[n * kHidden + h] * d->w2[h];
    }
    const double diff = (double)(float)out - d->y[n];
    loss += diff * diff;
    dout[n] = (float)(2.0 / kBatch * diff);
  }
  double b2 = 0.0;
  for (int n = 0; n < kBatch; ++n) b2 += dout[n];
  gb2[0] = (float)b2;
  for (int h = 0; h < kHidden; ++h) {
    double w2 = 0.0, b1 = 0.0, w1[kIn] = {0};
    for (int n = 0; n < kBatch; ++n) {
      w2 += (double)dout[n] * hid[n * kHidden + h];
      const double dh = pre[n * kHidden + h] > 0.0f ? (double)(float)(dout[n] * d->w2[h]) : 0.0;
      b1 += dh;
      for (int i = 0; i < kIn; ++i) w1[i] += dh * d->x[n * kIn + i];
    }
    gw2[h] = (float)w2;
    gb1[h] = (float)b1;
    for (int i = 0; i < kIn; ++i) gw1[h * kIn + i] = (float)w1[i];
  }
  return (float)(loss / kBatch);
}

int main(int argc, char** argv) {
  static Data d;
  if (load(&d, argc > 1 ? argv[1] : NULL) != 0) {
    fprintf(stderr, "cannot read %zu floats from %s\n", sizeof(Data) / sizeof(float), argv[1]);
    return 2;
  }
  static float gw1[kHidden * kIn], gb1[kHidden], gw2[kHidden], gb2[1];
  static float v_w1[kHidden * kIn], v_b1[kHidden], v_w2[kHidden], v_b2[1]; /* zero state */
  rmsprop_tensor_f32 tensors[4] = {
      {d.w1, gw1, v_w1, NULL, NULL, kHidden * kIn, 0},
      {d.b1, gb1, v_b1, NULL, NULL, kHidden, 0},
      {d.w2, gw2, v_w2, NULL, NULL, kHidden, 0},
      {d.b2, gb2, v_b2, NULL, NULL, 1, 0},
  };
  rmsprop_options options;
  rmsprop_options_init(&options, sizeof options);
  options.lr = 0.01;
  options.alpha = 0.9;
  options.eps = 1e-8;
  char message[256];
  float first = 0.0f, loss = 0.0f;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    loss = loss_and_grads(&d, gw1, gb1, gw2, gb2);
    if (epoch == 1) first = loss;
    for (int k = 0; k < 4; ++k) tensors[k].step = epoch;
    if (rmsprop_step_f32(&options, tensors, 4, message, sizeof message) != RMSPROP_OK) {
      fprintf(stderr, "rmsprop_step_f32: %s\n", message);
      return 1;
    }
    printf("Epoch [%d/%d], Loss: %.4f\n", epoch, kEpochs, (double)loss);
  }
  printf("rmsprop %s, isa %s, %d thread(s)\n", rmsprop_version(), rmsprop_active_isa(),
         (int)rmsprop_get_num_threads());
  return loss < 0.8f * first ? 0 : 1;
}

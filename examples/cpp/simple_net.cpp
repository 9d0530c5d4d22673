// The classic RMSProp example through the C++ API (rmsprop.hpp, target rmsprop::core): a
// 10 -> 50 -> 1 ReLU network fitted with MSE, weights updated in place by rmsprop::step.
// Must not contain optimizer math (that is the library's job).
//
// Usage: simple_net [DATA]  (the same data file as the C example; see examples/c/simple_net.c)
// Exit status 0 when the last loss is below 0.8 times the first.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <vector>

#include <rmsprop/rmsprop.hpp>

namespace {

constexpr int kBatch = 100;
constexpr int kIn = 10;
constexpr int kHidden = 50;
constexpr int kEpochs = 10;

struct Net {
  std::vector<float> x = std::vector<float>(kBatch * kIn), y = std::vector<float>(kBatch);
  std::vector<float> w1 = std::vector<float>(kHidden * kIn), b1 = std::vector<float>(kHidden);
  std::vector<float> w2 = std::vector<float>(kHidden), b2 = std::vector<float>(1);

  std::vector<std::vector<float>*> all() { return {&x, &y, &w1, &b1, &w2, &b2}; }
  std::vector<std::vector<float>*> params() { return {&w1, &b1, &w2, &b2}; }
};

void load(Net& net, const char* path) {
  if (path == nullptr) {  // built-in data: the losses then differ from the Python example's
    std::mt19937_64 gen(0);
    std::normal_distribution<float> normal;
    for (float& v : net.x) v = normal(gen);
    for (float& v : net.y) v = normal(gen);
    const auto init = [&](std::vector<float>& a, int fan_in) {  // torch's Linear init
      const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
      std::uniform_real_distribution<float> uniform(-bound, bound);
      for (float& v : a) v = uniform(gen);
    };
    init(net.w1, kIn);
    init(net.b1, kIn);
    init(net.w2, kHidden);
    init(net.b2, kHidden);
    return;
  }
  std::ifstream in(path, std::ios::binary);
  for (std::vector<float>* a : net.all()) {
    in.read(reinterpret_cast<char*>(a->data()), static_cast<std::streamsize>(a->size() * 4));
  }
  if (!in) throw std::runtime_error(std::string("cannot read the data file ") + path);
}

// MSE loss and its gradients; sums in double, stored as float32 (as the C example does).
float loss_and_grads(const Net& n, std::vector<std::vector<float>>& g) {
  std::vector<float> pre(kBatch * kHidden), hid(kBatch * kHidden), dout(kBatch);
  double loss = 0.0;
  for (int b = 0; b < kBatch; ++b) {
    double out = n.b2[0];
    for (int h = 0; h < kHidden; ++h) {
      double s = n.b1[h];
      for (int i = 0; i < kIn; ++i) s += double{n.x[b * kIn + i]} * n.w1[h * kIn + i];
      pre[b * kHidden + h] = static_cast<float>(s);
      hid[b * kHidden + h] = s > 0.0 ? static_cast<float>(s) : 0.0f;
      out += double{hid[b * kHidden + h]} * n.w2[h];
    }
    const double diff = double{static_cast<float>(out)} - n.y[b];
    loss += diff * diff;
    dout[b] = static_cast<float>(2.0 / kBatch * diff);
  }
  double b2 = 0.0;
  for (float d : dout) b2 += d;
  g[3][0] = static_cast<float>(b2);
  for (int h = 0; h < kHidden; ++h) {
    double w2 = 0.0, b1 = 0.0, w1[kIn] = {};
    for (int b = 0; b < kBatch; ++b) {
      w2 += double{dout[b]} * hid[b * kHidden + h];
      const double dh = pre[b * kHidden + h] > 0.0f ? double{dout[b] * n.w2[h]} : 0.0;
      b1 += dh;
      for (int i = 0; i < kIn; ++i) w1[i] += dh * n.x[b * kIn + i];
    }
    g[2][h] = static_cast<float>(w2);
    g[1][h] = static_cast<float>(b1);
    for (int i = 0; i < kIn; ++i) g[0][h * kIn + i] = static_cast<float>(w1[i]);
  }
  return static_cast<float>(loss / kBatch);
}

}  // namespace

int main(int argc, char** argv) try {
  Net net;
  load(net, argc > 1 ? argv[1] : nullptr);
  std::vector<std::vector<float>> grads, square_avg;
  std::vector<rmsprop::TensorSpan<float>> spans;
  for (std::vector<float>* p : net.params()) {
    grads.emplace_back(p->size());
    square_avg.emplace_back(p->size(), 0.0f);
  }
  for (std::size_t k = 0; k < grads.size(); ++k) {
    rmsprop::TensorSpan<float> s;
    s.param = net.params()[k]->data();
    s.grad = grads[k].data();
    s.square_avg = square_avg[k].data();
    s.size = grads[k].size();
    spans.push_back(s);
  }
  rmsprop::Options options;  // torch's defaults
  options.lr = 0.01;
  options.alpha = 0.9;
  options.eps = 1e-8;
  float first = 0.0f, loss = 0.0f;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    loss = loss_and_grads(net, grads);
    if (epoch == 1) first = loss;
    for (auto& s : spans) s.step = epoch;
    rmsprop::step(options, spans.data(), spans.size());
    std::printf("Epoch [%d/%d], Loss: %.4f\n", epoch, kEpochs, static_cast<double>(loss));
  }
  std::printf("isa %s, %d thread(s)\n", rmsprop::isa_name(rmsprop::active_isa()).c_str(),
              rmsprop::num_threads());
  return loss < 0.8f * first ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}

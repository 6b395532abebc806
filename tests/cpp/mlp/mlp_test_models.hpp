// Seeded random rankers and the float32 reference forward pass the int8 path is held to.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "recserve/mlp/model.hpp"

namespace recserve::mlp::testing {

// He-initialised layers of the given widths, small random biases; the heads are sigmoids except
// the last, which is identity when identity_last is set.
inline Model random_float_model(const std::vector<std::uint32_t>& widths, std::uint32_t seed,
                                bool identity_last = false) {
    std::mt19937 rng(seed);
    Model m;
    for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
        Layer& l = m.layers.emplace_back();
        l.in = widths[i];
        l.out = widths[i + 1];
        std::normal_distribution<float> w(0.0f, std::sqrt(2.0f / static_cast<float>(l.in)));
        std::normal_distribution<float> b(0.0f, 0.1f);
        for (std::size_t j = 0; j < std::size_t{l.in} * l.out; ++j) l.weight.push_back(w(rng));
        for (std::size_t j = 0; j < l.out; ++j) l.bias.push_back(b(rng));
    }
    for (std::uint32_t h = 0; h < widths.back(); ++h) {
        m.heads.push_back("head" + std::to_string(h));
        const bool identity = identity_last && h + 1 == widths.back();
        m.activations.push_back(identity ? Activation::kIdentity : Activation::kSigmoid);
    }
    m.metadata = R"({"feature_spec": {"names": ["a", "b"]}})";
    return m;
}

inline std::vector<float> random_inputs(std::size_t rows, std::size_t dims, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> x(0.0f, 1.0f);
    std::vector<float> v(rows * dims);
    for (float& f : v) f = x(rng);
    return v;
}

// The float forward pass in double: ReLU hidden layers, per-head activations.
inline std::vector<float> reference_predict(const Model& m, const std::vector<float>& x, std::size_t rows) {
    std::vector<float> out;
    for (std::size_t r = 0; r < rows; ++r) {
        std::vector<double> a(x.begin() + static_cast<std::ptrdiff_t>(r * m.input_dim()),
                              x.begin() + static_cast<std::ptrdiff_t>((r + 1) * m.input_dim()));
        for (std::size_t li = 0; li < m.layers.size(); ++li) {
            const Layer& l = m.layers[li];
            std::vector<double> y(l.out);
            for (std::size_t n = 0; n < l.out; ++n) {
                double s = l.bias[n];
                for (std::size_t k = 0; k < l.in; ++k) s += double{l.weight[n * l.in + k]} * a[k];
                y[n] = li + 1 < m.layers.size() ? std::max(s, 0.0) : s;
            }
            a = std::move(y);
        }
        for (std::size_t h = 0; h < a.size(); ++h) {
            const bool sigmoid = m.activations[h] == Activation::kSigmoid;
            out.push_back(static_cast<float>(sigmoid ? 1.0 / (1.0 + std::exp(-a[h])) : a[h]));
        }
    }
    return out;
}

}  // namespace recserve::mlp::testing

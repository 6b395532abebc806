#include "recserve/mlp/quantized_mlp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "recserve/simd/gemm_kernels.hpp"

namespace recserve::mlp {
namespace {

std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

// Per-thread buffers, grown to the largest model the thread has run and then reused.
struct Scratch {
    std::vector<std::uint8_t> input;     // the first layer's 8-bit inputs, kRowBlock x its k_pad
    std::vector<std::uint8_t> act[2];    // ping-pong 7-bit activations, kRowBlock x max_k_pad
    std::vector<std::int32_t> acc;       // kRowBlock x max_n_pad
    std::vector<float> row;              // one row of dequantized outputs
    std::vector<float> row_scale;        // per row of the block
    std::vector<std::int32_t> row_zero;  // per row of the block: the input row's zero point

    void reserve(std::size_t rows, std::size_t input_k_pad, std::size_t k_pad, std::size_t n_pad) {
        const auto grow = [](auto& v, std::size_t n) {
            if (v.size() < n) v.resize(n);
        };
        grow(input, rows * input_k_pad);
        grow(act[0], rows * k_pad);
        grow(act[1], rows * k_pad);
        grow(acc, rows * n_pad);
        grow(row, std::max(k_pad, n_pad));
        grow(row_scale, rows);
        grow(row_zero, rows);
    }
};

Scratch& thread_scratch() {
    thread_local Scratch scratch;
    return scratch;
}

// True when some value is NaN or infinite (all exponent bits set): an integer OR-reduction
// that vectorises, unlike a loop of std::isfinite calls.
inline bool any_non_finite(const float* x, std::size_t n) {
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bad |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad != 0;
}

}  // namespace

// int32 sums -> float for the last layer: less the zero point's share (the first layer only),
// rescale (row scale x channel scale), add the bias; the same operations, in the same order, as
// the hidden layers' dequantize_requantize kernels.
void QuantizedMlp::dequantize_row(const std::int32_t* __restrict acc, std::int32_t row_zero, float row_scale,
                                  const PackedLayer& p, float* __restrict y) {
    const float* __restrict scale = p.scale.data();
    const float* __restrict bias = p.bias.data();
    const std::int32_t* w_sums = p.w_sums.empty() ? nullptr : p.w_sums.data();
    for (std::size_t n = 0; n < p.out; ++n) {
        const std::int32_t sum = w_sums ? acc[n] - row_zero * w_sums[n] : acc[n];
        const float s = row_scale * scale[n];
        volatile float product = static_cast<float>(sum) * s;  // rounded, never fused with the addition
        y[n] = product + bias[n];
    }
}

Result<QuantizedMlp> QuantizedMlp::create(Model model) {
    Result<const simd::KernelTable*> kernels = simd::active_kernels();
    if (!kernels.is_ok()) return kernels.status();
    return create(std::move(model), kernels.value());
}

Result<QuantizedMlp> QuantizedMlp::create(Model model, const simd::KernelTable* kernels) {
    if (model.weight_type != WeightType::kInt8)
        return Status::invalid_argument("QuantizedMlp needs an int8 model: quantize the float32 one first");
    RECSERVE_RETURN_IF_ERROR(validate(model));
    QuantizedMlp q;
    q.kernels_ = kernels;
    for (const Layer& l : model.layers) {
        PackedLayer& p = q.layers_.emplace_back();
        p.out = l.out;
        p.in = l.in;
        p.k_pad = round_up(l.in, simd::kGemmKGroup);
        p.n_pad = round_up(l.out, simd::kGemmColumnBlock);
        p.scale = l.scale;
        p.bias = l.bias;
        p.panels.assign(p.n_pad * p.k_pad, 0);
        if (q.layers_.size() == 1) p.w_sums.assign(p.n_pad, 0);
        const std::size_t groups = p.k_pad / simd::kGemmKGroup;
        for (std::size_t n = 0; n < l.out; ++n) {
            const std::size_t block = n / simd::kGemmColumnBlock;
            const std::size_t col = n % simd::kGemmColumnBlock;
            for (std::size_t k = 0; k < l.in; ++k) {
                const std::int8_t w = l.qweight[n * l.in + k];
                const std::size_t g = k / simd::kGemmKGroup;
                const std::size_t at = ((block * groups + g) * simd::kGemmColumnBlock + col) * simd::kGemmKGroup +
                                       k % simd::kGemmKGroup;
                p.panels[at] = w;
                if (q.layers_.size() == 1) p.w_sums[n] += w;
            }
        }
        if (q.layers_.size() > 1) q.max_k_pad_ = std::max(q.max_k_pad_, p.k_pad);
        q.max_n_pad_ = std::max(q.max_n_pad_, p.n_pad);
    }
    q.model_ = std::move(model);
    return q;
}

Status QuantizedMlp::predict(const float* x, std::size_t rows, float* out) const {
    const std::size_t in = input_dim();
    if (any_non_finite(x, rows * in)) {
        for (std::size_t i = 0; i < rows * in; ++i) {
            if (!std::isfinite(x[i]))
                return Status::invalid_argument("input row " + std::to_string(i / in) + ", feature " +
                                                std::to_string(i % in) + " is " + (std::isnan(x[i]) ? "NaN" : "infinite"));
        }
    }
    for (std::size_t r = 0; r < rows; r += kRowBlock) {
        const std::size_t n = std::min(kRowBlock, rows - r);
        predict_block(x + r * in, n, out + r * output_dim());
    }
    return Status::ok();
}

void QuantizedMlp::predict_block(const float* x, std::size_t rows, float* out) const {
    Scratch& s = thread_scratch();
    const PackedLayer& first = layers_.front();
    s.reserve(kRowBlock, first.k_pad, max_k_pad_, max_n_pad_);
    const std::size_t lda = max_k_pad_;
    const std::size_t ldc = max_n_pad_;
    const std::size_t in = input_dim();
    const float* input_scale = model_.input_scale.empty() ? nullptr : model_.input_scale.data();

    // 1. Each input row (times input_scale) to 8 bits with its own scale and zero point.
    for (std::size_t r = 0; r < rows; ++r)
        kernels_->quantize_row_u8(x + r * in, input_scale, in, s.input.data() + r * first.k_pad, &s.row_scale[r],
                                  &s.row_zero[r]);

    // 2-3. One gemm per layer, then the fused epilogue.
    for (std::size_t li = 0; li < layers_.size(); ++li) {
        const PackedLayer& p = layers_[li];
        if (li == 0) {
            kernels_->gemm_u8i8_wide(s.input.data(), first.k_pad, rows, p.panels.data(), p.k_pad, p.n_pad,
                                     p.w_sums.data(), s.acc.data(), ldc);
        } else {
            kernels_->gemm_u8i8(s.act[li % 2].data(), lda, rows, p.panels.data(), p.k_pad, p.n_pad, s.acc.data(), ldc);
        }
        std::uint8_t* next = s.act[(li + 1) % 2].data();
        const std::int32_t* w_sums = li == 0 ? p.w_sums.data() : nullptr;
        if (li + 1 == layers_.size()) {
            for (std::size_t r = 0; r < rows; ++r) {
                float* y = out + r * p.out;
                dequantize_row(s.acc.data() + r * ldc, li == 0 ? s.row_zero[r] : 0, s.row_scale[r], p, y);
                for (std::size_t n = 0; n < p.out; ++n) {
                    if (model_.activations[n] == Activation::kSigmoid) y[n] = 1.0f / (1.0f + std::exp(-y[n]));
                }
            }
            break;
        }
        for (std::size_t r = 0; r < rows; ++r) {
            s.row_scale[r] = kernels_->dequantize_requantize(s.acc.data() + r * ldc, p.out, li == 0 ? s.row_zero[r] : 0,
                                                             w_sums, s.row_scale[r], p.scale.data(), p.bias.data(),
                                                             s.row.data(), next + r * lda);
        }
    }
}

}  // namespace recserve::mlp

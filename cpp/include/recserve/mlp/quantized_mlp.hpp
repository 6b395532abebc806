// The served ranker: an int8 model packed for the active ISA's gemm kernel.
//
// Per batch of rows, in blocks of kRowBlock rows that stay in L1/L2 from the first layer to the
// heads:
//   1. each input row (times input_scale) is quantized to 8 bits with its own scale and zero
//      point (asymmetric: the row's range from min(0, min x) to max(0, max x) in 254 steps);
//   2. each layer is one integer gemm with int32 sums, exact: 8-bit inputs x 8-bit weights for
//      the first layer (its zero point comes off in the epilogue, as zero x the column's weight
//      sum), 7-bit activations x 8-bit weights after it (simd/gemm_kernels.hpp says why 7 bits);
//   3. a fused epilogue per row rescales (row scale x channel scale), adds the bias and, for
//      hidden layers, applies ReLU and requantizes the row to 7 bits with a fresh per-row
//      scale: activations stay in bytes between layers. The last layer applies each head's
//      activation and writes float32.
// Why 8 bits for the input row, where the rest of the model has 7: the input row is where
// fewer bits cost the most accuracy. On the trained rankers of bench_mlp (MovieLens and the
// synthetic log), the worst probability error against fp32 is 0.0138 with these 8-bit
// asymmetric rows, 0.0170 with 8-bit symmetric ones, 0.022-0.027 with 7 bits (over the 0.02
// target) and 0.0136 with 16 bits; 8 bits let the first layer run on the int8 product
// (vpdpbusd), at twice the rate of the 16-bit one (vpdpwssd).
// The int32 sums are exact and every epilogue is bit-identical across ISAs, so the scores are
// bit-identical whichever kernel ran. predict() allocates nothing once a thread's scratch has
// grown to the model's size, holds no lock, and may be called from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "recserve/base/status.hpp"
#include "recserve/mlp/model.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::mlp {

class QuantizedMlp {
  public:
    static constexpr std::size_t kRowBlock = 32;
    // The 16-bit input row's largest level, from before the first layer moved to 8 bits; no
    // longer used by predict, kept so that code naming it still compiles.
    static constexpr std::int32_t kMaxInputLevels = 16383;

    // Packs a valid int8 model for the process's active kernels, or for the given table.
    static Result<QuantizedMlp> create(Model model);
    static Result<QuantizedMlp> create(Model model, const simd::KernelTable* kernels);

    const Model& model() const { return model_; }
    std::uint32_t input_dim() const { return model_.input_dim(); }
    std::uint32_t output_dim() const { return static_cast<std::uint32_t>(model_.heads.size()); }
    const char* kernel_variant() const { return kernels_->variant; }

    // x: rows x input_dim float32, out: rows x output_dim float32 (row-major). A NaN or
    // infinite input is kInvalidArgument naming its row and column, and out is left untouched.
    Status predict(const float* x, std::size_t rows, float* out) const;

  private:
    struct PackedLayer {
        std::uint32_t out = 0;
        std::uint32_t in = 0;
        std::size_t k_pad = 0;
        std::size_t n_pad = 0;
        std::vector<std::int8_t> panels;     // gemm_kernels.hpp layout
        std::vector<std::int32_t> w_sums;    // per column (n_pad), the first layer only: its zero point's share
        std::vector<float> scale;
        std::vector<float> bias;
    };

    void predict_block(const float* x, std::size_t rows, float* out) const;
    static void dequantize_row(const std::int32_t* acc, std::int32_t row_zero, float row_scale, const PackedLayer& p,
                               float* y);

    Model model_;
    const simd::KernelTable* kernels_ = nullptr;
    std::vector<PackedLayer> layers_;
    std::size_t max_k_pad_ = 0;  // of the layers after the first
    std::size_t max_n_pad_ = 0;
};

}  // namespace recserve::mlp

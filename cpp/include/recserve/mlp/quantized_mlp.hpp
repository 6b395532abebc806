// The served ranker: an int8 model packed for the active ISA's gemm kernel.
//
// Per batch of rows, in blocks of kRowBlock rows that stay in L1/L2 from the first layer to the
// heads:
//   1. each input row (times input_scale) is quantized to 16 bits with its own scale: the
//      input row is where fewer bits would cost the most accuracy;
//   2. each layer is one integer gemm with int32 sums, exact: 16-bit inputs x 8-bit weights for
//      the first layer, 7-bit activations x 8-bit weights after it (simd/gemm_kernels.hpp says
//      why 7 bits);
//   3. a fused epilogue per row rescales (row scale x channel scale), adds the bias and, for
//      hidden layers, applies ReLU and requantizes the row to 7 bits with a fresh per-row
//      scale: activations stay in bytes between layers. The last layer applies each head's
//      activation and writes float32.
// The epilogue is portable code and the int32 sums are exact on every ISA, so the scores are
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
    static constexpr std::int32_t kMaxInputLevels = 16383;  // 15 bits: sign-safe in vpmaddwd pairs

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
        std::vector<std::int8_t> panels;     // gemm_kernels.hpp layout (layers after the first)
        std::vector<std::int16_t> panels16;  // the same, widened (the first layer)
        std::vector<float> scale;
        std::vector<float> bias;
    };

    void predict_block(const float* x, std::size_t rows, float* out) const;
    static void dequantize_row(const std::int32_t* acc, float row_scale, const PackedLayer& p, float* y);

    Model model_;
    const simd::KernelTable* kernels_ = nullptr;
    std::vector<PackedLayer> layers_;
    std::int32_t input_levels_ = kMaxInputLevels;
    std::size_t max_k_pad_ = 0;  // of the layers after the first
    std::size_t max_n_pad_ = 0;
};

}  // namespace recserve::mlp

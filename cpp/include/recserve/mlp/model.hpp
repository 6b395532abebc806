// A multi-task ranker as data: a stack of dense layers (ReLU between them) whose last layer's
// outputs are the heads, each with its own output activation. The trained float32 model and
// its int8 form share this shape; QuantizedMlp (quantized_mlp.hpp) is what scores.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "recserve/base/status.hpp"

namespace recserve::mlp {

enum class Activation : std::uint8_t { kSigmoid = 0, kIdentity = 1 };
enum class WeightType : std::uint8_t { kFloat32 = 0, kInt8 = 1 };

const char* activation_name(Activation a);

// One dense layer; weights are [out][in] row-major, the layout of PyTorch's nn.Linear.weight.
struct Layer {
    std::uint32_t out = 0;
    std::uint32_t in = 0;
    std::vector<float> weight;          // kFloat32: out * in
    std::vector<std::int8_t> qweight;   // kInt8: out * in, each in [-kWeightLimit, kWeightLimit]
    std::vector<float> scale;           // kInt8: per output channel, weight = qweight * scale
    std::vector<float> bias;            // out
};

struct Model {
    WeightType weight_type = WeightType::kFloat32;
    std::vector<Layer> layers;
    std::vector<std::string> heads;            // one name per output of the last layer
    std::vector<Activation> activations;       // one per head
    // Per input feature: the int8 model quantizes x[j] * input_scale[j] and its first layer's
    // weights are divided by the same factors (input equalisation, chosen from calibration
    // data). Empty means all ones; a float32 model always has it empty.
    std::vector<float> input_scale;
    std::string metadata;                      // opaque here: JSON written by the Python side

    std::uint32_t input_dim() const { return layers.empty() ? 0 : layers.front().in; }
};

// Largest magnitude of an int8 weight (symmetric: -128 is never used).
inline constexpr int kWeightLimit = 127;

// Shapes chain, sizes match, every number finite, int8 weights within the limit, scales > 0,
// head names unique and non-empty. The message names the layer and field at fault.
Status validate(const Model& model);

// The int8 form of a valid float32 model: weights per output channel symmetric to 8 bits
// after dividing the first layer's columns by input_scale (empty: no equalisation).
Result<Model> quantize(const Model& float_model, std::span<const float> input_scale);

}  // namespace recserve::mlp

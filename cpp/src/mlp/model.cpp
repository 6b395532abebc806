#include "recserve/mlp/model.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace recserve::mlp {
namespace {

bool all_finite(std::span<const float> v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

Status validate_layer(const Model& model, std::size_t i) {
    const Layer& layer = model.layers[i];
    const std::string where = "layer " + std::to_string(i);
    if (layer.out == 0 || layer.in == 0) return Status::invalid_argument(where + " has a zero dimension");
    if (i > 0 && layer.in != model.layers[i - 1].out)
        return Status::invalid_argument(where + " takes " + std::to_string(layer.in) + " inputs but layer " +
                                        std::to_string(i - 1) + " gives " + std::to_string(model.layers[i - 1].out));
    const std::size_t cells = std::size_t{layer.out} * layer.in;
    if (layer.bias.size() != layer.out) return Status::invalid_argument(where + " bias has the wrong length");
    if (!all_finite(layer.bias)) return Status::invalid_argument(where + " bias has a NaN or infinity");
    if (model.weight_type == WeightType::kFloat32) {
        if (layer.weight.size() != cells) return Status::invalid_argument(where + " weight has the wrong size");
        if (!all_finite(layer.weight)) return Status::invalid_argument(where + " weight has a NaN or infinity");
        return Status::ok();
    }
    if (layer.qweight.size() != cells) return Status::invalid_argument(where + " int8 weight has the wrong size");
    if (layer.scale.size() != layer.out) return Status::invalid_argument(where + " scale has the wrong length");
    for (float s : layer.scale) {
        if (!std::isfinite(s) || s <= 0.0f) return Status::invalid_argument(where + " has a scale that is not > 0");
    }
    for (std::int8_t q : layer.qweight) {
        if (q < -kWeightLimit || q > kWeightLimit)
            return Status::invalid_argument(where + " has an int8 weight outside [-127, 127]");
    }
    return Status::ok();
}

}  // namespace

const char* activation_name(Activation a) { return a == Activation::kSigmoid ? "sigmoid" : "identity"; }

Status validate(const Model& model) {
    if (model.layers.empty()) return Status::invalid_argument("a model needs at least one layer");
    for (std::size_t i = 0; i < model.layers.size(); ++i) RECSERVE_RETURN_IF_ERROR(validate_layer(model, i));
    const std::uint32_t outputs = model.layers.back().out;
    if (model.heads.size() != outputs)
        return Status::invalid_argument("the last layer has " + std::to_string(outputs) + " outputs but " +
                                        std::to_string(model.heads.size()) + " heads are named");
    if (model.activations.size() != model.heads.size())
        return Status::invalid_argument("one activation per head is needed");
    std::set<std::string> seen;
    for (const std::string& name : model.heads) {
        if (name.empty()) return Status::invalid_argument("a head name is empty");
        if (!seen.insert(name).second) return Status::invalid_argument("head '" + name + "' is named twice");
    }
    for (Activation a : model.activations) {
        if (a != Activation::kSigmoid && a != Activation::kIdentity)
            return Status::invalid_argument("unknown head activation");
    }
    if (!model.input_scale.empty()) {
        if (model.weight_type == WeightType::kFloat32)
            return Status::invalid_argument("a float32 model has no input_scale");
        if (model.input_scale.size() != model.input_dim())
            return Status::invalid_argument("input_scale has " + std::to_string(model.input_scale.size()) +
                                            " values for " + std::to_string(model.input_dim()) + " inputs");
        for (float s : model.input_scale) {
            if (!std::isfinite(s) || s <= 0.0f) return Status::invalid_argument("input_scale has a value that is not > 0");
        }
    }
    return Status::ok();
}

Result<Model> quantize(const Model& float_model, std::span<const float> input_scale) {
    if (float_model.weight_type != WeightType::kFloat32)
        return Status::invalid_argument("quantize takes a float32 model");
    RECSERVE_RETURN_IF_ERROR(validate(float_model));
    if (!input_scale.empty() && input_scale.size() != float_model.input_dim())
        return Status::invalid_argument("input_scale has " + std::to_string(input_scale.size()) + " values for " +
                                        std::to_string(float_model.input_dim()) + " inputs");
    for (float s : input_scale) {
        if (!std::isfinite(s) || s <= 0.0f) return Status::invalid_argument("input_scale has a value that is not > 0");
    }
    Model q;
    q.weight_type = WeightType::kInt8;
    q.heads = float_model.heads;
    q.activations = float_model.activations;
    q.metadata = float_model.metadata;
    q.input_scale.assign(input_scale.begin(), input_scale.end());
    for (std::size_t i = 0; i < float_model.layers.size(); ++i) {
        const Layer& f = float_model.layers[i];
        Layer& l = q.layers.emplace_back();
        l.out = f.out;
        l.in = f.in;
        l.bias = f.bias;
        l.scale.resize(f.out);
        l.qweight.resize(f.weight.size());
        const bool equalise = i == 0 && !q.input_scale.empty();
        std::vector<float> row(f.in);
        for (std::uint32_t n = 0; n < f.out; ++n) {
            float absmax = 0.0f;
            for (std::uint32_t k = 0; k < f.in; ++k) {
                row[k] = f.weight[std::size_t{n} * f.in + k] / (equalise ? q.input_scale[k] : 1.0f);
                absmax = std::max(absmax, std::fabs(row[k]));
            }
            const float scale = absmax > 0.0f ? absmax / kWeightLimit : 1.0f;
            l.scale[n] = scale;
            for (std::uint32_t k = 0; k < f.in; ++k) {
                const float v = std::nearbyint(row[k] / scale);
                l.qweight[std::size_t{n} * f.in + k] =
                    static_cast<std::int8_t>(std::clamp(v, float{-kWeightLimit}, float{kWeightLimit}));
            }
        }
    }
    RECSERVE_RETURN_IF_ERROR(validate(q));
    return q;
}

}  // namespace recserve::mlp

// Metrics and vector encodings of the ANN index, and what a distance means for each.
//
//   l2      squared Euclidean distance
//   ip      1 - <q, x>             (as hnswlib; smaller is closer)
//   cosine  1 - cos(q, x)          (vectors are normalised on the way in)
#pragma once

#include <cstdint>
#include <string_view>

#include "recserve/base/status.hpp"

namespace recserve::ann {

enum class Metric : std::uint8_t { kL2 = 0, kIp = 1, kCosine = 2 };
enum class Dtype : std::uint8_t { kFloat32 = 0, kInt8 = 1 };

inline const char* metric_name(Metric m) {
    switch (m) {
        case Metric::kL2: return "l2";
        case Metric::kIp: return "ip";
        case Metric::kCosine: return "cosine";
    }
    return "?";
}

inline const char* dtype_name(Dtype d) { return d == Dtype::kInt8 ? "int8" : "float32"; }

inline Result<Metric> parse_metric(std::string_view s) {
    if (s == "l2") return Metric::kL2;
    if (s == "ip") return Metric::kIp;
    if (s == "cosine") return Metric::kCosine;
    return Status::invalid_argument("metric must be one of 'cosine', 'ip', 'l2', got '" + std::string(s) + "'");
}

inline Result<Dtype> parse_dtype(std::string_view s) {
    if (s == "float32") return Dtype::kFloat32;
    if (s == "int8") return Dtype::kInt8;
    return Status::invalid_argument("dtype must be 'float32' or 'int8', got '" + std::string(s) + "'");
}

}  // namespace recserve::ann

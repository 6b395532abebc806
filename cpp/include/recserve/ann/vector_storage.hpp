// Vector storage for the graph: it owns the codes and scales, the graph only asks for
// distances by slot. The search loop is templated on the storage type, so a distance is one
// direct call into the ISA's kernel, never a virtual call.
//
// F32Storage, one slot (stride = 4 * dims bytes):
//   [ float x[dims] ]                      cosine: x is unit-normalised
//
// I8Storage, one slot (stride = 8 + dims rounded up to 4 bytes):
//   [ float a | float b | int8 code[dims] | pad ]
//   distance(q, x) = q.c0 + x.b - q.c1 * x.a * dot_i8(q.code, x.code), where
//     cosine: a = 1/|code|, b = 0          c0 = 1, c1 = 1/|q.code|
//     ip:     a = scale,    b = 0          c0 = 1, c1 = q.scale
//     l2:     a = scale,    b = |x~|^2     c0 = |q~|^2, c1 = 2 q.scale   (x~ = decoded x)
//
// Writers fill a slot before the graph publishes it; readers only read published slots.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "recserve/ann/chunked_array.hpp"
#include "recserve/ann/metric.hpp"
#include "recserve/quant/int8_codec.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::ann {

// Unit-normalises v into out (a zero vector stays zero).
inline void normalize_into(const float* v, std::size_t dims, float* out) {
    double norm2 = 0.0;
    for (std::size_t i = 0; i < dims; ++i) norm2 += double(v[i]) * double(v[i]);
    const float inv = norm2 > 0.0 ? static_cast<float>(1.0 / std::sqrt(norm2)) : 0.0f;
    for (std::size_t i = 0; i < dims; ++i) out[i] = v[i] * inv;
}

class F32Storage {
  public:
    struct Query {
        const float* v;
    };
    // Scratch a query needs: the normalised copy.
    static std::size_t query_bytes(std::size_t dims) { return dims * sizeof(float); }

    F32Storage(std::size_t dims, Metric metric, const simd::KernelTable& k)
        : dims_(dims), metric_(metric), dist_(metric == Metric::kL2 ? k.l2sq_f32 : k.dot_f32),
          slots_(dims * sizeof(float)) {}

    std::size_t dims() const { return dims_; }
    std::size_t slot_bytes() const { return slots_.stride(); }
    ChunkedArray& slots() { return slots_; }
    const ChunkedArray& slots() const { return slots_; }

    Query prepare(const float* q, void* scratch) const {
        auto* buf = static_cast<float*>(scratch);
        if (metric_ == Metric::kCosine) normalize_into(q, dims_, buf);
        else std::memcpy(buf, q, dims_ * sizeof(float));
        return Query{buf};
    }
    void store(std::uint32_t slot, const float* v) {
        auto* dst = reinterpret_cast<float*>(slots_.at(slot));
        if (metric_ == Metric::kCosine) normalize_into(v, dims_, dst);
        else std::memcpy(dst, v, dims_ * sizeof(float));
    }
    float distance(const Query& q, std::uint32_t slot) const { return finish(dist_(q.v, vec(slot), dims_)); }
    float distance(std::uint32_t a, std::uint32_t b) const { return finish(dist_(vec(a), vec(b), dims_)); }
    Query query_of(std::uint32_t slot) const { return Query{vec(slot)}; }
    void prefetch(std::uint32_t slot) const { __builtin_prefetch(slots_.at(slot)); }

  private:
    const float* vec(std::uint32_t slot) const { return reinterpret_cast<const float*>(slots_.at(slot)); }
    float finish(float raw) const { return metric_ == Metric::kL2 ? raw : 1.0f - raw; }

    std::size_t dims_;
    Metric metric_;
    simd::DistF32 dist_;
    ChunkedArray slots_;
};

class I8Storage {
  public:
    struct Query {
        const std::int8_t* code;
        float c0;
        float c1;
    };
    static std::size_t query_bytes(std::size_t dims) { return dims * sizeof(float) + dims; }

    I8Storage(std::size_t dims, Metric metric, const simd::KernelTable& k)
        : dims_(dims), metric_(metric), dot_(k.dot_i8), slots_(kHeader + ((dims + 3) & ~std::size_t{3})) {}

    std::size_t dims() const { return dims_; }
    std::size_t slot_bytes() const { return slots_.stride(); }
    ChunkedArray& slots() { return slots_; }
    const ChunkedArray& slots() const { return slots_; }

    Query prepare(const float* q, void* scratch) const {
        auto* normalized = static_cast<float*>(scratch);
        auto* code = reinterpret_cast<std::int8_t*>(normalized + dims_);
        const Encoded e = encode(q, normalized, code);
        Query out{code, 1.0f, e.a};
        if (metric_ == Metric::kL2) {
            out.c0 = e.b;
            out.c1 = 2.0f * e.a;
        }
        return out;
    }
    // Encodes into the slot; `tmp` holds dims floats of scratch.
    void store(std::uint32_t slot, const float* v, float* tmp) {
        char* dst = slots_.at(slot);
        const Encoded e = encode(v, tmp, reinterpret_cast<std::int8_t*>(dst + kHeader));
        std::memcpy(dst, &e.a, sizeof(float));
        std::memcpy(dst + sizeof(float), &e.b, sizeof(float));
    }
    float distance(const Query& q, std::uint32_t slot) const {
        const char* x = slots_.at(slot);
        float a;
        float b;
        std::memcpy(&a, x, sizeof(float));
        std::memcpy(&b, x + sizeof(float), sizeof(float));
        const auto dot = static_cast<float>(dot_(q.code, reinterpret_cast<const std::int8_t*>(x + kHeader), dims_));
        return q.c0 + b - q.c1 * a * dot;
    }
    float distance(std::uint32_t a, std::uint32_t b) const { return distance(query_of(a), b); }
    // The stored vector of a slot, as a query (reads only the slot itself).
    Query query_of(std::uint32_t slot) const {
        const char* x = slots_.at(slot);
        float xa;
        float xb;
        std::memcpy(&xa, x, sizeof(float));
        std::memcpy(&xb, x + sizeof(float), sizeof(float));
        Query q{reinterpret_cast<const std::int8_t*>(x + kHeader), 1.0f, xa};
        if (metric_ == Metric::kL2) {
            q.c0 = xb;
            q.c1 = 2.0f * xa;
        }
        return q;
    }
    void prefetch(std::uint32_t slot) const { __builtin_prefetch(slots_.at(slot)); }

  private:
    static constexpr std::size_t kHeader = 2 * sizeof(float);
    struct Encoded {
        float a;
        float b;
    };

    Encoded encode(const float* v, float* tmp, std::int8_t* code) const {
        const float* src = v;
        if (metric_ == Metric::kCosine) {
            normalize_into(v, dims_, tmp);
            src = tmp;
        }
        const float scale = quant::quantize_i8(src, dims_, code);
        std::int64_t code_norm2 = 0;
        for (std::size_t i = 0; i < dims_; ++i) code_norm2 += std::int64_t{code[i]} * code[i];
        if (metric_ == Metric::kCosine) {
            const float inv = code_norm2 > 0 ? 1.0f / std::sqrt(static_cast<float>(code_norm2)) : 0.0f;
            return {inv, 0.0f};
        }
        if (metric_ == Metric::kIp) return {scale, 0.0f};
        return {scale, scale * scale * static_cast<float>(code_norm2)};
    }

    std::size_t dims_;
    Metric metric_;
    simd::DotI8 dot_;
    ChunkedArray slots_;
};

}  // namespace recserve::ann

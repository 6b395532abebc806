#include "recserve/feed/features.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "recserve/simd/kernel_table.hpp"

namespace recserve::feed {
namespace {

double dot(const float* a, const float* b, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return s;
}

double norm(const float* a, std::size_t n) { return std::sqrt(dot(a, a, n)); }

double smoothed(double count, double total, double mean, double strength) {
    return (count + mean * strength) / (std::max(total, count) + strength);
}

constexpr double kTiny = 1e-12;

// The active ISA's float dot product: affinity takes n x (positives + centroids) of them per
// page. Both pipelines of a process use the same kernel, so they agree to the bit.
double fast_dot(const float* a, const float* b, std::size_t n) {
    static const simd::KernelTable* const kernels = [] {
        auto active = simd::active_kernels();  // an error (a bad RECSERVE_ISA): the portable loop
        return active.is_ok() ? active.value() : nullptr;
    }();
    return kernels != nullptr ? static_cast<double>(kernels->dot_f32(a, b, n)) : dot(a, b, n);
}

}  // namespace

void write_row(const FeatureLayout& layout, const UserInputs& user, const ItemInputs& item, double now_s,
               double position, const Affinity& affinity, float* out) {
    const std::size_t d = layout.dims;
    std::copy(user.long_term, user.long_term + d, out);
    std::copy(user.session, user.session + d, out + d);
    std::copy(item.vector, item.vector + d, out + 2 * d);
    float* s = out + 3 * d;
    *s++ = static_cast<float>(dot(user.long_term, item.vector, d));
    *s++ = static_cast<float>(dot(user.session, item.vector, d));
    for (std::size_t o = 0; o < kOutcomes; ++o)
        *s++ = static_cast<float>(
            smoothed(item.outcomes[o], item.impressions, layout.prior_mean[o], layout.prior_strength[o]));
    *s++ = static_cast<float>(std::log1p(item.impressions));
    *s++ = static_cast<float>(std::log1p(std::max(now_s - item.created_at_s, 0.0) / 3600.0));
    *s++ = static_cast<float>(std::log1p(user.events));
    *s++ = static_cast<float>(std::log1p(user.session_length));
    *s++ = static_cast<float>(smoothed(user.completes, user.impressions, layout.prior_mean[0], layout.prior_strength[0]));
    *s++ = static_cast<float>(
        smoothed(user.skips, user.impressions, layout.prior_mean[kOutcomes - 1], layout.prior_strength[kOutcomes - 1]));
    *s++ = static_cast<float>(position);
    if (layout.version >= 2) {
        *s++ = affinity.related;
        *s++ = affinity.positive_similarity;
        *s++ = static_cast<float>(std::log1p(static_cast<double>(affinity.region_positive_hours)));
    }
    if (layout.mean != nullptr && layout.std != nullptr)
        for (std::size_t i = 0, w = layout.width(); i < w; ++i) {
            const float centred = out[i] - layout.mean[i];  // two roundings, as numpy's in-place ops
            out[i] = centred / layout.std[i];
        }
}

void affinity(const float* items, std::size_t n, std::size_t dims, const float* positives,
              const std::int64_t* positive_ts_ms, std::size_t m, double now_ms, const float* centroids,
              std::size_t k, float* similarity, float* hours) {
    std::fill(similarity, similarity + n, 0.0f);
    std::fill(hours, hours + n, kNoPositiveHours);
    if (m == 0 || n == 0) return;
    thread_local std::vector<float> unit;
    thread_local std::vector<double> latest;
    unit.assign(m * dims, 0.0f);
    for (std::size_t p = 0; p < m; ++p) {
        const double length = norm(positives + p * dims, dims);
        if (length > kTiny)
            for (std::size_t j = 0; j < dims; ++j)
                unit[p * dims + j] = static_cast<float>(positives[p * dims + j] / length);
    }
    auto nearest = [&](const float* v) {
        std::size_t best = 0;
        double best_dot = -std::numeric_limits<double>::infinity();
        for (std::size_t c = 0; c < k; ++c) {
            const double x = fast_dot(v, centroids + c * dims, dims);
            if (x > best_dot) best_dot = x, best = c;  // the first of equals, as argmax
        }
        return best;
    };
    if (k > 0) {
        latest.assign(k, -std::numeric_limits<double>::infinity());
        for (std::size_t p = 0; p < m; ++p) {
            const std::size_t r = nearest(unit.data() + p * dims);
            latest[r] = std::max(latest[r], static_cast<double>(positive_ts_ms[p]));
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        const float* v = items + i * dims;
        const double length = std::sqrt(fast_dot(v, v, dims));
        if (length > kTiny) {
            double best = -std::numeric_limits<double>::infinity();
            for (std::size_t p = 0; p < m; ++p) best = std::max(best, fast_dot(v, unit.data() + p * dims, dims));
            similarity[i] = static_cast<float>(best / length);
        }
        if (k > 0) {
            const double age = (now_ms - latest[nearest(v)]) / 3'600'000.0;
            if (std::isfinite(age))
                hours[i] = static_cast<float>(std::clamp(age, 0.0, static_cast<double>(kNoPositiveHours)));
        }
    }
}

bool query_vector(const float* long_term, const float* session, std::size_t dims, float session_weight,
                  float* query) {
    thread_local std::vector<double> q;
    q.assign(dims, 0.0);
    bool any = false;
    const std::pair<const float*, double> parts[] = {{long_term, 1.0 - session_weight}, {session, session_weight}};
    for (const auto& [vector, weight] : parts) {
        const double length = norm(vector, dims);
        if (length > kTiny && weight > 0.0) {
            any = true;
            for (std::size_t j = 0; j < dims; ++j) q[j] += vector[j] * (weight / length);
        }
    }
    if (!any) return false;
    double length = 0.0;
    for (double x : q) length += x * x;
    if (std::sqrt(length) <= kTiny) return false;
    for (std::size_t j = 0; j < dims; ++j) query[j] = static_cast<float>(q[j]);
    return true;
}

}  // namespace recserve::feed

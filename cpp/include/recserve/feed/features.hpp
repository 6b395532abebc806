// The ranker's input row, the one definition: the feed's native pipeline writes it per
// candidate, and recserve.features (the training replay, the reference pipeline) calls the same
// code through the binding, so training and serving cannot drift by an ulp.
//
// Layout at dims = d (version 2: 3 d + 19 columns; version 1 stops 3 columns earlier):
//   user long-term (d) | user session (d) | item (d) | <long, item> | <session, item> |
//   7 smoothed item outcome rates | log1p(item impressions) | log1p(item age in hours) |
//   log1p(user events) | log1p(user session length) | user complete rate | user skip rate |
//   position | [v2] related score | largest cosine to a recent positive |
//   log1p(hours since the user's latest positive in the item's region)
// Scalars are computed in double and rounded once to float; the normalisation (x - mean) / std
// is float arithmetic, as numpy did it in place. python/recserve/features.py documents each column.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace recserve::feed {

inline constexpr std::size_t kOutcomes = 7;  // complete, replay, like, share, comment, follow, skip
inline constexpr std::size_t kScalarColumns = 16;   // version 1's columns after the three vectors
inline constexpr std::size_t kAffinityColumns = 3;  // version 2 adds these
inline constexpr float kNoPositiveHours = 720.0f;   // no positive in the item's region: 30 days

struct FeatureLayout {
    std::size_t dims = 0;
    int version = 2;
    std::array<double, kOutcomes> prior_mean{};
    std::array<double, kOutcomes> prior_strength{};
    const float* mean = nullptr;  // width() each, or both null: raw rows
    const float* std = nullptr;

    std::size_t width() const { return 3 * dims + kScalarColumns + (version >= 2 ? kAffinityColumns : 0); }
};

struct UserInputs {
    const float* long_term = nullptr;  // dims
    const float* session = nullptr;    // dims
    double events = 0, session_length = 0, impressions = 0, completes = 0, skips = 0;
};

struct ItemInputs {
    const float* vector = nullptr;  // dims
    double impressions = 0;
    std::array<double, kOutcomes> outcomes{};  // counts, in kOutcomes order
    double created_at_s = 0;
};

struct Affinity {
    float related = 0.0f;
    float positive_similarity = 0.0f;
    float region_positive_hours = kNoPositiveHours;
};

// Writes layout.width() floats to out.
void write_row(const FeatureLayout& layout, const UserInputs& user, const ItemInputs& item, double now_s,
               double position, const Affinity& affinity, float* out);

// For n items (row-major n x dims) and m recent positives (m x dims, newest first, with the
// time of each in ms): the largest cosine to a positive, and the hours since the latest positive
// in the item's region (nearest of k centroids by dot product; k = 0: no regions). Fills
// similarity[n] and hours[n]; m = 0 gives 0 and kNoPositiveHours.
void affinity(const float* items, std::size_t n, std::size_t dims, const float* positives,
              const std::int64_t* positive_ts_ms, std::size_t m, double now_ms, const float* centroids,
              std::size_t k, float* similarity, float* hours);

// The ANN query of a user: unit(long-term) * (1 - session_weight) + unit(session) *
// session_weight, zero parts left out. False (query untouched) when the user has no direction.
bool query_vector(const float* long_term, const float* session, std::size_t dims, float session_weight,
                  float* query);

}  // namespace recserve::feed

// One page for one user, in one call: recserve's feed without the GIL.
//
//   Pipeline pipeline(index, profiles, columns, served);
//   Page page;
//   Status st = pipeline.build(params, request, ranking, &page);
//
// The stages, each as python/recserve/feed/reference.py (the reference implementation, kept
// in agreement by a seeded test) does them:
//   1. the user's signals: vectors (the session decayed to now), the ANN query, the items met
//      lately and served lately (excluded from retrieval), the recent positives, co-engagement;
//   2. candidates: ANN, related (co-engagement), one ANN query per latest positive
//      (interest), a seeded sample of the open-tier items (explore) and the caller's trending
//      list; an item found twice keeps its first source, in that order;
//   3. filters: not live (taken down), seen, served or met lately, a blocked creator (the ANN
//      queries reject these inside the graph walk already: they return k items the page can use);
//   4. features (features.hpp) and the int8 ranker, its heads blended into one score, plus the
//      blend terms: popularity, co-engagement, learned quality;
//   5. the page: best first, at most max_per_creator items per creator, explore slots for
//      open-tier items spread through it.
// A user without a direction (no vectors yet: cold start) gets has_direction = false and an
// empty page: the caller builds cold-start pages (onboarding tags, regions, a catalogue sample).
// Scratch memory is per thread and kept; a warm thread still allocates the page it returns and
// the copies of the user's recent items and positives that Profiles hands out.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "recserve/ann/index.hpp"
#include "recserve/base/status.hpp"
#include "recserve/feed/features.hpp"
#include "recserve/feed/item_columns.hpp"
#include "recserve/feed/open_pool.hpp"
#include "recserve/feed/served_memory.hpp"
#include "recserve/mlp/quantized_mlp.hpp"
#include "recserve/profiles/profiles.hpp"

namespace recserve::feed {

// The candidate sources, in the order of python's SOURCES.
enum Source : std::int8_t { kAnn, kExplore, kTrending, kColdStart, kRelated, kInterest };

// The feed settings this pipeline reads (recserve.feed.config.FeedConfig mirrors them).
struct FeedParams {
    std::size_t candidates = 200;
    std::size_t ef = 128;
    std::size_t related = 100;
    float related_recency = 0.8f;
    float related_alpha = 0.5f;
    std::size_t interest_queries = 2;
    std::size_t interest_candidates = 32;
    float session_weight = 0.5f;
    std::size_t max_per_creator = 2;
    double explore_relevance = 0.0;
    double explore_relevance_decay = 0.5;  // tier t's gate: explore_relevance * decay^t
    double promoted_boost = 0.0;           // tier >= 1: + boost * views / (views + impressions)
    double promoted_boost_views = 50.0;
    double popularity_weight = 0.0;  // times log1p(completions)
    double related_weight = 0.0;
    double quality_weight = 0.0;
    double quality_prior_views = 10.0;
    double quality_optimism = 0.05;
};

// The catalogue's outcome curves (recserve.quality): p(m) = intercept + slope * m.
struct QualityLines {
    double complete_intercept = 0, complete_slope = 0, skip_intercept = 0, skip_slope = 0;
};

struct PageRequest {
    std::uint64_t user = 0;
    std::int64_t now_ms = 0;
    std::size_t n = 10;
    std::uint64_t seed = 0;         // every draw of the page (open_pool.hpp)
    const OpenPool* open_pool = nullptr;  // the open-tier items; null: no exploration
    std::size_t explore_pool = 16;  // open-tier items sampled per page
    double explore_share = 0.0;     // explore slots for this n: whole slots, then a coin
    const std::uint64_t* trending = nullptr;
    std::size_t trending_count = 0;
    const std::int64_t* blocked_creators = nullptr;  // creator codes (ItemColumn::creator)
    std::size_t blocked_count = 0;
    const float* centroids = nullptr;  // k x dims catalogue regions, for the affinity features
    std::size_t centroid_count = 0;
    QualityLines quality;
};

// The ranker: a model, its feature layout, and the weight of each head in the score.
struct Ranking {
    const mlp::QuantizedMlp* model = nullptr;
    FeatureLayout layout;
    std::vector<float> head_weights;
};

struct StageSeconds {
    double retrieve = 0, filter = 0, rank = 0, total = 0;
};

struct Page {
    bool has_direction = false;
    std::vector<std::uint64_t> keys;
    std::vector<float> scores;
    std::vector<std::int8_t> sources;
    std::size_t candidates = 0;  // after the filters
    StageSeconds seconds;
};

class Pipeline {
  public:
    Pipeline(const ann::Index& index, const profiles::Profiles& profiles, const ItemColumns& columns,
             const ServedMemory& served)
        : index_(index), profiles_(profiles), columns_(columns), served_(served) {}

    // kInvalidArgument for a ranking that does not fit the profiles' dims or the model's input.
    Status build(const FeedParams& params, const PageRequest& request, const Ranking& ranking, Page* page) const;

    // One ANN query as build() asks it for this user: items met or served lately, seen items
    // and blocked creators' items are rejected inside the graph walk. Appends up to k hits,
    // nearest first, to ids and distances (ef: at least k is used).
    Status search(std::uint64_t user, const std::int64_t* blocked_creators, std::size_t blocked_count,
                  const float* query, std::size_t k, std::size_t ef, std::vector<std::uint64_t>* ids,
                  std::vector<float>* distances) const;

  private:
    const ann::Index& index_;
    const profiles::Profiles& profiles_;
    const ItemColumns& columns_;
    const ServedMemory& served_;
};

}  // namespace recserve::feed

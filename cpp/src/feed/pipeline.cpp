#include "recserve/feed/pipeline.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "recserve/ann/search_scratch.hpp"

namespace recserve::feed {
namespace {

using Clock = std::chrono::steady_clock;
using profiles::ItemStat;

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// What a user's ANN queries must not return, asked inside the graph walk: items met or served
// lately (an exact set), items the user has seen (the seen-set: its lock is taken per item, never
// held across the walk, so event applies are not held up) and items of creators they blocked.
class UserFilter final : public ann::SearchFilter {
  public:
    void prepare(const profiles::Profiles& profiles, const ItemColumns& columns, const ServedMemory& served,
                 std::uint64_t user, const std::int64_t* blocked, std::size_t blocked_count) {
        profiles_ = &profiles;
        columns_ = &columns;
        user_ = user;
        ids_ = profiles.recent_items(user);  // met lately: the seen-set's exact part
        served.recent(user, &ids_);
        recent_.assign(ids_.data(), ids_.size());
        older_seen_ = profiles.has_seen_before_recent(user);  // most users: no filter to ask
        blocked_.assign(blocked, blocked + blocked_count);
        std::sort(blocked_.begin(), blocked_.end());  // a user may block thousands of creators
    }
    bool recent(std::uint64_t id) const { return recent_.contains(id); }
    bool blocked(std::int64_t creator) const { return std::binary_search(blocked_.begin(), blocked_.end(), creator); }
    bool rejects(std::uint64_t id) const override {
        if (recent_.contains(id)) return true;  // the seen-set's exact part is in recent_
        if (older_seen_ && profiles_->seen_before_recent(user_, id)) return true;
        if (blocked_.empty()) return false;
        ItemColumn column;
        columns_->lookup(&id, 1, &column);
        return blocked(column.creator);
    }

  private:
    const profiles::Profiles* profiles_ = nullptr;
    const ItemColumns* columns_ = nullptr;
    std::uint64_t user_ = 0;
    std::vector<std::uint64_t> ids_;  // recent_'s ids
    bool older_seen_ = false;
    ann::ExcludeSet recent_;
    std::vector<std::int64_t> blocked_;
};

// One ANN query with the user's filter; appends the hits (misses dropped) to ids and distances.
Status filtered_search(const ann::Index& index, const UserFilter& filter, const float* query, std::size_t k,
                       std::size_t ef, std::vector<std::uint64_t>* ids, std::vector<float>* distances) {
    const std::size_t at = ids->size();
    ids->resize(at + k);
    distances->resize(at + k);
    ann::SearchParams params;
    params.ef = std::max(ef, k);
    params.filter = &filter;
    Status st = index.search(query, 1, k, params, ids->data() + at, distances->data() + at);
    std::size_t found = 0;
    while (st.is_ok() && found < k && (*ids)[at + found] != ann::kMissingId) ++found;  // misses fill the tail
    ids->resize(at + found);
    distances->resize(at + found);
    return st;
}

struct Candidate {
    std::uint64_t key;
    float distance;  // NaN where not retrieved by an ANN query
    std::int8_t source;
};

// A bool buffer that only grows (std::vector<bool> has no bool*).
class Flags {
  public:
    bool* take(std::size_t n) {
        if (n > size_) data_.reset(new bool[size_ = std::max<std::size_t>(n, 2 * size_)]);
        return data_.get();
    }

  private:
    std::unique_ptr<bool[]> data_;
    std::size_t size_ = 0;
};

struct Scratch {
    std::vector<float> long_term, session, query;
    UserFilter filter;
    std::vector<std::uint64_t> positive_keys;
    std::vector<std::int64_t> positive_ts;
    std::vector<float> positive_vectors;
    std::vector<std::uint64_t> related_keys;
    std::vector<float> related_scores;
    std::vector<std::pair<std::uint64_t, float>> related_sorted;
    std::vector<std::uint64_t> hit_ids, explore_keys;
    std::vector<float> hit_distances;
    std::vector<Candidate> offered, pool;
    std::vector<ItemColumn> columns;
    std::vector<std::uint64_t> keys;
    std::vector<float> vectors;
    std::vector<std::uint64_t> words;
    std::vector<float> related, similarity, hours, extra, rows, probs, scores;
    std::vector<std::int8_t> tiers;  // open amplification tier per candidate, -1: none
    std::vector<double> bars;        // the explore gate per tier, NaN until needed
    std::vector<std::uint32_t> order, explore, regular, main_items, picked;
    std::vector<std::pair<std::int64_t, std::size_t>> per_creator;
    Flags seen, found;
};

double word(const std::uint64_t* words, ItemStat stat) { return static_cast<double>(words[stat]); }

// How many items of this creator the page holds (a page has few creators: a linear scan).
std::size_t& creator_count(std::vector<std::pair<std::int64_t, std::size_t>>& counts, std::int64_t creator) {
    for (auto& [c, count] : counts)
        if (c == creator) return count;
    return counts.emplace_back(creator, 0).second;
}

// numpy.quantile's default (linear) of values, which it sorts.
double quantile(std::vector<float> values, double q) {
    std::sort(values.begin(), values.end());
    const double at = q * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(at));
    const std::size_t hi = std::min(lo + 1, values.size() - 1);
    const double t = at - static_cast<double>(lo), a = values[lo], b = values[hi];
    return t >= 0.5 ? b - (b - a) * (1.0 - t) : a + (b - a) * t;
}

}  // namespace

Status Pipeline::search(std::uint64_t user, const std::int64_t* blocked_creators, std::size_t blocked_count,
                        const float* query, std::size_t k, std::size_t ef, std::vector<std::uint64_t>* ids,
                        std::vector<float>* distances) const {
    if (k < 1) return Status::invalid_argument("k must be >= 1");
    thread_local UserFilter filter;
    filter.prepare(profiles_, columns_, served_, user, blocked_creators, blocked_count);
    return filtered_search(index_, filter, query, k, ef, ids, distances);
}

Status Pipeline::build(const FeedParams& params, const PageRequest& request, const Ranking& ranking,
                       Page* page) const {
    const auto started = Clock::now();
    const std::size_t d = profiles_.options().dims;
    const FeatureLayout& layout = ranking.layout;
    if (ranking.model == nullptr) return Status::invalid_argument("the native pipeline needs a model");
    if (layout.dims != d || ranking.model->input_dim() != layout.width())
        return Status::invalid_argument("the model reads " + std::to_string(ranking.model->input_dim()) +
                                        " inputs of dims " + std::to_string(layout.dims) + "; the profiles have dims " +
                                        std::to_string(d));
    if (ranking.head_weights.size() != ranking.model->output_dim())
        return Status::invalid_argument("one blend weight per head is needed");
    if (index_.options().dims != d) return Status::invalid_argument("the index and the profiles differ in dims");
    if (request.centroid_count > 0 && request.centroids == nullptr)
        return Status::invalid_argument("centroids missing");

    thread_local Scratch s;
    *page = Page{};
    const std::uint64_t user = request.user;
    const double now_s = static_cast<double>(request.now_ms) / 1000.0;

    // ---- 1. what the user just did --------------------------------------------------------
    s.long_term.resize(d);
    s.session.resize(d);
    s.query.resize(d);
    bool* user_found = s.found.take(1);
    profiles_.user_vectors(&user, 1, request.now_ms, s.long_term.data(), s.session.data(), user_found);
    page->has_direction = query_vector(s.long_term.data(), s.session.data(), d, params.session_weight, s.query.data());
    if (!page->has_direction) return Status::ok();

    s.filter.prepare(profiles_, columns_, served_, user, request.blocked_creators, request.blocked_count);
    const std::vector<profiles::RecentPositive> positives = profiles_.recent_positives(user);
    const std::size_t m = positives.size();
    s.positive_keys.resize(m);
    s.positive_ts.resize(m);
    for (std::size_t i = 0; i < m; ++i) s.positive_keys[i] = positives[i].item, s.positive_ts[i] = positives[i].ts_ms;
    s.positive_vectors.resize(m * d);
    profiles_.items(s.positive_keys.data(), m, s.positive_vectors.data(), nullptr, s.found.take(m));
    s.related_keys.resize(params.related);
    s.related_scores.resize(params.related);
    if (params.related > 0) {
        auto related = profiles_.related(user, request.now_ms, params.related, params.related_recency,
                                         params.related_alpha, s.related_keys.data(), s.related_scores.data());
        if (!related.is_ok()) return related.status();
        s.related_keys.resize(related.value());
        s.related_scores.resize(related.value());
    }

    // ---- 2. candidates --------------------------------------------------------------------
    s.offered.clear();
    const float no_distance = std::numeric_limits<float>::quiet_NaN();
    auto offer = [&](const std::uint64_t* keys, const float* distances, std::size_t n, Source source) {
        for (std::size_t i = 0; i < n; ++i)
            s.offered.push_back({keys[i], distances ? distances[i] : no_distance, source});
    };
    auto search = [&](const float* query, std::size_t k, std::size_t ef, Source source) -> Status {
        s.hit_ids.clear();
        s.hit_distances.clear();
        Status st = filtered_search(index_, s.filter, query, k, ef, &s.hit_ids, &s.hit_distances);
        if (st.is_ok()) offer(s.hit_ids.data(), s.hit_distances.data(), s.hit_ids.size(), source);
        return st;
    };
    if (index_.size() > 0 && params.candidates > 0) {
        Status st = search(s.query.data(), params.candidates, std::max(params.ef, params.candidates), kAnn);
        if (!st.is_ok()) return st;
    }
    offer(s.related_keys.data(), nullptr, s.related_keys.size(), kRelated);
    for (std::size_t p = 0; p < std::min(params.interest_queries, m); ++p) {
        const float* v = s.positive_vectors.data() + p * d;
        double length = 0.0;
        for (std::size_t j = 0; j < d; ++j) length += static_cast<double>(v[j]) * v[j];
        if (std::sqrt(length) <= 1e-12 || index_.size() == 0) continue;
        Status st = search(v, params.interest_candidates, params.interest_candidates, kInterest);
        if (!st.is_ok()) return st;
    }
    s.explore_keys.clear();
    if (request.open_pool != nullptr && request.explore_share > 0.0)
        request.open_pool->sample(request.explore_pool, request.seed, &s.explore_keys);
    offer(s.explore_keys.data(), nullptr, s.explore_keys.size(), kExplore);
    offer(request.trending, nullptr, request.trending_count, kTrending);
    // By key, stable: a key found by several sources keeps the first that offered it.
    std::stable_sort(s.offered.begin(), s.offered.end(), [](const Candidate& a, const Candidate& b) { return a.key < b.key; });
    s.pool.clear();
    for (const Candidate& c : s.offered)
        if (s.pool.empty() || s.pool.back().key != c.key) s.pool.push_back(c);
    const auto retrieved = Clock::now();

    // ---- 3. filters -----------------------------------------------------------------------
    std::size_t n = s.pool.size();
    s.keys.resize(n);
    for (std::size_t i = 0; i < n; ++i) s.keys[i] = s.pool[i].key;
    s.columns.resize(n);
    columns_.lookup(s.keys.data(), n, s.columns.data());
    bool* seen = s.seen.take(n);
    profiles_.seen(user, s.keys.data(), n, seen);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const ItemColumn& c = s.columns[i];
        if (!c.live || seen[i] || s.filter.recent(s.keys[i]) || s.filter.blocked(c.creator)) continue;
        s.pool[kept] = s.pool[i];
        s.columns[kept] = c;
        s.keys[kept] = s.keys[i];
        ++kept;
    }
    n = kept;
    s.pool.resize(n);
    s.columns.resize(n);
    s.keys.resize(n);
    page->candidates = n;
    const auto filtered = Clock::now();

    // ---- 4. features, ranker, blend -------------------------------------------------------
    s.vectors.resize(n * d);
    s.words.resize(n * profiles::kItemWords);
    profiles_.items(s.keys.data(), n, s.vectors.data(), s.words.data(), s.found.take(n));
    s.related_sorted.clear();
    for (std::size_t i = 0; i < s.related_keys.size(); ++i)
        s.related_sorted.emplace_back(s.related_keys[i], s.related_scores[i]);
    std::sort(s.related_sorted.begin(), s.related_sorted.end());
    s.related.assign(n, 0.0f);
    for (std::size_t i = 0; i < n; ++i) {
        const auto at = std::lower_bound(s.related_sorted.begin(), s.related_sorted.end(),
                                         std::make_pair(s.keys[i], -std::numeric_limits<float>::infinity()));
        if (at != s.related_sorted.end() && at->first == s.keys[i]) s.related[i] = at->second;
    }
    s.similarity.resize(n);
    s.hours.resize(n);
    affinity(s.vectors.data(), n, d, s.positive_vectors.data(), s.positive_ts.data(), m, now_s * 1000.0,
             request.centroids, request.centroid_count, s.similarity.data(), s.hours.data());

    s.tiers.assign(n, -1);
    if (request.open_pool != nullptr) request.open_pool->tiers(s.keys.data(), n, s.tiers.data());

    // The blend's terms, each in float as the reference adds them, in its order.
    const QualityLines& q = request.quality;
    const float related_weight = static_cast<float>(params.related_weight);
    s.extra.assign(n, 0.0f);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t* w = s.words.data() + i * profiles::kItemWords;
        float extra = 0.0f;
        if (params.popularity_weight > 0)
            extra += static_cast<float>(params.popularity_weight * std::log1p(word(w, profiles::kCompletions)));
        if (params.related_weight > 0 && !s.related_keys.empty()) extra += related_weight * s.related[i];
        if (params.quality_weight > 0) {
            // recserve.quality: per impression, so a fast skip reported as a skip event counts
            const double views = word(w, profiles::kImpressions), completions = word(w, profiles::kCompletions);
            const double skips = std::min(word(w, profiles::kFastSkips), views);
            const double match = static_cast<double>(static_cast<std::int64_t>(w[profiles::kImpressionMatchSum])) /
                                 static_cast<double>(std::int64_t{1} << profiles::kMatchSumFractionBits);
            const double excess = (completions - (q.complete_intercept * views + q.complete_slope * match)) -
                                  (skips - (q.skip_intercept * views + q.skip_slope * match));
            const double lift = excess / (views + params.quality_prior_views);
            const double bonus = params.quality_optimism / std::sqrt(1.0 + views);
            extra += static_cast<float>(params.quality_weight * (lift + bonus));
        }
        if (params.promoted_boost > 0 && s.tiers[i] >= 1) {  // a promoted item reaches beyond its tests
            const double views = params.promoted_boost_views;
            extra += static_cast<float>(params.promoted_boost * views / (views + word(w, profiles::kImpressions)));
        }
        s.extra[i] = extra;
    }

    std::uint64_t user_words[profiles::kUserWords];
    profiles_.user_words(&user, 1, user_words, s.found.take(1));
    UserInputs u;
    u.long_term = s.long_term.data();
    u.session = s.session.data();
    u.events = static_cast<double>(user_words[profiles::kEventsApplied]);
    u.session_length = static_cast<double>(served_.session_length(user, now_s));
    u.impressions = static_cast<double>(user_words[profiles::kUserImpressions]);
    u.completes = static_cast<double>(user_words[profiles::kUserCompletions]);
    u.skips = static_cast<double>(user_words[profiles::kUserFastSkips]);
    const std::size_t width = layout.width();
    s.rows.resize(n * width);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t* w = s.words.data() + i * profiles::kItemWords;
        ItemInputs item;
        item.vector = s.vectors.data() + i * d;
        item.impressions = word(w, profiles::kImpressions);
        item.outcomes = {word(w, profiles::kCompletions), word(w, profiles::kReplays), word(w, profiles::kLikes),
                         word(w, profiles::kShares),      word(w, profiles::kComments), word(w, profiles::kFollows),
                         word(w, profiles::kFastSkips)};
        item.created_at_s = s.columns[i].created_at_s;
        write_row(layout, u, item, now_s, 0.0, {s.related[i], s.similarity[i], s.hours[i]}, s.rows.data() + i * width);
    }
    const std::size_t heads = ranking.head_weights.size();
    s.probs.resize(n * heads);
    s.scores.resize(n);
    if (n > 0) {
        Status st = ranking.model->predict(s.rows.data(), n, s.probs.data());
        if (!st.is_ok()) return st;
    }
    for (std::size_t i = 0; i < n; ++i) {
        float score = 0.0f;
        for (std::size_t h = 0; h < heads; ++h) score += s.probs[i * heads + h] * ranking.head_weights[h];
        s.scores[i] = score + s.extra[i];
    }
    const auto ranked = Clock::now();

    // ---- 5. the page ----------------------------------------------------------------------
    s.order.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) s.order[i] = i;
    std::stable_sort(s.order.begin(), s.order.end(), [&](std::uint32_t a, std::uint32_t b) { return s.scores[a] > s.scores[b]; });
    s.per_creator.clear();
    auto take = [&](const std::vector<std::uint32_t>& from, std::size_t limit, std::vector<std::uint32_t>* out) {
        std::size_t taken = 0;
        for (std::uint32_t i : from) {
            if (taken >= limit) break;
            std::size_t& count = creator_count(s.per_creator, s.columns[i].creator);
            if (count >= params.max_per_creator) continue;
            ++count;
            out->push_back(i);
            ++taken;
        }
    };
    s.regular.clear();
    for (std::uint32_t i : s.order)
        if (s.pool[i].source != kExplore) s.regular.push_back(i);
    // A new item is tested on users it may interest: it explores only if it scores at least a
    // quantile of this user's regular candidates, a quantile that shrinks tier by tier.
    s.bars.clear();
    const auto bar_of = [&](std::int8_t tier) {
        const std::size_t t = static_cast<std::size_t>(std::max<std::int8_t>(tier, 0));
        if (s.regular.empty() || !(params.explore_relevance > 0)) return -std::numeric_limits<double>::infinity();
        if (s.bars.size() <= t) s.bars.resize(t + 1, std::numeric_limits<double>::quiet_NaN());
        if (std::isnan(s.bars[t])) {
            std::vector<float> regular_scores;
            for (std::uint32_t i : s.regular) regular_scores.push_back(s.scores[i]);
            const double q = params.explore_relevance * std::pow(params.explore_relevance_decay, static_cast<double>(t));
            s.bars[t] = quantile(std::move(regular_scores), q);
        }
        return s.bars[t];
    };
    s.picked.clear();
    for (std::uint32_t i : s.order)
        if (s.pool[i].source == kExplore && s.scores[i] >= bar_of(s.tiers[i])) s.picked.push_back(i);
    s.explore.clear();
    take(s.picked, explore_slots(request.explore_share, request.n, request.seed), &s.explore);
    // The regular slots: every candidate but the exploration sample's untested items (a
    // promoted item competes for them too), less what took an explore slot.
    s.regular.clear();
    for (std::uint32_t i : s.order)
        if ((s.pool[i].source != kExplore || s.tiers[i] >= 1) &&
            std::find(s.explore.begin(), s.explore.end(), i) == s.explore.end())
            s.regular.push_back(i);
    s.main_items.clear();
    take(s.regular, request.n - s.explore.size(), &s.main_items);
    if (s.main_items.size() + s.explore.size() < request.n) {  // too few regular candidates
        s.picked.clear();
        for (std::uint32_t i : s.order)
            if (s.pool[i].source == kExplore && std::find(s.explore.begin(), s.explore.end(), i) == s.explore.end())
                s.picked.push_back(i);
        take(s.picked, request.n - s.main_items.size() - s.explore.size(), &s.explore);
    }
    std::vector<std::uint32_t>& chosen = s.main_items;  // the page, explore slots spread in
    const std::size_t total = s.main_items.size() + s.explore.size();
    for (std::size_t j = 0; j < s.explore.size(); ++j) {  // spread through the page
        const std::size_t at = std::min((j + 1) * total / (s.explore.size() + 1), chosen.size());
        chosen.insert(chosen.begin() + static_cast<std::ptrdiff_t>(at), s.explore[j]);
    }
    for (std::uint32_t i : chosen) {
        page->keys.push_back(s.keys[i]);
        page->scores.push_back(s.scores[i]);
        page->sources.push_back(s.pool[i].source);
    }
    const auto finished = Clock::now();
    page->seconds = {seconds_between(started, retrieved), seconds_between(retrieved, filtered),
                     seconds_between(filtered, ranked), seconds_between(started, finished)};
    return Status::ok();
}

}  // namespace recserve::feed

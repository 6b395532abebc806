#include "recserve/profiles/co_engagement.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "recserve/embed/table.hpp"

namespace recserve::profiles {

Status validate(const CoEngagementOptions& o) {
    if (o.neighbours > kMaxNeighbours)
        return Status::invalid_argument("co-engagement neighbours must be in 0.." + std::to_string(kMaxNeighbours));
    if (o.history < 1 || o.history > kMaxHistory)
        return Status::invalid_argument("co-engagement history must be in 1.." + std::to_string(kMaxHistory));
    if (!std::isfinite(o.positive_weight) || !(o.positive_weight > 0.0f))
        return Status::invalid_argument("co-engagement positive_weight must be finite and > 0");
    if (!std::isfinite(o.half_life_seconds) || o.half_life_seconds < 0)
        return Status::invalid_argument("co-engagement half_life_seconds must be finite and >= 0 (0: never decay)");
    return Status::ok();
}

bool note_positive(std::vector<RecentPositive>& list, std::uint64_t item, std::int64_t ts_ms, float weight,
                   std::size_t history) {
    const auto it = std::find_if(list.begin(), list.end(), [&](const RecentPositive& p) { return p.item == item; });
    const bool fresh = it == list.end();
    if (fresh) {
        list.insert(list.begin(), RecentPositive{item, ts_ms, weight});
    } else {
        std::rotate(list.begin(), it, it + 1);
        list.front().ts_ms = std::max(list.front().ts_ms, ts_ms);
        list.front().weight = std::max(list.front().weight, weight);
    }
    if (list.size() > history) list.resize(history);
    return fresh;
}

namespace {

struct Entry {
    double n = 0;                      // engaged users (scaled)
    std::vector<std::uint64_t> keys;   // neighbours, any order
    std::vector<float> weights;        // their edge weights (scaled)
};

// Adds inc to y's weight in e's list. A full list that meets a new neighbour first takes the
// lightest weight (at most inc) off every entry and drops those it empties (Misra-Gries, weighted):
// no weight is ever overestimated, each falls short of the truth by at most what the list gave up
// (total increments / (capacity + 1)), and a heavy pair outlasts the passing ones. Returns the
// entries added; *dropped counts the entries removed.
std::size_t bump(Entry& e, std::uint64_t y, float inc, std::size_t capacity, std::size_t* dropped) {
    for (std::size_t i = 0; i < e.keys.size(); ++i) {
        if (e.keys[i] == y) {
            e.weights[i] += inc;
            return 0;
        }
    }
    float left = inc;
    if (e.keys.size() >= capacity) {
        const float taken = std::min(*std::min_element(e.weights.begin(), e.weights.end()), inc);
        for (std::size_t i = 0; i < e.keys.size();) {
            e.weights[i] -= taken;
            if (e.weights[i] > 0.0f) {
                ++i;
                continue;
            }
            e.keys[i] = e.keys.back();
            e.weights[i] = e.weights.back();
            e.keys.pop_back();
            e.weights.pop_back();
            ++*dropped;
        }
        left = inc - taken;
    }
    if (!(left > 0.0f) || e.keys.size() >= capacity) return 0;
    e.keys.push_back(y);
    e.weights.push_back(left);
    return 1;
}

// Removes y from e's list (order is not kept). Returns whether it was there.
bool drop(Entry& e, std::uint64_t y) {
    const auto it = std::find(e.keys.begin(), e.keys.end(), y);
    if (it == e.keys.end()) return false;
    const std::size_t i = static_cast<std::size_t>(it - e.keys.begin());
    e.keys[i] = e.keys.back();
    e.weights[i] = e.weights.back();
    e.keys.pop_back();
    e.weights.pop_back();
    return true;
}

// Indices of e's neighbours, heaviest first, ties by key.
void heaviest_first(const std::vector<std::uint64_t>& keys, const std::vector<float>& weights,
                    std::vector<std::uint32_t>& order) {
    order.resize(keys.size());
    for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        return weights[a] != weights[b] ? weights[a] > weights[b] : keys[a] < keys[b];
    });
}

double power(double x, double a) {
    if (a == 0.0) return 1.0;
    if (a == 1.0) return x;
    if (a == 0.5) return std::sqrt(x);
    return std::pow(x, a);
}

// A reader's scratch: an open-addressing map of candidate -> partial score, cleared by tag.
struct Scratch {
    std::vector<std::uint64_t> keys;
    std::vector<double> sums;
    std::vector<std::uint32_t> tags;
    std::vector<std::uint32_t> used;  // occupied slots, in insertion order
    std::vector<std::uint64_t> exclude;
    std::vector<std::pair<double, std::uint64_t>> ranked;
    std::uint32_t tag = 0;
    unsigned bits = 0;

    void begin(std::size_t candidates) {
        unsigned want = 6;
        while ((std::size_t{1} << want) < 2 * candidates) ++want;
        if (want > bits) {
            bits = want;
            keys.assign(std::size_t{1} << bits, 0);
            sums.assign(std::size_t{1} << bits, 0.0);
            tags.assign(std::size_t{1} << bits, 0);
            tag = 0;
        }
        if (++tag == 0) {  // wrapped: every slot's tag could look current
            std::fill(tags.begin(), tags.end(), 0);
            tag = 1;
        }
        used.clear();
    }
    void add(std::uint64_t key, double value) {
        const std::size_t mask = (std::size_t{1} << bits) - 1;
        std::size_t slot = static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> (64 - bits));
        while (tags[slot] == tag && keys[slot] != key) slot = (slot + 1) & mask;
        if (tags[slot] != tag) {
            tags[slot] = tag;
            keys[slot] = key;
            sums[slot] = 0.0;
            used.push_back(static_cast<std::uint32_t>(slot));
        }
        sums[slot] += value;
    }
};

}  // namespace

struct CoEngagement::Shards {
    static constexpr unsigned kShardBits = 6;
    struct Shard {
        mutable std::shared_mutex lock;
        std::unordered_map<std::uint64_t, Entry> items;
    };
    Shard shards[1u << kShardBits];

    Shard& of(std::uint64_t item) { return shards[(item * 0x9e3779b97f4a7c15ull) >> (64 - kShardBits)]; }
    const Shard& of(std::uint64_t item) const { return shards[(item * 0x9e3779b97f4a7c15ull) >> (64 - kShardBits)]; }
};

CoEngagement::CoEngagement(const CoEngagementOptions& options)
    : options_(options), shards_(std::make_unique<Shards>()) {}
CoEngagement::~CoEngagement() = default;

double CoEngagement::increment(std::int64_t ts_ms) {
    if (!has_epoch_) {
        has_epoch_ = true;
        epoch_ms_.store(ts_ms, std::memory_order_relaxed);
    }
    if (options_.half_life_seconds <= 0) return 1.0;
    const double half_lives =
        (static_cast<double>(ts_ms) - static_cast<double>(epoch_ms_.load(std::memory_order_relaxed))) / 1000.0 /
        options_.half_life_seconds;
    if (half_lives > kRebaseHalfLives) {
        rebase(ts_ms);
        return 1.0;
    }
    return std::exp2(half_lives);  // < 1 for an event behind the epoch, 0 far behind it
}

void CoEngagement::rebase(std::int64_t ts_ms) {
    const double factor =
        std::exp2(-(static_cast<double>(ts_ms) - static_cast<double>(epoch_ms_.load(std::memory_order_relaxed))) /
                  1000.0 / options_.half_life_seconds);
    generation_.fetch_add(1, std::memory_order_acq_rel);  // odd: readers retry what they read now
    std::size_t items_dropped = 0, edges_dropped = 0;
    for (auto& shard : shards_->shards) {
        std::unique_lock<std::shared_mutex> lock(shard.lock);
        for (auto it = shard.items.begin(); it != shard.items.end();) {
            Entry& e = it->second;
            e.n *= factor;
            for (std::size_t i = 0; i < e.keys.size();) {
                e.weights[i] = static_cast<float>(e.weights[i] * factor);
                if (e.weights[i] > 0.0f) {
                    ++i;
                    continue;
                }
                e.keys[i] = e.keys.back();  // underflowed: as if never there
                e.weights[i] = e.weights.back();
                e.keys.pop_back();
                e.weights.pop_back();
                ++edges_dropped;
            }
            if (e.n > 0.0 || !e.keys.empty()) {
                ++it;
                continue;
            }
            it = shard.items.erase(it);
            ++items_dropped;
        }
    }
    epoch_ms_.store(ts_ms, std::memory_order_release);  // see neighbours()
    items_.fetch_sub(items_dropped, std::memory_order_relaxed);
    edges_.fetch_sub(edges_dropped, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);  // even: a stable state again
}

void CoEngagement::add(std::uint64_t item, const std::uint64_t* partners, std::size_t n, std::int64_t ts_ms) {
    if (!enabled()) return;
    const double inc = increment(ts_ms);
    const auto inc_f = static_cast<float>(inc);
    const std::size_t capacity = options_.neighbours;
    std::size_t new_items = 0, new_edges = 0, dropped_edges = 0;
    {
        Shards::Shard& shard = shards_->of(item);
        std::unique_lock<std::shared_mutex> lock(shard.lock);
        const auto [it, created] = shard.items.try_emplace(item);
        new_items += created;
        it->second.n += inc;
        for (std::size_t p = 0; p < n; ++p) {
            if (partners[p] != item) new_edges += bump(it->second, partners[p], inc_f, capacity, &dropped_edges);
        }
    }
    for (std::size_t p = 0; p < n; ++p) {
        if (partners[p] == item) continue;
        Shards::Shard& shard = shards_->of(partners[p]);
        std::unique_lock<std::shared_mutex> lock(shard.lock);
        const auto [it, created] = shard.items.try_emplace(partners[p]);
        new_items += created;
        new_edges += bump(it->second, item, inc_f, capacity, &dropped_edges);
    }
    items_.fetch_add(new_items, std::memory_order_relaxed);
    edges_.fetch_add(new_edges, std::memory_order_relaxed);
    edges_.fetch_sub(dropped_edges, std::memory_order_relaxed);
}

std::size_t CoEngagement::remove(const std::uint64_t* items, std::size_t n) {
    std::size_t removed = 0, edges_dropped = 0, items_dropped = 0;
    for (std::size_t r = 0; r < n; ++r) {
        Entry gone;
        {
            Shards::Shard& shard = shards_->of(items[r]);
            std::unique_lock<std::shared_mutex> lock(shard.lock);
            const auto it = shard.items.find(items[r]);
            if (it == shard.items.end()) continue;
            gone = std::move(it->second);
            shard.items.erase(it);
        }
        ++removed;
        ++items_dropped;
        edges_dropped += gone.keys.size();
        // Pairs are added in both directions, so the item's neighbours hold nearly every entry
        // that names it (a full list may have dropped one side); a reader skips the rest,
        // since the item no longer has an entry of its own.
        for (const std::uint64_t m : gone.keys) {
            Shards::Shard& shard = shards_->of(m);
            std::unique_lock<std::shared_mutex> lock(shard.lock);
            const auto it = shard.items.find(m);
            if (it == shard.items.end() || !drop(it->second, items[r])) continue;
            ++edges_dropped;
            if (it->second.n <= 0.0 && it->second.keys.empty()) {
                shard.items.erase(it);
                ++items_dropped;
            }
        }
    }
    items_.fetch_sub(items_dropped, std::memory_order_relaxed);
    edges_.fetch_sub(edges_dropped, std::memory_order_relaxed);
    return removed;
}

std::size_t CoEngagement::related(const RecentPositive* recent, std::size_t n, std::int64_t now_ms, std::size_t k,
                                  float recency_decay, float alpha, std::uint64_t* keys, float* scores) const {
    (void)now_ms;  // every stored value carries the same scale: the score divides it out
    if (!enabled() || k == 0) return 0;
    n = std::min<std::size_t>(n, options_.history);
    thread_local Scratch s;
    const double a = alpha;
    for (;;) {
        const std::uint64_t before = generation_.load(std::memory_order_acquire);
        if (before & 1) {  // a rebase is rewriting the shards: wait for it
            std::this_thread::yield();
            continue;
        }
        s.begin(n * options_.neighbours);
        s.exclude.clear();
        double coef = 1.0;
        for (std::size_t r = 0; r < n && coef > 0.0; ++r, coef *= recency_decay) {
            s.exclude.push_back(recent[r].item);
            const Shards::Shard& shard = shards_->of(recent[r].item);
            std::shared_lock<std::shared_mutex> lock(shard.lock);
            const auto it = shard.items.find(recent[r].item);
            if (it == shard.items.end() || !(it->second.n > 0.0)) continue;
            const Entry& e = it->second;
            const double base = coef / power(e.n, 1.0 - a);
            for (std::size_t i = 0; i < e.keys.size(); ++i) {
                if (e.weights[i] > 0.0f) s.add(e.keys[i], base * e.weights[i]);
            }
        }
        for (std::size_t r = s.exclude.size(); r < n; ++r) s.exclude.push_back(recent[r].item);
        std::sort(s.exclude.begin(), s.exclude.end());
        s.ranked.clear();
        for (const std::uint32_t slot : s.used) {
            const std::uint64_t j = s.keys[slot];
            if (std::binary_search(s.exclude.begin(), s.exclude.end(), j)) continue;
            const Shards::Shard& shard = shards_->of(j);
            double nj = 0.0;
            {
                std::shared_lock<std::shared_mutex> lock(shard.lock);
                const auto it = shard.items.find(j);
                if (it != shard.items.end()) nj = it->second.n;
            }
            if (!(nj > 0.0)) continue;  // removed from the catalogue, or never a positive here
            s.ranked.emplace_back(s.sums[slot] / power(nj, a), j);
        }
        // No fence needed: every list was read under its shard's lock, so a rebase that rewrote
        // one of them happened before that read, and so did its odd generation.
        if (generation_.load(std::memory_order_acquire) != before) continue;
        const auto better = [](const std::pair<double, std::uint64_t>& x, const std::pair<double, std::uint64_t>& y) {
            return x.first != y.first ? x.first > y.first : x.second < y.second;
        };
        const std::size_t m = std::min(k, s.ranked.size());
        std::partial_sort(s.ranked.begin(), s.ranked.begin() + static_cast<std::ptrdiff_t>(m), s.ranked.end(), better);
        for (std::size_t i = 0; i < m; ++i) {
            keys[i] = s.ranked[i].second;
            // Far apart in half-lives, an edge can outweigh its items' counts by any factor.
            scores[i] = static_cast<float>(std::min(s.ranked[i].first, double{std::numeric_limits<float>::max()}));
        }
        return m;
    }
}

bool CoEngagement::neighbours(std::uint64_t item, std::int64_t now_ms, std::vector<std::uint64_t>* keys,
                              std::vector<double>* weights, double* n) const {
    keys->clear();
    weights->clear();
    *n = 0.0;
    std::vector<std::uint64_t> raw_keys;
    std::vector<float> raw_weights;
    double raw_n = 0.0;
    std::int64_t epoch = 0;
    for (;;) {
        const std::uint64_t before = generation_.load(std::memory_order_acquire);
        if (before & 1) {
            std::this_thread::yield();
            continue;
        }
        bool found = false;
        {
            const Shards::Shard& shard = shards_->of(item);
            std::shared_lock<std::shared_mutex> lock(shard.lock);
            const auto it = shard.items.find(item);
            if (it != shard.items.end()) {
                found = true;
                raw_n = it->second.n;
                raw_keys = it->second.keys;
                raw_weights = it->second.weights;
            }
        }
        // Acquire: an epoch a rebase moved orders its odd generation before the check below.
        epoch = epoch_ms_.load(std::memory_order_acquire);
        if (generation_.load(std::memory_order_acquire) != before) continue;  // as in related()
        if (!found) return false;
        break;
    }
    const double scale =
        options_.half_life_seconds > 0
            ? std::exp2((static_cast<double>(now_ms) - static_cast<double>(epoch)) / 1000.0 / options_.half_life_seconds)
            : 1.0;
    std::vector<std::uint32_t> order;
    heaviest_first(raw_keys, raw_weights, order);
    for (const std::uint32_t i : order) {
        keys->push_back(raw_keys[i]);
        weights->push_back(raw_weights[i] / scale);
    }
    *n = raw_n / scale;
    return true;
}

CoEngagementStats CoEngagement::stats() const {
    return {items_.load(std::memory_order_relaxed), edges_.load(std::memory_order_relaxed)};
}

// The section: i64 epoch_ms | u32 has_epoch | u32 neighbours | f64 half_life_seconds | u64 items
//              | per item: u64 key | f64 n | u32 count | count x u64 keys | count x f32 weights
void CoEngagement::serialize(ByteWriter& w) const {
    w.put(epoch_ms_.load(std::memory_order_relaxed));
    w.put(static_cast<std::uint32_t>(has_epoch_));
    w.put(options_.neighbours);
    w.put(options_.half_life_seconds);
    std::uint64_t count = 0;
    for (const auto& shard : shards_->shards) {
        std::shared_lock<std::shared_mutex> lock(shard.lock);
        count += shard.items.size();
    }
    w.put(count);
    for (const auto& shard : shards_->shards) {
        std::shared_lock<std::shared_mutex> lock(shard.lock);
        for (const auto& [key, e] : shard.items) {
            w.put(key);
            w.put(e.n);
            w.put(static_cast<std::uint32_t>(e.keys.size()));
            w.bytes(e.keys.data(), e.keys.size() * sizeof(std::uint64_t));
            w.bytes(e.weights.data(), e.weights.size() * sizeof(float));
        }
    }
}

void CoEngagement::clear() {
    for (auto& shard : shards_->shards) {
        std::unique_lock<std::shared_mutex> lock(shard.lock);
        shard.items.clear();
    }
    items_.store(0, std::memory_order_relaxed);
    edges_.store(0, std::memory_order_relaxed);
    has_epoch_ = false;
    epoch_ms_.store(0, std::memory_order_relaxed);
}

Status CoEngagement::parse(ByteReader& r, std::size_t body_bytes, const std::function<bool(std::uint64_t)>& keep,
                           const std::string& where) {
    const Status truncated = Status::corrupt(where + " ends inside its co-engagement index");
    const auto fail = [&](const Status& st) {
        clear();
        return st;
    };
    std::int64_t epoch = 0;
    std::uint32_t has_epoch = 0, file_neighbours = 0;
    double half_life = 0;
    std::uint64_t count = 0;
    if (!r.get(epoch) || !r.get(has_epoch) || !r.get(file_neighbours) || !r.get(half_life) || !r.get(count))
        return fail(truncated);
    if (has_epoch > 1 || !std::isfinite(half_life) || half_life < 0 || file_neighbours > kMaxNeighbours)
        return fail(Status::corrupt(where + " has a damaged co-engagement header"));
    constexpr std::size_t kEntryBytes = sizeof(std::uint64_t) + sizeof(double) + sizeof(std::uint32_t);
    if (count > body_bytes / kEntryBytes) return fail(truncated);
    // The values are as of the epoch whatever the half-life was: a changed half-life decays them
    // at the new rate from there on.
    has_epoch_ = has_epoch == 1;
    epoch_ms_.store(epoch, std::memory_order_relaxed);
    std::vector<std::uint64_t> keys;
    std::vector<float> weights;
    std::vector<std::uint32_t> order;
    std::size_t items = 0, edges = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint64_t key = 0;
        double n = 0;
        std::uint32_t size = 0;
        if (!r.get(key) || !r.get(n) || !r.get(size)) return fail(truncated);
        if (key == embed::kInvalidKey || !std::isfinite(n) || n < 0 || size > kMaxNeighbours)
            return fail(Status::corrupt(where + " has a damaged co-engagement entry"));
        keys.resize(size);
        weights.resize(size);
        if (!r.bytes(keys.data(), size * sizeof(std::uint64_t)) || !r.bytes(weights.data(), size * sizeof(float)))
            return fail(truncated);
        for (std::uint32_t j = 0; j < size; ++j) {
            if (keys[j] == embed::kInvalidKey || !std::isfinite(weights[j]) || weights[j] < 0)
                return fail(Status::corrupt(where + " has a damaged co-engagement neighbour"));
        }
        if (!enabled() || !keep(key)) continue;
        Entry e;
        e.n = n;
        if (size > options_.neighbours) {  // written with more neighbours per item: keep the heaviest
            heaviest_first(keys, weights, order);
            order.resize(options_.neighbours);
            for (const std::uint32_t j : order) {
                e.keys.push_back(keys[j]);
                e.weights.push_back(weights[j]);
            }
        } else {
            e.keys = keys;
            e.weights = weights;
        }
        edges += e.keys.size();
        bool fresh = false;
        {
            Shards::Shard& shard = shards_->of(key);
            std::unique_lock<std::shared_mutex> lock(shard.lock);
            fresh = shard.items.emplace(key, std::move(e)).second;
        }
        if (!fresh) return fail(Status::corrupt(where + " names a co-engagement item twice"));
        ++items;
    }
    items_.store(items, std::memory_order_relaxed);
    edges_.store(edges, std::memory_order_relaxed);
    return Status::ok();
}

}  // namespace recserve::profiles

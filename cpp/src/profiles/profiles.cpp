#include "recserve/profiles/profiles.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "user_logs.hpp"

namespace recserve::profiles {
namespace {

std::string at(std::size_t i) { return " (event " + std::to_string(i) + ")"; }

}  // namespace

Status Profiles::check(const EventBatch& b) {
    if (b.n == 0) return Status::ok();
    if (!b.users || !b.items || !b.types || !b.watch_ms || !b.duration_ms || !b.ts_ms || !b.seq)
        return Status::invalid_argument("an event batch needs users, items, types, watch_ms, duration_ms, ts_ms, seq");
    for (std::size_t i = 0; i < b.n; ++i) {
        if (b.users[i] == embed::kInvalidKey) return Status::invalid_argument("user id 2^64-1 is reserved" + at(i));
        if (b.items[i] == embed::kInvalidKey) return Status::invalid_argument("item id 2^64-1 is reserved" + at(i));
        if (b.types[i] >= kEventTypes)
            return Status::invalid_argument("unknown event type " + std::to_string(b.types[i]) + at(i));
        if (b.seq[i] == 0) return Status::invalid_argument("seq must be >= 1" + at(i));
        if (b.types[i] == static_cast<std::uint8_t>(EventType::kWatch) && b.duration_ms[i] == 0)
            return Status::invalid_argument("a watch needs duration_ms > 0" + at(i));
    }
    return Status::ok();
}

namespace {

std::int64_t as_ms(std::uint64_t word) { return std::bit_cast<std::int64_t>(word); }
std::uint64_t as_word(std::int64_t ms) { return std::bit_cast<std::uint64_t>(ms); }

// A watch that reached the completion threshold: counted for the item and for the user alike.
bool is_completion(const UpdateRule& rule, EventType type, std::uint32_t watch_ms, std::uint32_t duration_ms) {
    return type == EventType::kWatch &&
           static_cast<float>(watch_ms) >= rule.completion_threshold * static_cast<float>(duration_ms);
}

// What one event does to its user's row and log.
struct UserEdit {
    const UpdateRule* rule;
    const ProfilesOptions* options;
    Profiles::UserLogs* logs;
    std::uint64_t user;
    std::uint64_t item;
    std::uint64_t key;  // 0: none
    const float* item_vector;  // null: the item has no vector
    float weight;
    std::int64_t ts;
    std::uint64_t seq;
    EventType type;
    std::uint32_t watch_ms, duration_ms;
    bool positive;                        // a co-engagement positive (the index is on)
    std::vector<std::uint64_t>* partners;  // out: the recent positives a new positive pairs with
    bool stale = false;
    bool duplicate_key = false;
    bool pair = false;                    // out: a new positive, to pair with *partners
    std::int64_t match = 0;               // out: a watch's or an impression's match term
    bool viewed = false;                  // out: the user's first event on the item: one impression
};

// round(2^20 cos(q, x)) with q = unit(long_term) + unit(session), zero parts skipped.
std::int64_t match_term(const float* long_term, const float* session, const float* x, std::size_t dims) {
    double ll = 0, ss = 0, xx = 0, lx = 0, sx = 0, ls = 0;
    for (std::size_t d = 0; d < dims; ++d) {
        ll += double{long_term[d]} * long_term[d];
        ss += double{session[d]} * session[d];
        xx += double{x[d]} * x[d];
        lx += double{long_term[d]} * x[d];
        sx += double{session[d]} * x[d];
        ls += double{long_term[d]} * session[d];
    }
    if (!(xx > 0)) return 0;
    double qx = 0, qq = 0;
    const double nl = std::sqrt(ll), ns = std::sqrt(ss);
    if (nl > 0) qx += lx / nl, qq += 1;
    if (ns > 0) qx += sx / ns, qq += 1;
    if (nl > 0 && ns > 0) qq += 2 * ls / (nl * ns);
    if (!(qq > 1e-12)) return 0;  // no vectors yet, or two opposite ones
    const double m = std::clamp(qx / std::sqrt(qq * xx), -1.0, 1.0);
    return std::llround(std::ldexp(m, kMatchSumFractionBits));
}

bool edit_user(void* context, const embed::RowView& row) {
    auto& e = *static_cast<UserEdit*>(context);
    std::uint64_t* w = row.words;
    if (row.existed && e.seq <= w[kHighWaterSeq]) {
        e.stale = true;
        return false;
    }
    Profiles::UserLogs::Shard& shard = e.logs->of(e.user);
    std::unique_lock<std::shared_mutex> log_lock(shard.lock);  // readers of seen-sets wait at most this event
    auto* log = reinterpret_cast<UserLog*>(w[kUserLogWord]);
    if (log == nullptr) {  // a new user, or a row restored or evicted: find the log the slow way
        log = &shard.logs[e.user];
        w[kUserLogWord] = reinterpret_cast<std::uint64_t>(log);
    }
    if (e.key != 0 && log->has_key(e.key)) {
        e.duplicate_key = true;
        return false;
    }
    // Exposure: the first event of a user on an item is its impression, whatever its type (a
    // client need not send impression events), and an explicit impression after it adds none.
    e.viewed = !log->seen.contains(e.item);
    log->seen.add(e.item, e.options->seen);
    if (e.key != 0) log->add_key(e.key, e.options->event_key_window);
    const std::size_t dims = e.options->dims;
    float* session = row.vector + dims;
    if (row.existed && w[kEventsApplied] > 0) {
        const float decay = session_decay(*e.rule, e.ts - as_ms(w[kSessionLastMs]));
        if (decay == 0.0f) w[kSessionStartMs] = as_word(e.ts);
        if (decay != 1.0f) {
            for (std::size_t d = 0; d < dims; ++d) session[d] *= decay;
        }
        w[kSessionLastMs] = as_word(std::max(e.ts, as_ms(w[kSessionLastMs])));
    } else {
        w[kSessionStartMs] = w[kSessionLastMs] = as_word(e.ts);
    }
    if (e.item_vector != nullptr && (e.type == EventType::kWatch || e.viewed))  // before this event moves the user
        e.match = match_term(row.vector, session, e.item_vector, dims);
    if (e.positive) {
        const std::size_t history = e.options->co_engagement.history;
        e.partners->clear();
        for (std::size_t i = 0; i < log->positives.size() && i < history; ++i)
            e.partners->push_back(log->positives[i].item);
        e.pair = note_positive(log->positives, e.item, e.ts, e.weight, history);
    }
    if (e.item_vector != nullptr && e.weight != 0.0f) {
        move_toward(row.vector, e.item_vector, dims, e.rule->lr_long, e.weight);
        move_toward(session, e.item_vector, dims, e.rule->lr_session, e.weight);
    }
    w[kHighWaterSeq] = e.seq;
    ++w[kEventsApplied];
    w[kUserImpressions] += e.viewed;
    w[kUserCompletions] += is_completion(*e.rule, e.type, e.watch_ms, e.duration_ms);
    w[kUserFastSkips] += is_fast_skip(*e.rule, e.type, e.watch_ms, e.duration_ms);
    return true;
}

// What one event does to its item's counters.
struct ItemEdit {
    const UpdateRule* rule;
    EventType type;
    std::uint32_t watch_ms, duration_ms;
    bool has_vector;
    std::int64_t match;
    bool viewed;  // the user's first event on it: one impression
};

bool edit_item(void* context, const embed::RowView& row) {
    const auto& e = *static_cast<const ItemEdit*>(context);
    std::uint64_t* c = row.words;
    c[kImpressions] += e.viewed;
    if (e.viewed && e.has_vector) c[kImpressionMatchSum] += static_cast<std::uint64_t>(e.match);
    switch (e.type) {
        case EventType::kImpression: break;  // counted as the first event of its user, above
        case EventType::kWatch:
            ++c[kWatches];
            c[kWatchMs] += e.watch_ms;
            c[kCompletions] += is_completion(*e.rule, e.type, e.watch_ms, e.duration_ms);
            if (e.has_vector) c[kMatchSum] += static_cast<std::uint64_t>(e.match);  // two's complement
            break;
        case EventType::kReplay: ++c[kReplays]; break;
        case EventType::kLike: ++c[kLikes]; break;
        case EventType::kShare: ++c[kShares]; break;
        case EventType::kComment: ++c[kComments]; break;
        case EventType::kFollow: ++c[kFollows]; break;
        case EventType::kSkip: ++c[kSkips]; break;
        case EventType::kNotInterested: ++c[kNotInterested]; break;
    }
    if (is_fast_skip(*e.rule, e.type, e.watch_ms, e.duration_ms)) ++c[kFastSkips];
    return true;
}

struct ItemVector {
    const float* vector;
    std::size_t dims;
};

bool set_item_vector(void* context, const embed::RowView& row) {
    const auto& v = *static_cast<const ItemVector*>(context);
    std::memcpy(row.vector, v.vector, v.dims * sizeof(float));
    row.words[kItemFlags] |= 1;
    return true;
}

void forget_log(void* context, std::uint64_t user) {
    Profiles::UserLogs::Shard& shard = static_cast<Profiles::UserLogs*>(context)->of(user);
    std::unique_lock<std::shared_mutex> lock(shard.lock);
    shard.logs.erase(user);
}

}  // namespace

Profiles::Profiles(const ProfilesOptions& options)
    : options_(options),
      logs_(std::make_unique<UserLogs>()),
      co_(std::make_unique<CoEngagement>(options.co_engagement)) {}
Profiles::~Profiles() = default;

Result<std::unique_ptr<Profiles>> Profiles::create(const ProfilesOptions& o) {
    RECSERVE_RETURN_IF_ERROR(validate(o.rule));
    RECSERVE_RETURN_IF_ERROR(validate(o.seen));
    RECSERVE_RETURN_IF_ERROR(validate(o.co_engagement));
    if (o.dims == 0 || o.dims > 32768) return Status::invalid_argument("dims must be in 1..32768");
    if (o.event_key_window == 0) return Status::invalid_argument("event_key_window must be >= 1");
    std::unique_ptr<Profiles> p(new Profiles(o));
    if (o.user_capacity < o.shards || o.item_capacity < o.shards)
        return Status::invalid_argument("user_capacity and item_capacity must be at least the number of shards");
    // A table that must never drop a row on its own gives every shard room for the whole
    // capacity (rows are allocated as shards fill, so the room costs nothing until used); the
    // total is then bounded by its owner: set_items refuses, evict_users makes room.
    const std::size_t user_rows = o.user_lru ? o.user_capacity : o.user_capacity * o.shards;
    embed::TableOptions user_table{2 * o.dims, user_rows, o.shards, 0.0, 0, kUserTableWords};
    user_table.on_evict = forget_log;  // a user the table drops takes their seen-set along
    user_table.evict_context = p->logs_.get();
    Result<std::unique_ptr<embed::Table>> users = embed::Table::create(user_table);
    if (!users.is_ok()) return Status::invalid_argument("user table: " + users.status().message());
    Result<std::unique_ptr<embed::Table>> items =
        embed::Table::create({o.dims, o.item_capacity * o.shards, o.shards, 0.0, 0, kItemWords});
    if (!items.is_ok()) return Status::invalid_argument("item table: " + items.status().message());
    p->users_ = std::move(users).value();
    p->items_ = std::move(items).value();
    return p;
}

Status Profiles::set_items(const std::uint64_t* ids, const float* vectors, std::size_t n) {
    const std::size_t dims = options_.dims;
    for (std::size_t i = 0; i < n; ++i) {
        if (ids[i] == embed::kInvalidKey)
            return Status::invalid_argument("item id 2^64-1 is reserved (at position " + std::to_string(i) + ")");
        for (std::size_t d = 0; d < dims; ++d) {
            if (!std::isfinite(vectors[i * dims + d]))
                return Status::invalid_argument("vectors row " + std::to_string(i) + ", column " + std::to_string(d) +
                                                " is NaN or infinite");
        }
    }
    std::lock_guard<std::mutex> lock(writer_);
    std::vector<std::uint64_t> fresh;  // keys without a row, counted once each
    for (std::size_t i = 0; i < n; ++i) {
        if (!items_->peek(ids[i], nullptr, nullptr)) fresh.push_back(ids[i]);
    }
    std::sort(fresh.begin(), fresh.end());
    const std::size_t added = static_cast<std::size_t>(std::unique(fresh.begin(), fresh.end()) - fresh.begin());
    if (items_->size() + added > options_.item_capacity)
        return Status::invalid_argument("item_capacity is " + std::to_string(options_.item_capacity) + ": " +
                                        std::to_string(items_->size()) + " items are stored and the batch adds " +
                                        std::to_string(added) + " (raise item_capacity)");
    for (std::size_t i = 0; i < n; ++i) {
        ItemVector v{vectors + i * dims, dims};
        items_->update(ids[i], set_item_vector, &v);
    }
    return Status::ok();
}

std::size_t Profiles::remove_items(const std::uint64_t* ids, std::size_t n) {
    std::lock_guard<std::mutex> lock(writer_);
    co_->remove(ids, n);
    return items_->remove(ids, n);
}

Result<ApplyResult> Profiles::apply(const EventBatch& b) {
    RECSERVE_RETURN_IF_ERROR(check(b));
    const std::size_t dims = options_.dims;
    const UpdateRule& rule = options_.rule;
    thread_local std::vector<float> item_vector;
    thread_local std::vector<std::uint64_t> item_words;
    thread_local std::vector<std::uint64_t> partners;
    const CoEngagementOptions& co = options_.co_engagement;
    item_vector.resize(dims);
    item_words.resize(kItemWords);
    ApplyResult r;
    std::lock_guard<std::mutex> lock(writer_);
    // Random users and items miss the caches at every step (index slot, row, log). Running
    // ahead of the events (slots kAhead events ahead, rows half as far) overlaps those misses.
    constexpr std::size_t kAhead = 16;
    for (std::size_t i = 0; i < std::min(b.n, kAhead); ++i) {
        users_->prefetch(b.users[i]);
        items_->prefetch(b.items[i]);
    }
    for (std::size_t i = 0; i < b.n; ++i) {
        if (i + kAhead < b.n) {
            users_->prefetch(b.users[i + kAhead]);
            items_->prefetch(b.items[i + kAhead]);
        }
        if (i + kAhead / 2 < b.n) {
            users_->prefetch_row(b.users[i + kAhead / 2]);
            items_->prefetch_row(b.items[i + kAhead / 2]);
        }
        if (i + kAhead / 4 < b.n) {  // the LRU neighbours and the user's log, through the rows just fetched
            users_->prefetch_links(b.users[i + kAhead / 4]);
            items_->prefetch_links(b.items[i + kAhead / 4]);
            __builtin_prefetch(reinterpret_cast<const void*>(users_->peek_word(b.users[i + kAhead / 4], kUserLogWord)));
        }
        if (i + kAhead / 8 < b.n) {  // and the end of its seen ring
            const auto* log = reinterpret_cast<const UserLog*>(users_->peek_word(b.users[i + kAhead / 8], kUserLogWord));
            if (log != nullptr) log->seen.prefetch();
        }
        const auto type = static_cast<EventType>(b.types[i]);
        // Item rows change only under writer_, which this thread holds: no sequence lock needed.
        const bool has_row = items_->peek(b.items[i], item_vector.data(), item_words.data());
        const bool has_vector = has_row && (item_words[kItemFlags] & 1);
        const float weight = engagement_weight(rule, type, b.watch_ms[i], b.duration_ms[i]);
        UserEdit edit{&rule,
                      &options_,
                      logs_.get(),
                      b.users[i],
                      b.items[i],
                      b.event_keys != nullptr ? b.event_keys[i] : 0,
                      has_vector ? item_vector.data() : nullptr,
                      weight,
                      b.ts_ms[i],
                      b.seq[i],
                      type,
                      b.watch_ms[i],
                      b.duration_ms[i],
                      has_vector && co.neighbours > 0 && weight >= co.positive_weight,
                      &partners};
        users_->update(b.users[i], edit_user, &edit);
        if (edit.stale || edit.duplicate_key) {
            ++(edit.stale ? r.stale : r.duplicate_keys);
            continue;
        }
        if (!has_vector) ++r.unknown_items;
        if (has_row) {
            ItemEdit item_edit{&rule, type, b.watch_ms[i], b.duration_ms[i], has_vector, edit.match, edit.viewed};
            items_->update_words(b.items[i], edit_item, &item_edit);
        }
        if (edit.pair) {
            // Only catalogue items get lists: a recent positive since removed (or one an imported
            // image brought from elsewhere) pairs with nothing.
            std::size_t kept = 0;
            for (const std::uint64_t partner : partners) {
                if (items_->peek(partner, nullptr, item_words.data()) && (item_words[kItemFlags] & 1))
                    partners[kept++] = partner;
            }
            co_->add(b.items[i], partners.data(), kept, b.ts_ms[i]);
        }
        ++r.applied;
    }
    applied_.fetch_add(r.applied, std::memory_order_relaxed);
    stale_.fetch_add(r.stale, std::memory_order_relaxed);
    duplicate_keys_.fetch_add(r.duplicate_keys, std::memory_order_relaxed);
    unknown_items_.fetch_add(r.unknown_items, std::memory_order_relaxed);
    return r;
}

void Profiles::user_vectors(const std::uint64_t* users, std::size_t n, std::int64_t now_ms, float* long_term,
                            float* session, bool* found) const {
    const std::size_t dims = options_.dims;
    thread_local std::vector<float> rows;
    thread_local std::vector<std::uint64_t> words;
    rows.resize(n * 2 * dims);
    words.resize(n * kUserTableWords);
    users_->read(users, n, rows.data(), words.data(), found);
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = rows.data() + i * 2 * dims;
        if (long_term != nullptr) std::memcpy(long_term + i * dims, row, dims * sizeof(float));
        if (session != nullptr) {
            const float decay =
                found[i] ? session_decay(options_.rule, now_ms - as_ms(words[i * kUserTableWords + kSessionLastMs])) : 0.0f;
            for (std::size_t d = 0; d < dims; ++d) session[i * dims + d] = decay * row[dims + d];
        }
    }
}

void Profiles::user_words(const std::uint64_t* users, std::size_t n, std::uint64_t* words, bool* found) const {
    thread_local std::vector<std::uint64_t> all;
    all.resize(n * kUserTableWords);
    users_->read(users, n, nullptr, all.data(), found);
    for (std::size_t i = 0; i < n; ++i) std::copy_n(all.data() + i * kUserTableWords, kUserWords, words + i * kUserWords);
}

void Profiles::seen(std::uint64_t user, const std::uint64_t* items, std::size_t n, bool* out) const {
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> lock(shard.lock);
    const auto it = shard.logs.find(user);
    for (std::size_t i = 0; i < n; ++i) out[i] = it != shard.logs.end() && it->second.seen.contains(items[i]);
}

std::vector<std::uint64_t> Profiles::recent_items(std::uint64_t user) const {
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> lock(shard.lock);
    const auto it = shard.logs.find(user);
    return it == shard.logs.end() ? std::vector<std::uint64_t>{} : it->second.seen.recent();
}

bool Profiles::seen_before_recent(std::uint64_t user, std::uint64_t item) const {
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> lock(shard.lock);
    const auto it = shard.logs.find(user);
    return it != shard.logs.end() && it->second.seen.contains_older(item);
}

bool Profiles::has_seen_before_recent(std::uint64_t user) const {
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> lock(shard.lock);
    const auto it = shard.logs.find(user);
    return it != shard.logs.end() && it->second.seen.added() > options_.seen.recent;
}

std::vector<RecentPositive> Profiles::recent_positives(std::uint64_t user) const {
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> lock(shard.lock);
    const auto it = shard.logs.find(user);
    return it == shard.logs.end() ? std::vector<RecentPositive>{} : it->second.positives;
}

Result<std::size_t> Profiles::related(std::uint64_t user, std::int64_t now_ms, std::size_t k, float recency_decay,
                                      float alpha, std::uint64_t* keys, float* scores) const {
    if (k < 1 || k > kMaxRelated)
        return Status::invalid_argument("k must be in 1.." + std::to_string(kMaxRelated) + ", got " + std::to_string(k));
    if (!(recency_decay >= 0.0f && recency_decay <= 1.0f))
        return Status::invalid_argument("recency_decay must be in [0, 1]");
    if (!(alpha >= 0.0f && alpha <= 1.0f)) return Status::invalid_argument("alpha must be in [0, 1]");
    thread_local std::vector<RecentPositive> recent;
    recent.clear();
    {
        const UserLogs::Shard& shard = logs_->of(user);
        std::shared_lock<std::shared_mutex> lock(shard.lock);
        const auto it = shard.logs.find(user);
        if (it != shard.logs.end()) recent.assign(it->second.positives.begin(), it->second.positives.end());
    }
    return co_->related(recent.data(), recent.size(), now_ms, k, recency_decay, alpha, keys, scores);
}

void Profiles::items(const std::uint64_t* ids, std::size_t n, float* vectors, std::uint64_t* words, bool* found) const {
    items_->read(ids, n, vectors, words, found);
}

ProfilesStats Profiles::stats() const {
    ProfilesStats s;
    s.applied = applied_.load(std::memory_order_relaxed);
    s.stale = stale_.load(std::memory_order_relaxed);
    s.duplicate_keys = duplicate_keys_.load(std::memory_order_relaxed);
    s.unknown_items = unknown_items_.load(std::memory_order_relaxed);
    s.user_table = users_->stats();
    s.item_table = items_->stats();
    s.users = s.user_table.rows;
    s.items = s.item_table.rows;
    s.co_engagement = co_->stats();
    return s;
}

}  // namespace recserve::profiles

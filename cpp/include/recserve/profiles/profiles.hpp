// User and item state, and the update rules that events apply to it.
//
//   users: embed::Table, row = [long-term (dims) | session (dims)], words = UserWord
//   items: embed::Table, row = the item's vector (dims), words = ItemStat counters + flags
//   per-user log (sharded maps, a reader-writer lock per shard): the seen-set, the window of
//   recent event keys, and the recent positives
//   co-engagement index (co_engagement.hpp): item-to-item neighbours from users' positives
//
// apply() is the single writer (calls are serialised). For each event, in order: drop it if
// its key is in the user's window or its sequence number is at or below the user's high-water
// mark (counted, not an error); otherwise update the user's row (session decay, both vectors
// moved by the rule, high-water mark, event count), the user's seen-set, and the item's
// counters (one seqlocked write, so a reader sees all counters of one moment), and for a positive
// (co_engagement.hpp) the user's recent positives and the co-engagement index. The user's row
// holds a pointer to the user's log for the writer alone, which saves a map lookup per event. Readers of vectors
// and counters never lock (the tables' sequence locks); readers of seen-sets take a shared lock
// that a writer holds for one event at most.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "recserve/base/status.hpp"
#include "recserve/embed/table.hpp"
#include "recserve/profiles/co_engagement.hpp"
#include "recserve/profiles/event.hpp"
#include "recserve/profiles/rule.hpp"
#include "recserve/profiles/seen_set.hpp"

namespace recserve::profiles {

enum UserWord : std::size_t {
    kHighWaterSeq,      // the largest sequence number applied
    kEventsApplied,     // distinct events applied
    kSessionLastMs,     // ts of the latest event (int64 bits)
    kSessionStartMs,    // ts of the session's first event (int64 bits)
    kUserImpressions,   // items the user met (their first event on each): the ranker's activity feature
    kUserCompletions,   // watches that completed (as the item counter counts them)
    kUserFastSkips,     // fast skips (as the item counter counts them)
    kUserWords,         // the words user_words() reports
    kUserLogWord = kUserWords,  // the writer's shortcut to the user's log (0 after a restore)
    kUserTableWords,
};

enum ItemStat : std::size_t {
    // Users who met the item: each user's first event on it (while their seen-set holds it) is
    // one impression, an explicit impression event or any other, so exposure never depends on
    // clients sending impression events, and an impression and a watch of one view count once.
    kImpressions,
    kWatches,
    kWatchMs,
    kCompletions,
    kReplays,
    kLikes,
    kShares,
    kComments,
    kFollows,
    kSkips,
    kFastSkips,
    kNotInterested,
    // Watches on an item with a vector: sum of round(2^20 cos(q, item)), the viewer's match
    // before the event moved them, q = unit(long-term) + unit(session decayed to the event's ts)
    // (zero parts skipped; 0 when q is zero). Fixed point, int64 bits (it can be negative).
    kMatchSum,
    // The same sum over impressions (each user's first event on the item, any type): what the
    // item's audience was expected to do, so amplification judges an item by what it got beyond
    // its viewers' match to it.
    kImpressionMatchSum,
    kItemCounters,
    kItemFlags = kItemCounters,  // bit 0: the item has a vector
    kItemWords,
};
inline constexpr const char* kItemStatNames[kItemCounters] = {
    "impressions", "watches", "watch_ms", "completions", "replays", "likes",
    "shares", "comments", "follows", "skips", "fast_skips", "not_interested", "match_sum",
    "impression_match_sum"};
inline constexpr int kMatchSumFractionBits = 20;

struct ProfilesOptions {
    std::size_t dims = 0;
    std::size_t user_capacity = 1u << 20;
    std::size_t item_capacity = 1u << 20;
    std::size_t shards = 16;
    SeenOptions seen;
    std::uint32_t event_key_window = 256;  // recent event keys remembered per user
    UpdateRule rule;
    // true: a new user in a full shard of the user table evicts that shard's LRU user (their
    // state must live elsewhere too: DynamoDB). false: the table never drops a user on its
    // own; the owner keeps at most user_capacity users by evict_users(), which hands over each
    // user's image before it goes (the embedded store writes them to disk).
    bool user_lru = true;
    CoEngagementOptions co_engagement;
};

// One user's whole state as export_user() writes it.
struct UserImage {
    std::uint64_t user = 0;
    std::vector<char> vectors, state;
};

struct ApplyResult {
    std::size_t applied = 0;
    std::size_t stale = 0;           // sequence number at or below the user's high-water mark
    std::size_t duplicate_keys = 0;  // event key already applied for that user
    std::size_t unknown_items = 0;   // applied, but the item has no vector: vectors not moved
};

struct ProfilesStats {
    std::uint64_t applied = 0, stale = 0, duplicate_keys = 0, unknown_items = 0;
    std::size_t users = 0, items = 0;
    embed::TableStats user_table, item_table;
    CoEngagementStats co_engagement;
};

class Profiles {
  public:
    static Result<std::unique_ptr<Profiles>> create(const ProfilesOptions& options);
    ~Profiles();
    const ProfilesOptions& options() const { return options_; }

    // Upserts item vectors (their counters are kept). NaN, infinity, kInvalidKey, or more
    // items than item_capacity in all: an error and nothing written. Items are never evicted:
    // the catalogue is bounded by refusing, not by forgetting.
    Status set_items(const std::uint64_t* ids, const float* vectors, std::size_t n);
    // Drops items with their counters and co-engagement lists; returns how many had rows.
    std::size_t remove_items(const std::uint64_t* ids, std::size_t n);

    // kInvalidArgument naming the first bad event and field, else ok. apply() checks the same
    // first; a log checks before it appends, so no bad batch is ever made durable.
    static Status check(const EventBatch& batch);
    // Checks the whole batch first (an error names the event and field; nothing applied).
    // An event on an item without a row moves its user (seen-set, counters) and is counted in
    // unknown_items, but creates no item row: events cannot crowd out the catalogue.
    Result<ApplyResult> apply(const EventBatch& batch);

    // Removes users until at most `keep` remain (LRU per shard, see embed::Table::evict), each
    // with its seen-set and event key window, appending their images to *out (may be null).
    std::size_t evict_users(std::size_t keep, std::vector<UserImage>* out);
    // Forgets one user: row, seen-set, event key window and recent positives. Returns whether
    // there was any. What their positives added to the co-engagement index stays: aggregate
    // counts over users, not the user's data.
    bool erase_user(std::uint64_t user);

    // Long-term and session vectors (n x dims each, either may be null), the session decayed
    // to now_ms; zeros and found = false for users without state.
    void user_vectors(const std::uint64_t* users, std::size_t n, std::int64_t now_ms, float* long_term,
                      float* session, bool* found) const;
    // n x kUserWords.
    void user_words(const std::uint64_t* users, std::size_t n, std::uint64_t* words, bool* found) const;
    // out[i]: whether user has seen items[i].
    void seen(std::uint64_t user, const std::uint64_t* items, std::size_t n, bool* out) const;
    std::vector<std::uint64_t> recent_items(std::uint64_t user) const;
    // Whether the user's seen-set holds the item among those older than recent_items() (for a
    // search filter that checks recent_items() itself), and whether it holds any such item.
    bool seen_before_recent(std::uint64_t user, std::uint64_t item) const;
    bool has_seen_before_recent(std::uint64_t user) const;
    // The user's recent positives, newest first (co_engagement.hpp); empty for none.
    std::vector<RecentPositive> recent_positives(std::uint64_t user) const;
    // The top k items related to the user's recent positives (co_engagement.hpp), keys[0..m)
    // and scores[0..m) with m returned. k in 1..kMaxRelated, recency_decay and alpha in [0, 1]:
    // else kInvalidArgument. Reader-safe while apply() runs.
    Result<std::size_t> related(std::uint64_t user, std::int64_t now_ms, std::size_t k, float recency_decay,
                                float alpha, std::uint64_t* keys, float* scores) const;
    const CoEngagement& co_engagement() const { return *co_; }
    // Vectors (n x dims) and counters (n x kItemWords; either may be null); found = has a row.
    // A row's vector is set only if its kItemFlags word has bit 0 (events can count an item
    // before its vector arrives).
    void items(const std::uint64_t* ids, std::size_t n, float* vectors, std::uint64_t* words, bool* found) const;

    ProfilesStats stats() const;

    // One user's whole state, for a store that keeps users elsewhere (DynamoDB): `vectors` the
    // row's floats (long-term | session, 2 x dims), `state` the words, seen-set and event key
    // window (a versioned image, user_state.cpp). Taken under the writer lock, so both halves
    // are of one moment. False (outputs untouched) for a user without a row.
    bool export_user(std::uint64_t user, std::vector<char>* vectors, std::vector<char>* state) const;
    // Replaces the state of n users with exported images (vectors[i], state[i]) where the
    // image's high-water mark is above the row's (a row that has applied as much or more is
    // kept); *imported (may be null) counts the replaced. All images are checked first: a
    // damaged or mismatched one is kInvalidArgument naming it, and nothing changes.
    Status import_users(const std::uint64_t* users, const std::vector<char>* vectors,
                        const std::vector<char>* states, std::size_t n, std::size_t* imported = nullptr);

    // The whole state as one snapshot file image (header, body, checksums), tagged with lsn
    // (the log position it includes). Taken under the writer lock; write it without the lock.
    std::vector<char> snapshot(std::uint64_t lsn) const;
    // Reads a snapshot file into a new Profiles with these options (dims and seen options must
    // match the file's). kCorrupt for a damaged or truncated file, kNotFound for none.
    static Result<std::unique_ptr<Profiles>> load(const std::string& path, const ProfilesOptions& options,
                                                  std::uint64_t* lsn);

    struct UserLogs;  // profiles.cpp

  private:
    explicit Profiles(const ProfilesOptions& options);
    ProfilesOptions options_;
    std::unique_ptr<embed::Table> users_, items_;
    std::unique_ptr<UserLogs> logs_;
    std::unique_ptr<CoEngagement> co_;
    mutable std::mutex writer_;  // apply, set_items, remove_items, snapshot
    std::atomic<std::uint64_t> applied_{0}, stale_{0}, duplicate_keys_{0}, unknown_items_{0};
};

}  // namespace recserve::profiles

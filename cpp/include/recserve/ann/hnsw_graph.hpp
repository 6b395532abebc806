// The HNSW graph (Malkov & Yashunin), templated on the vector storage.
//
// Per slot, three parallel arrays whose addresses never move (ChunkedArray):
//   meta_   NodeMeta  { label u64 | upper u32* | level u8 | state u8 | lock u8 }  24 bytes
//   links0_ level-0 list: [ count u32 | id u32 × M0 ]                            4 + 4·M0
//   storage the vector payload (see vector_storage.hpp)
// Levels 1..level live in one heap block per node: level × [ count u32 | id u32 × M ].
//
// Concurrency: one writer at a time (the Index's write mutex), which may fan an insert batch
// out to several threads; those coordinate through the per-node lock. Readers never lock:
// link counts and ids are read with acquire loads and written with release stores, so a
// reader that finds a slot through a link sees its payload. A removed node stays linked (a
// tombstone) until repair() unlinks it; its slot is reused only after GracePeriod says no
// reader can still hold it.
//
// Reachability: pruning a full list can drop a node's last in-link, leaving it invisible to
// every search (parallel inserts make that likelier). After each insert batch and each repair,
// ensure_in_links() relinks every node that may have lost its last level-0 in-link.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

#include "recserve/ann/chunked_array.hpp"
#include "recserve/ann/grace_period.hpp"
#include "recserve/ann/search_scratch.hpp"
#include "recserve/ann/spin_lock.hpp"

namespace recserve::ann {

enum class SlotState : std::uint8_t {
    kUnused = 0,   // never written (fresh zeroed memory)
    kLive = 1,     // searchable
    kDeleted = 2,  // removed: traversed but never returned, still linked until repair
    kFree = 3,     // unlinked and on the free list
};

struct NodeMeta {
    std::uint64_t label;     // external id; written before the slot is published
    std::uint32_t* upper;    // links of levels 1..level (nullptr at level 0); atomic_ref
    std::uint8_t level;
    std::uint8_t state;      // SlotState; atomic_ref
    std::uint8_t lock;       // NodeLockGuard bit
};
static_assert(sizeof(NodeMeta) == 24, "NodeMeta layout is part of the memory budget");

inline constexpr std::uint32_t kNoSlot = std::numeric_limits<std::uint32_t>::max();
inline constexpr int kMaxLevel = 31;

template <class Storage>
class HnswGraph {
  public:
    template <class... StorageArgs>
    HnswGraph(std::size_t M, std::size_t ef_construction, StorageArgs&&... storage_args)
        : storage_(std::forward<StorageArgs>(storage_args)...), M_(M), M0_(2 * M), ef_construction_(ef_construction),
          meta_(sizeof(NodeMeta)), links0_(sizeof(std::uint32_t) * (1 + 2 * M)) {}
    ~HnswGraph() {
        for (std::uint32_t s = 0; s < slot_count(); ++s) delete[] meta(s).upper;
    }
    HnswGraph(const HnswGraph&) = delete;
    HnswGraph& operator=(const HnswGraph&) = delete;

    Storage& storage() { return storage_; }
    const Storage& storage() const { return storage_; }
    std::size_t M() const { return M_; }
    std::size_t max_links(int level) const { return level == 0 ? M0_ : M_; }
    GracePeriod& grace() const { return grace_; }

    // Slots handed out so far (live, deleted, free or being written).
    std::uint32_t slot_count() const { return slot_count_.load(std::memory_order_acquire); }

    // ---- slot lifecycle (writer) --------------------------------------------------------

    // Makes room for `slots` slots in every array; false when memory runs out.
    bool reserve(std::size_t slots) {
        return meta_.reserve(slots) && links0_.reserve(slots) && storage_.slots().reserve(slots);
    }
    // A slot for a new node: a reusable free one, else a fresh one (capacity must be reserved).
    std::uint32_t take_slot() {
        if (!free_.empty()) {
            const std::uint32_t s = free_.back();
            free_.pop_back();
            return s;
        }
        const std::uint32_t s = slot_count_.load(std::memory_order_relaxed);
        // release: readers that see the new count also see the zeroed chunk it lives in.
        slot_count_.store(s + 1, std::memory_order_release);
        return s;
    }
    std::size_t free_slots() const { return free_.size(); }
    const std::vector<std::uint32_t>& free_list() const { return free_; }

    NodeMeta& meta(std::uint32_t s) const { return *reinterpret_cast<NodeMeta*>(meta_.at(s)); }
    SlotState state(std::uint32_t s) const {
        // acquire: a reader that sees kLive also sees the payload and label written before it.
        return static_cast<SlotState>(std::atomic_ref<std::uint8_t>(meta(s).state).load(std::memory_order_acquire));
    }
    void set_state(std::uint32_t s, SlotState st) {
        std::atomic_ref<std::uint8_t>(meta(s).state).store(static_cast<std::uint8_t>(st), std::memory_order_release);
    }

    // Link list of slot s at a level: [count, ids...].
    std::uint32_t* links(std::uint32_t s, int level) const {
        if (level == 0) return reinterpret_cast<std::uint32_t*>(links0_.at(s));
        std::uint32_t* upper = std::atomic_ref<std::uint32_t*>(meta(s).upper).load(std::memory_order_acquire);
        return upper + static_cast<std::size_t>(level - 1) * (1 + M_);
    }
    // Copies the current list into out (readers and writers alike).
    std::size_t read_links(std::uint32_t s, int level, std::uint32_t* out) const {
        // atomic_ref<const T> is C++26 (libc++ rejects it): a non-const view, only loaded from.
        std::uint32_t* l = links(s, level);
        std::size_t n = std::atomic_ref<std::uint32_t>(l[0]).load(std::memory_order_acquire);
        n = std::min(n, max_links(level));
        for (std::size_t i = 0; i < n; ++i)
            out[i] = std::atomic_ref<std::uint32_t>(l[1 + i]).load(std::memory_order_acquire);
        return n;
    }
    // Replaces the list; the caller holds the node's lock (or the node is unpublished).
    void write_links(std::uint32_t s, int level, const std::uint32_t* ids, std::size_t n) {
        std::uint32_t* l = links(s, level);
        // release: each id is published with the payload of the node it names.
        for (std::size_t i = 0; i < n; ++i) std::atomic_ref<std::uint32_t>(l[1 + i]).store(ids[i], std::memory_order_release);
        std::atomic_ref<std::uint32_t>(l[0]).store(static_cast<std::uint32_t>(n), std::memory_order_release);
    }

    // Prepares slot s for a node at `level` whose payload the caller has stored.
    void init_node(std::uint32_t s, std::uint64_t label, int level) {
        NodeMeta& m = meta(s);
        delete[] m.upper;  // a reused slot: no reader can reach it any more (grace period passed)
        std::uint32_t* upper = level > 0 ? new std::uint32_t[static_cast<std::size_t>(level) * (1 + M_)]() : nullptr;
        std::atomic_ref<std::uint32_t*>(m.upper).store(upper, std::memory_order_release);
        m.label = label;
        m.level = static_cast<std::uint8_t>(level);
        std::atomic_ref<std::uint32_t>(*links(s, 0)).store(0, std::memory_order_release);
    }

    // ---- entry point --------------------------------------------------------------------

    struct Entry {
        std::uint32_t slot;
        int level;
    };
    Entry entry() const {
        const std::uint64_t e = entry_.load(std::memory_order_acquire);
        if (e == kNoEntry) return {kNoSlot, -1};
        return {static_cast<std::uint32_t>(e), static_cast<int>(e >> 32)};
    }
    void set_entry(Entry e) {
        const std::uint64_t packed = e.slot == kNoSlot ? kNoEntry : (std::uint64_t(unsigned(e.level)) << 32) | e.slot;
        entry_.store(packed, std::memory_order_release);
    }

    // ---- search -------------------------------------------------------------------------

    // Greedy descent through levels above `target`, from the entry point.
    template <class Query>
    Candidate descend(const Query& q, int target, Entry from, SearchScratch& s) const {
        Candidate cur{storage_.distance(q, from.slot), from.slot};
        std::uint32_t* buf = link_buffer(s);
        for (int level = from.level; level > target; --level) {
            for (bool moved = true; moved;) {
                moved = false;
                const std::size_t n = read_links(cur.slot, level, buf);
                for (std::size_t i = 0; i < n; ++i) {
                    const float d = storage_.distance(q, buf[i]);
                    if (d < cur.dist) {
                        cur = {d, buf[i]};
                        moved = true;
                    }
                }
            }
        }
        return cur;
    }

    // Beam search of one level from `start`; leaves up to ef eligible nodes in s.results
    // (a max-heap). Ineligible nodes are walked through but never kept.
    template <class Query, class Eligible>
    void search_level(const Query& q, Candidate start, std::size_t ef, int level, SearchScratch& s,
                      const Eligible& eligible) const {
        s.visited.reset(slot_count());
        s.frontier.clear();
        s.results.clear();
        s.visited.test_and_set(start.slot);
        s.frontier.push_back(start);
        float bound = std::numeric_limits<float>::infinity();
        if (eligible(start.slot)) {
            s.results.push_back(start);
            bound = start.dist;
        }
        std::uint32_t* buf = link_buffer(s);
        while (!s.frontier.empty()) {
            const Candidate c = s.frontier.front();
            if (c.dist > bound && s.results.size() >= ef) break;
            std::pop_heap(s.frontier.begin(), s.frontier.end(), CloserFirst{});
            s.frontier.pop_back();

            const std::size_t n = read_links(c.slot, level, buf);
            std::size_t fresh = 0;
            for (std::size_t i = 0; i < n; ++i) {
                if (!s.visited.test_and_set(buf[i])) {
                    buf[fresh++] = buf[i];
                    storage_.prefetch(buf[i]);
                }
            }
            for (std::size_t i = 0; i < fresh; ++i) {
                const std::uint32_t slot = buf[i];
                const float d = storage_.distance(q, slot);
                if (s.results.size() < ef || d < bound) {
                    s.frontier.push_back({d, slot});
                    std::push_heap(s.frontier.begin(), s.frontier.end(), CloserFirst{});
                    if (eligible(slot)) {
                        s.results.push_back({d, slot});
                        std::push_heap(s.results.begin(), s.results.end(), FartherFirst{});
                        if (s.results.size() > ef) {
                            std::pop_heap(s.results.begin(), s.results.end(), FartherFirst{});
                            s.results.pop_back();
                        }
                        bound = s.results.front().dist;
                    }
                }
            }
        }
    }

    // ---- insert (writer threads) --------------------------------------------------------

    // Links slot s (payload stored, init_node done, state set) into the graph.
    template <class Query>
    void insert(std::uint32_t s, const Query& q, SearchScratch& scratch) {
        const int level = meta(s).level;
        Entry ep = entry();
        if (ep.slot == kNoSlot) {
            std::lock_guard<std::mutex> lock(entry_mu_);
            ep = entry();
            if (ep.slot == kNoSlot) {
                set_entry({s, level});
                return;
            }
        }
        Candidate cur = descend(q, level, ep, scratch);
        const auto live = [this, s](std::uint32_t x) { return x != s && state(x) == SlotState::kLive; };
        // Every level's own list is written before any neighbour links back: a concurrent
        // insert that reaches s must find its lists filled, or its back-link to s could be
        // overwritten by s's own write and leave it unreachable.
        const int top = std::min(level, ep.level);
        if (scratch.per_level.size() < static_cast<std::size_t>(top + 1)) scratch.per_level.resize(top + 1);
        for (int l = top; l >= 0; --l) {
            auto& chosen = scratch.per_level[l];
            chosen.clear();
            search_level(q, cur, ef_construction_, l, scratch, live);
            if (scratch.results.empty()) continue;
            scratch.pool.assign(scratch.results.begin(), scratch.results.end());
            std::sort(scratch.pool.begin(), scratch.pool.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
            cur = scratch.pool.front();
            select_neighbors(scratch.pool, M_, chosen);
            NodeLockGuard guard(meta(s).lock);
            write_selected(s, l, chosen);
        }
        for (int l = top; l >= 0; --l)
            for (const Candidate& n : scratch.per_level[l]) connect(n.slot, s, n.dist, l, scratch);
        if (level > ep.level) {
            std::lock_guard<std::mutex> lock(entry_mu_);
            if (level > entry().level) set_entry({s, level});
        }
    }

    // ---- in-links (writer, single thread) -----------------------------------------------

    // Gives each listed live node an in-link at level 0. A node nobody links to is invisible to
    // every search, and HNSW's pruning can leave one: a neighbour's list, pruned for a newer
    // node, drops it. Parallel inserts make this likelier, as each prunes without seeing the
    // others' links. `nodes` are those that may have lost their last in-link (a batch's new
    // nodes, the ones a prune dropped); it is consumed. Returns how many were relinked.
    std::size_t ensure_in_links(std::vector<std::uint32_t>& nodes, SearchScratch& scratch) {
        std::sort(nodes.begin(), nodes.end());
        nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
        std::size_t relinked = 0;
        // A forced link displaces a node, which is checked in turn; the bound stops a cycle.
        std::size_t forced_left = nodes.size() + 16;
        while (!nodes.empty()) {
            const std::uint32_t x = nodes.back();
            nodes.pop_back();
            if (state(x) != SlotState::kLive || has_in_link(x, kNoSlot)) continue;
            std::uint32_t displaced = kNoSlot;
            if (!link_to(x, scratch, displaced)) continue;
            ++relinked;
            if (displaced != kNoSlot && forced_left > 0) {
                --forced_left;
                nodes.push_back(displaced);
            }
        }
        nodes.clear();
        return relinked;
    }

    // ---- repair (writer, single thread) -------------------------------------------------

    // Unlinks every kDeleted node: each live node that pointed at one is reconnected through
    // the deleted node's own neighbours (as FreshDiskANN does), then the slots go to the free
    // list once no reader can hold them. Returns how many slots were freed.
    std::size_t repair(SearchScratch& scratch) {
        const std::uint32_t n_slots = slot_count();
        std::vector<std::uint32_t> dead;
        for (std::uint32_t x = 0; x < n_slots; ++x)
            if (state(x) == SlotState::kDeleted) dead.push_back(x);
        if (dead.empty()) return 0;
        // Live nodes a dead one links to lose that in-link when it goes.
        scratch.unlinked.clear();
        std::vector<std::uint32_t> mine(M0_ + 1);
        for (std::uint32_t x : dead) {
            const std::size_t n = read_links(x, 0, mine.data());
            scratch.unlinked.insert(scratch.unlinked.end(), mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(n));
        }
        std::vector<std::uint32_t> theirs(M0_ + 1);
        std::vector<std::uint32_t> merged;
        for (std::uint32_t p = 0; p < n_slots; ++p) {
            if (state(p) != SlotState::kLive) continue;
            for (int l = 0; l <= meta(p).level; ++l) {
                const std::size_t n = read_links(p, l, mine.data());
                bool touched = false;
                merged.clear();
                for (std::size_t i = 0; i < n; ++i) {
                    const std::uint32_t x = mine[i];
                    if (state(x) == SlotState::kLive) {
                        merged.push_back(x);
                        continue;
                    }
                    touched = true;
                    if (meta(x).level < l) continue;
                    const std::size_t m = read_links(x, l, theirs.data());
                    for (std::size_t j = 0; j < m; ++j)
                        if (theirs[j] != p && state(theirs[j]) == SlotState::kLive) merged.push_back(theirs[j]);
                }
                if (!touched) continue;
                std::sort(merged.begin(), merged.end());
                merged.erase(std::unique(merged.begin(), merged.end()), merged.end());
                scratch.pool.clear();
                for (std::uint32_t x : merged) scratch.pool.push_back({storage_.distance(p, x), x});
                std::sort(scratch.pool.begin(), scratch.pool.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
                select_neighbors(scratch.pool, max_links(l), scratch.selected);
                if (scratch.selected.empty()) relink_by_search(p, l, scratch);
                else if (l == 0) note_unlinked(scratch.pool, scratch.selected, scratch.unlinked);
                NodeLockGuard guard(meta(p).lock);
                write_selected(p, l, scratch.selected);
            }
        }
        Entry ep = entry();
        if (ep.slot != kNoSlot && state(ep.slot) != SlotState::kLive) {
            Entry best{kNoSlot, -1};
            for (std::uint32_t x = 0; x < n_slots; ++x)
                if (state(x) == SlotState::kLive && meta(x).level > best.level) best = {x, meta(x).level};
            set_entry(best);
        }
        ensure_in_links(scratch.unlinked, scratch);
        grace_.wait_for_readers();  // nobody can still be standing on a dead node
        for (std::uint32_t x : dead) {
            NodeMeta& m = meta(x);
            delete[] m.upper;
            std::atomic_ref<std::uint32_t*>(m.upper).store(nullptr, std::memory_order_relaxed);
            m.level = 0;
            std::atomic_ref<std::uint32_t>(*links(x, 0)).store(0, std::memory_order_relaxed);
            set_state(x, SlotState::kFree);
            free_.push_back(x);
        }
        return dead.size();
    }

    // Finds fresh neighbours for p at a level by searching from the entry point, for a node
    // whose neighbours (and theirs) were all deleted. Leaves them in scratch.selected.
    void relink_by_search(std::uint32_t p, int level, SearchScratch& scratch) {
        const Entry ep = entry();
        if (ep.slot == kNoSlot || ep.level < level) return;
        const auto q = storage_.query_of(p);
        const auto live = [this, p](std::uint32_t x) { return x != p && state(x) == SlotState::kLive; };
        const Candidate start = descend(q, level, ep, scratch);
        search_level(q, start, ef_construction_, level, scratch, live);
        scratch.pool.assign(scratch.results.begin(), scratch.results.end());
        std::sort(scratch.pool.begin(), scratch.pool.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
        select_neighbors(scratch.pool, max_links(level), scratch.selected);
    }

    // ---- persistence support ------------------------------------------------------------

    // Restores raw state after load (writer, no readers yet).
    void restore(std::uint32_t slots, Entry entry, std::vector<std::uint32_t> free_list) {
        slot_count_.store(slots, std::memory_order_release);
        set_entry(entry);
        free_ = std::move(free_list);
    }

    std::size_t memory_bytes() const {
        std::size_t upper = 0;
        for (std::uint32_t s = 0; s < slot_count(); ++s)
            upper += static_cast<std::size_t>(meta(s).level) * (1 + M_) * sizeof(std::uint32_t);
        return meta_.allocated_bytes() + links0_.allocated_bytes() + storage_.slots().allocated_bytes() + upper +
               free_.capacity() * sizeof(std::uint32_t);
    }

  private:
    static constexpr std::uint64_t kNoEntry = ~std::uint64_t{0};

    std::uint32_t* link_buffer(SearchScratch& s) const {
        if (s.links.size() < M0_ + 1) s.links.resize(M0_ + 1);
        return s.links.data();
    }

    // The HNSW heuristic: keep a candidate only if it is closer to the base than to every
    // neighbour already kept, so links spread in all directions. `pool` is sorted by dist.
    void select_neighbors(const std::vector<Candidate>& pool, std::size_t m, std::vector<Candidate>& out) const {
        out.clear();
        if (pool.size() <= m) {  // nothing to choose between: keep every candidate
            out.assign(pool.begin(), pool.end());
            return;
        }
        for (const Candidate& c : pool) {
            if (out.size() >= m) break;
            bool diverse = true;
            for (const Candidate& kept : out) {
                if (storage_.distance(c.slot, kept.slot) < c.dist) {
                    diverse = false;
                    break;
                }
            }
            if (diverse) out.push_back(c);
        }
    }

    void write_selected(std::uint32_t s, int level, const std::vector<Candidate>& selected) {
        std::uint32_t ids[2 * kMaxM];
        std::size_t n = 0;
        for (const Candidate& c : selected) ids[n++] = c.slot;
        write_links(s, level, ids, n);
    }

    // Adds a back-link n -> s, pruning n's list with the heuristic when it is full. Uses its
    // own scratch vectors: the caller is iterating over scratch.selected.
    void connect(std::uint32_t n, std::uint32_t s, float dist, int level, SearchScratch& scratch) {
        NodeLockGuard guard(meta(n).lock);
        std::uint32_t ids[2 * kMaxM + 1];
        const std::size_t count = read_links(n, level, ids);
        for (std::size_t i = 0; i < count; ++i)
            if (ids[i] == s) return;
        const std::size_t cap = max_links(level);
        if (count < cap) {
            std::uint32_t* l = links(n, level);
            std::atomic_ref<std::uint32_t>(l[1 + count]).store(s, std::memory_order_release);
            std::atomic_ref<std::uint32_t>(l[0]).store(static_cast<std::uint32_t>(count + 1), std::memory_order_release);
            return;
        }
        scratch.prune_pool.clear();
        scratch.prune_pool.push_back({dist, s});
        for (std::size_t i = 0; i < count; ++i) scratch.prune_pool.push_back({storage_.distance(n, ids[i]), ids[i]});
        std::sort(scratch.prune_pool.begin(), scratch.prune_pool.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
        select_neighbors(scratch.prune_pool, cap, scratch.pruned);
        write_selected(n, level, scratch.pruned);
        if (level == 0) note_unlinked(scratch.prune_pool, scratch.pruned, scratch.unlinked);
    }

    // Appends to `out` the pool's nodes that the selection left out.
    static void note_unlinked(const std::vector<Candidate>& pool, const std::vector<Candidate>& kept,
                              std::vector<std::uint32_t>& out) {
        for (const Candidate& c : pool)
            if (std::none_of(kept.begin(), kept.end(), [&](const Candidate& k) { return k.slot == c.slot; }))
                out.push_back(c.slot);
    }

    // Whether a node other than `besides` links to x at level 0. Only x's own neighbours are
    // asked (links are mostly mutual), so a false "no" is possible and costs one spare link.
    bool has_in_link(std::uint32_t x, std::uint32_t besides) const {
        std::uint32_t mine[2 * kMaxM], theirs[2 * kMaxM];
        const std::size_t n = read_links(x, 0, mine);
        for (std::size_t i = 0; i < n; ++i) {
            if (mine[i] == besides || state(mine[i]) == SlotState::kFree) continue;
            const std::size_t m = read_links(mine[i], 0, theirs);
            if (std::find(theirs, theirs + m, x) != theirs + m) return true;
        }
        return false;
    }

    // Links x from its nearest live neighbour that can take it: one with room, else one whose
    // farthest link that can go points at a node with another in-link. When none can, the
    // nearest neighbour's farthest link goes, and `displaced` names the node it pointed at, to
    // be checked in turn. False when x has no live neighbour to link from.
    bool link_to(std::uint32_t x, SearchScratch& scratch, std::uint32_t& displaced) {
        std::uint32_t near[2 * kMaxM], list[2 * kMaxM];
        const std::size_t n_near = read_links(x, 0, near);
        scratch.pool.clear();
        for (std::size_t i = 0; i < n_near; ++i)
            if (state(near[i]) == SlotState::kLive) scratch.pool.push_back({storage_.distance(x, near[i]), near[i]});
        std::sort(scratch.pool.begin(), scratch.pool.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
        for (const bool force : {false, true}) {
            for (const Candidate& c : scratch.pool) {
                const std::uint32_t n = c.slot;
                NodeLockGuard guard(meta(n).lock);
                std::uint32_t* l = links(n, 0);
                const std::size_t count = read_links(n, 0, list);
                if (count < M0_) {
                    std::atomic_ref<std::uint32_t>(l[1 + count]).store(x, std::memory_order_release);
                    std::atomic_ref<std::uint32_t>(l[0]).store(static_cast<std::uint32_t>(count + 1), std::memory_order_release);
                    return true;
                }
                std::size_t order[2 * kMaxM];  // positions in n's list, farthest target first
                std::iota(order, order + count, std::size_t{0});
                float dist[2 * kMaxM];
                for (std::size_t i = 0; i < count; ++i) dist[i] = storage_.distance(n, list[i]);
                std::sort(order, order + count, [&](std::size_t a, std::size_t b) { return dist[a] > dist[b]; });
                for (std::size_t k = 0; k < count; ++k) {
                    const std::uint32_t z = list[order[k]];
                    if (!force && !has_in_link(z, n)) continue;
                    std::atomic_ref<std::uint32_t>(l[1 + order[k]]).store(x, std::memory_order_release);
                    if (force) displaced = z;
                    return true;
                }
            }
        }
        return false;
    }

  public:
    static constexpr std::size_t kMaxM = 256;

  private:
    Storage storage_;
    std::size_t M_;
    std::size_t M0_;
    std::size_t ef_construction_;
    ChunkedArray meta_;
    ChunkedArray links0_;
    std::atomic<std::uint32_t> slot_count_{0};
    std::atomic<std::uint64_t> entry_{kNoEntry};  // (level << 32) | slot, one word so never torn
    std::mutex entry_mu_;                         // inserting threads raising the top level
    std::vector<std::uint32_t> free_;             // writer-owned
    mutable GracePeriod grace_;
};

}  // namespace recserve::ann

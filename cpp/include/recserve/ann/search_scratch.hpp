// Per-thread scratch for searches and inserts, pooled so the query path does not allocate
// (buffers grow only when the index or the request grows).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "recserve/ann/visited_set.hpp"

namespace recserve::ann {

class SearchFilter;  // index.hpp

struct Candidate {
    float dist;
    std::uint32_t slot;
};
struct CloserFirst {  // min-heap order for std::push_heap
    bool operator()(const Candidate& a, const Candidate& b) const { return a.dist > b.dist; }
};
struct FartherFirst {  // max-heap order
    bool operator()(const Candidate& a, const Candidate& b) const { return a.dist < b.dist; }
};

// Per-call set of external ids a search must not return (open addressing, linear probing).
class ExcludeSet {
  public:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};

    void assign(const std::uint64_t* ids, std::size_t n) {
        count_ = n;
        if (n == 0) return;
        std::size_t buckets = 16;
        while (buckets < 2 * n) buckets *= 2;
        table_.assign(buckets, kEmpty);
        for (std::size_t i = 0; i < n; ++i) {
            if (ids[i] == kEmpty) continue;  // never a valid id
            for (std::size_t j = hash(ids[i]);; j = (j + 1) & (table_.size() - 1)) {
                if (table_[j] == kEmpty || table_[j] == ids[i]) {
                    table_[j] = ids[i];
                    break;
                }
            }
        }
    }
    bool contains(std::uint64_t id) const {
        if (count_ == 0) return false;
        for (std::size_t j = hash(id);; j = (j + 1) & (table_.size() - 1)) {
            if (table_[j] == id) return true;
            if (table_[j] == kEmpty) return false;
        }
    }
    std::size_t count() const { return count_; }

  private:
    std::size_t hash(std::uint64_t id) const {
        return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ULL) >> 32) & (table_.size() - 1);
    }
    std::vector<std::uint64_t> table_;
    std::size_t count_ = 0;
};

struct SearchScratch {
    VisitedSet visited;
    std::vector<Candidate> frontier;  // min-heap: nodes still to expand
    std::vector<Candidate> results;   // max-heap: the best eligible nodes so far
    std::vector<Candidate> pool;      // heuristic selection and re-ranking
    std::vector<Candidate> selected;
    std::vector<Candidate> prune_pool;  // a neighbour's list being pruned
    std::vector<Candidate> pruned;
    std::vector<std::uint32_t> unlinked;  // nodes a prune dropped from a level-0 list
    std::vector<std::vector<Candidate>> per_level;  // an insert's chosen neighbours per level
    std::vector<std::uint32_t> links;  // one copied link list
    std::vector<float> query;         // prepared query (storage-specific bytes)
    std::vector<float> exact_query;   // float copy for re-ranking
    std::vector<float> encode_tmp;    // inserts: normalisation before quantising
    ExcludeSet exclude;
    const SearchFilter* filter = nullptr;  // this call's, or none
};

class ScratchPool {
  public:
    struct Lease {
        ScratchPool* pool;
        std::unique_ptr<SearchScratch> scratch;
        Lease(ScratchPool* p, std::unique_ptr<SearchScratch> s) : pool(p), scratch(std::move(s)) {}
        Lease(Lease&&) = default;
        Lease& operator=(Lease&&) = delete;
        Lease(const Lease&) = delete;
        ~Lease() {
            if (scratch) pool->give_back(std::move(scratch));
        }
        SearchScratch& operator*() { return *scratch; }
    };

    Lease take() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (!free_.empty()) {
                auto s = std::move(free_.back());
                free_.pop_back();
                return Lease(this, std::move(s));
            }
        }
        return Lease(this, std::make_unique<SearchScratch>());
    }
    std::size_t memory_bytes() const {
        std::lock_guard<std::mutex> lock(mu_);
        std::size_t bytes = 0;
        for (const auto& s : free_) bytes += s->visited.memory_bytes();
        return bytes;
    }

  private:
    void give_back(std::unique_ptr<SearchScratch> s) {
        std::lock_guard<std::mutex> lock(mu_);
        free_.push_back(std::move(s));
    }
    mutable std::mutex mu_;
    std::vector<std::unique_ptr<SearchScratch>> free_;
};

}  // namespace recserve::ann

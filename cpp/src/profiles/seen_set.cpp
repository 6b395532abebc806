#include "recserve/profiles/seen_set.hpp"

#include <algorithm>
#include <bit>

namespace recserve::profiles {
namespace {

constexpr int kProbes = 4;

std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace

Status validate(const SeenOptions& o) {
    if (o.recent == 0 || o.recent > (1u << 20)) return Status::invalid_argument("seen recent must be in 1..2^20");
    if (o.filter_bits < 64 || !std::has_single_bit(o.filter_bits) || o.filter_bits > (1u << 26))
        return Status::invalid_argument("seen filter_bits must be a power of two in 64..2^26");
    if (o.filter_items == 0) return Status::invalid_argument("seen filter_items must be >= 1");
    return Status::ok();
}

void SeenSet::add(std::uint64_t item, const SeenOptions& o) {
    // An item's events come together (impression, watch, like): checking the latest few
    // additions keeps the ring free of most repeats at the cost of one cache line, not a scan.
    constexpr std::size_t kRepeatWindow = 8;
    for (std::size_t i = 1; i <= std::min(kRepeatWindow, ring_.size()); ++i) {
        const std::size_t at = ring_.size() < o.recent ? ring_.size() - i : (head_ + o.recent - i) % o.recent;
        if (ring_[at] == item) return;
    }
    ++added_;
    if (ring_.size() < o.recent) {
        ring_.push_back(item);
        return;
    }
    filter_add(ring_[head_], o);  // the oldest exact item moves to the filter
    ring_[head_] = item;
    head_ = (head_ + 1) % o.recent;
}

bool SeenSet::contains_recent(std::uint64_t item) const {
    return std::find(ring_.begin(), ring_.end(), item) != ring_.end();
}

bool SeenSet::contains(std::uint64_t item) const { return filter_contains(item) || contains_recent(item); }

std::vector<std::uint64_t> SeenSet::recent() const {
    std::vector<std::uint64_t> out;
    out.reserve(ring_.size());
    // Newest first: the slot before head_ going back, wrapping (head_ is 0 until the ring is full).
    for (std::size_t i = 0; i < ring_.size(); ++i) out.push_back(ring_[(head_ + ring_.size() - 1 - i) % ring_.size()]);
    return out;
}

void SeenSet::filter_add(std::uint64_t item, const SeenOptions& o) {
    const std::size_t words = o.filter_bits / 64;
    if (filters_.empty()) filters_.assign(2 * words, 0);
    if (in_newer_ == o.filter_items) {  // the newer generation is full: retire the older
        newer_ ^= 1;
        std::fill_n(filters_.begin() + static_cast<std::ptrdiff_t>(newer_ * words), words, 0);
        in_newer_ = 0;
    }
    const std::uint64_t h = mix(item);
    const std::uint64_t step = (h >> 32) | 1;
    std::uint64_t* bits = filters_.data() + newer_ * words;
    for (int p = 0; p < kProbes; ++p) {
        const std::uint64_t bit = (h + static_cast<std::uint64_t>(p) * step) & (o.filter_bits - 1);
        bits[bit / 64] |= std::uint64_t{1} << (bit % 64);
    }
    ++in_newer_;
}

bool SeenSet::filter_contains(std::uint64_t item) const {
    if (filters_.empty()) return false;
    const std::size_t words = filters_.size() / 2;
    const std::uint64_t mask = words * 64 - 1;
    const std::uint64_t h = mix(item);
    const std::uint64_t step = (h >> 32) | 1;
    for (std::size_t g = 0; g < 2; ++g) {
        const std::uint64_t* bits = filters_.data() + g * words;
        bool all = true;
        for (int p = 0; p < kProbes && all; ++p) {
            const std::uint64_t bit = (h + static_cast<std::uint64_t>(p) * step) & mask;
            all = (bits[bit / 64] >> (bit % 64)) & 1;
        }
        if (all) return true;
    }
    return false;
}

void SeenSet::serialize(ByteWriter& w) const {
    w.put(static_cast<std::uint32_t>(ring_.size()));
    w.put(head_);
    w.put(newer_);
    w.put(in_newer_);
    w.put(added_);
    w.bytes(ring_.data(), ring_.size() * sizeof(std::uint64_t));
    w.put(static_cast<std::uint32_t>(filters_.size()));
    w.bytes(filters_.data(), filters_.size() * sizeof(std::uint64_t));
}

bool SeenSet::parse(ByteReader& r, const SeenOptions& o) {
    std::uint32_t ring_size = 0, filter_words = 0;
    if (!r.get(ring_size) || !r.get(head_) || !r.get(newer_) || !r.get(in_newer_) || !r.get(added_)) return false;
    if (ring_size > o.recent || head_ >= std::max<std::uint32_t>(ring_size, 1) || newer_ > 1 ||
        in_newer_ > o.filter_items || (head_ != 0 && ring_size != o.recent))
        return false;
    ring_.resize(ring_size);
    if (!r.bytes(ring_.data(), ring_size * sizeof(std::uint64_t)) || !r.get(filter_words)) return false;
    if (filter_words != 0 && filter_words != 2 * (o.filter_bits / 64)) return false;
    filters_.resize(filter_words);
    return r.bytes(filters_.data(), filter_words * sizeof(std::uint64_t));
}

}  // namespace recserve::profiles

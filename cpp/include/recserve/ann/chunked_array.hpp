// A growable array of fixed-size slots whose addresses never move.
//
// Memory is a directory of chunks of 2^kChunkBits slots each. Growing allocates new chunks
// and publishes them; readers index through the directory without locks, so a writer can grow
// the array while searches run. New chunks are zero-filled and 64-byte aligned.
//
//   directory_[c] ──▶ [ slot 0 | slot 1 | … | slot 2^kChunkBits-1 ]   (stride bytes each)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace recserve::ann {

class ChunkedArray {
  public:
    static constexpr unsigned kChunkBits = 14;  // 16,384 slots per chunk
    static constexpr std::size_t kMaxChunks = std::size_t{1} << 16;  // 2^30 slots in all

    explicit ChunkedArray(std::size_t stride)
        : stride_(stride), directory_(new std::atomic<char*>[kMaxChunks]) {
        for (std::size_t c = 0; c < kMaxChunks; ++c) directory_[c].store(nullptr, std::memory_order_relaxed);
    }
    ~ChunkedArray() {
        for (std::size_t c = 0; c < chunks_; ++c) std::free(directory_[c].load(std::memory_order_relaxed));
    }
    ChunkedArray(const ChunkedArray&) = delete;
    ChunkedArray& operator=(const ChunkedArray&) = delete;

    std::size_t stride() const { return stride_; }
    std::size_t capacity() const { return chunks_ << kChunkBits; }
    std::size_t allocated_bytes() const { return chunks_ * chunk_bytes(); }
    static constexpr std::size_t max_slots() { return kMaxChunks << kChunkBits; }

    // Writer only. Returns false when memory runs out or the slot limit is reached.
    bool reserve(std::size_t slots) {
        while (capacity() < slots) {
            if (chunks_ == kMaxChunks) return false;
            void* chunk = std::aligned_alloc(64, chunk_bytes());
            if (chunk == nullptr) return false;
            std::memset(chunk, 0, chunk_bytes());
            // release: the zero-fill happens-before any reader that finds this chunk.
            directory_[chunks_].store(static_cast<char*>(chunk), std::memory_order_release);
            ++chunks_;
        }
        return true;
    }

    char* at(std::uint32_t slot) const {
        // acquire: pairs with the release in reserve().
        char* chunk = directory_[slot >> kChunkBits].load(std::memory_order_acquire);
        return chunk + (slot & ((1u << kChunkBits) - 1)) * stride_;
    }

  private:
    std::size_t chunk_bytes() const {
        const std::size_t bytes = stride_ << kChunkBits;
        return (bytes + 63) & ~std::size_t{63};
    }

    std::size_t stride_;
    std::unique_ptr<std::atomic<char*>[]> directory_;
    std::size_t chunks_ = 0;  // writer-owned
};

}  // namespace recserve::ann

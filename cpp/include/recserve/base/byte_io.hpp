// Plain values and arrays to and from byte buffers, and whole files written durably: the
// pieces every checksummed file format of recserve (index, model, snapshot) is built from.
// All values are stored in the machine's byte order, which must be little-endian.
#pragma once

#include <bit>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "recserve/base/status.hpp"

namespace recserve {

static_assert(std::endian::native == std::endian::little, "recserve's file formats are little-endian");

// Appends plain values and arrays to a byte buffer.
class ByteWriter {
  public:
    template <class T>
    void put(const T& v) { bytes(&v, sizeof(T)); }
    void bytes(const void* p, std::size_t n) {
        const auto* c = static_cast<const char*>(p);
        buf_.insert(buf_.end(), c, c + n);
    }
    void reserve(std::size_t bytes) { buf_.reserve(bytes); }
    std::vector<char>& buffer() { return buf_; }

  private:
    std::vector<char> buf_;
};

// Reads plain values and arrays, failing (never overrunning) on a short buffer.
class ByteReader {
  public:
    ByteReader(const char* data, std::size_t size) : p_(data), end_(data + size) {}
    template <class T>
    bool get(T& v) { return bytes(&v, sizeof(T)); }
    bool bytes(void* out, std::size_t n) {
        if (static_cast<std::size_t>(end_ - p_) < n) return false;
        if (n == 0) return true;  // out may be an empty vector's null data(): memcpy(nullptr, ..., 0) is UB
        std::memcpy(out, p_, n);
        p_ += n;
        return true;
    }
    bool at_end() const { return p_ == end_; }
    std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }

  private:
    const char* p_;
    const char* end_;
};

// Writes the parts, in order, to path through a temporary file (path + ".tmp"), fsync and
// rename: a reader sees the old file or the whole new one, never a torn one.
Status write_file_atomically(const std::string& path, std::span<const std::span<const char>> parts);

// The whole file, or kNotFound / kIoError naming it.
Result<std::vector<char>> read_whole_file(const std::string& path);

}  // namespace recserve

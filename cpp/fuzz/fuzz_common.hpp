// Helpers shared by the libFuzzer harnesses of cpp/fuzz (not part of the core library).
//
//   with_valid_checksums  a copy of a file image whose header and body CRC-32C fields are
//                         recomputed, so the fuzzer's mutations reach the parser behind them
//   TempFile              the loaders take a path: each harness writes its input to one file
//                         (in /dev/shm where there is one) and loads it from there
//   Chunks                [u32 length][bytes] framing, for harnesses that take several byte
//                         strings (user images, record batches); make_corpus.cpp writes it
//   fuzz_file             the body of a file loader's harness: load the input as it is, then
//                         again with valid checksums
//   small_profiles        options small enough for fast runs (the user-state harness's as they
//                         are; the snapshot harness's start from them)
//   apply_more_events     events for a loaded user after their high-water mark, then every read
//   FUZZ_CHECK            an invariant the decoder's caller relies on: abort (a finding) if false
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "recserve/base/crc32c.hpp"
#include "recserve/profiles/profiles.hpp"

#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

namespace recserve::fuzz {

// Every recserve file format has a 64-byte header whose last 4 bytes are the CRC-32C of the
// 60 before them, and a body CRC-32C at body_crc_at covering the bytes after the header.
inline constexpr std::size_t kHeaderBytes = 64;
inline constexpr std::size_t kHeaderCrcAt = 60;

inline std::vector<char> with_valid_checksums(const std::uint8_t* data, std::size_t size, std::size_t body_crc_at) {
    std::vector<char> out(data, data + size);
    if (size < kHeaderBytes) return out;
    const std::uint32_t body_crc = crc32c(out.data() + kHeaderBytes, size - kHeaderBytes);
    std::memcpy(out.data() + body_crc_at, &body_crc, sizeof(body_crc));
    const std::uint32_t header_crc = crc32c(out.data(), kHeaderCrcAt);
    std::memcpy(out.data() + kHeaderCrcAt, &header_crc, sizeof(header_crc));
    return out;
}

class TempFile {
  public:
    explicit TempFile(const char* name) {
        const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
        path_ = std::string(dir) + "/recserve-fuzz-" + std::to_string(getpid()) + "-" + name;
    }
    ~TempFile() {
        std::remove(path_.c_str());
        std::remove((path_ + ".tmp").c_str());
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    const std::string& path() const { return path_; }
    void write(const void* data, std::size_t size) const {
        std::FILE* f = std::fopen(path_.c_str(), "wb");
        FUZZ_CHECK(f != nullptr);
        FUZZ_CHECK(size == 0 || std::fwrite(data, 1, size, f) == size);
        FUZZ_CHECK(std::fclose(f) == 0);
    }
    std::vector<char> read() const {
        std::vector<char> out;
        std::FILE* f = std::fopen(path_.c_str(), "rb");
        FUZZ_CHECK(f != nullptr);
        char buf[1 << 14];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.insert(out.end(), buf, buf + n);
        std::fclose(f);
        return out;
    }

  private:
    std::string path_;
};

// [u32 little-endian length][that many bytes], repeated; a length past the end takes the rest.
class Chunks {
  public:
    Chunks(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
    bool next(std::string_view& out) {
        if (end_ - p_ < 4) return false;
        std::uint32_t n;
        std::memcpy(&n, p_, sizeof n);
        p_ += 4;
        const std::size_t take = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
        out = std::string_view(reinterpret_cast<const char*>(p_), take);
        p_ += take;
        return true;
    }

  private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
};

inline recserve::profiles::ProfilesOptions small_profiles() {
    recserve::profiles::ProfilesOptions o;
    o.dims = 4;
    o.user_capacity = o.item_capacity = 64;
    o.shards = 4;
    o.seen = {8, 64, 4};
    o.event_key_window = 8;
    return o;
}

// Applies n events of `user` after their high-water mark (item_of(i) for event i, event keys
// from key_base, ts i * ts_step), then reads the user back as a feed does: seen-set, recent
// items, vectors. Nothing when the mark is 2^64-1, after which no event can follow.
template <class ItemOf>
void apply_more_events(recserve::profiles::Profiles& p, std::uint64_t user, std::size_t n, std::uint64_t key_base,
                       std::int64_t ts_step, std::uint32_t watch_ms, ItemOf item_of) {
    namespace pr = recserve::profiles;
    std::uint64_t words[pr::kUserWords];
    bool found = false;
    p.user_words(&user, 1, words, &found);
    const std::uint64_t first_seq = (found ? words[pr::kHighWaterSeq] : 0) + 1;
    if (first_seq == 0) return;
    std::vector<std::uint64_t> users(n, user), items(n), seq(n), keys(n);
    std::vector<std::uint8_t> types(n);
    std::vector<std::uint32_t> watch(n, watch_ms), duration(n, 10000);
    std::vector<std::int64_t> ts(n);
    for (std::size_t i = 0; i < n; ++i) {
        items[i] = item_of(i);
        seq[i] = first_seq + i < first_seq ? first_seq : first_seq + i;  // never wraps past 2^64-1
        keys[i] = key_base + i;
        types[i] = static_cast<std::uint8_t>(i % pr::kEventTypes);
        ts[i] = static_cast<std::int64_t>(i) * ts_step;
    }
    const pr::EventBatch batch{n,           users.data(), items.data(), types.data(), watch.data(),
                               duration.data(), ts.data(),  seq.data(),   keys.data()};
    FUZZ_CHECK(p.apply(batch).is_ok());
    const std::unique_ptr<bool[]> seen(new bool[n]);
    p.seen(user, items.data(), n, seen.get());
    (void)p.recent_items(user);
    std::vector<float> long_term(p.options().dims), session(p.options().dims);
    p.user_vectors(&user, 1, ts_step * static_cast<std::int64_t>(n) * 2, long_term.data(), session.data(), &found);
}

// Writes the input to `file` and calls load(path, bytes); then, if recomputing the checksums
// at body_crc_at changes it, once more with them valid.
template <class Load>
int fuzz_file(const TempFile& file, const std::uint8_t* data, std::size_t size, std::size_t body_crc_at, Load load) {
    file.write(data, size);
    const std::vector<char> raw(data, data + size);
    load(file.path(), raw);
    const std::vector<char> fixed = with_valid_checksums(data, size, body_crc_at);
    if (fixed != raw) {
        file.write(fixed.data(), fixed.size());
        load(file.path(), fixed);
    }
    return 0;
}

}  // namespace recserve::fuzz

// Fuzzes the profiles snapshot file (profiles/snapshot.cpp, Profiles::load). The options a
// snapshot must match (dims, seen-set sizes, event key window) are taken from the input's own
// header where they are small and valid, so mutations of them reach the body parser too. Each
// input is loaded as it is, then, if its checksums were wrong, with both CRC-32C fields
// recomputed. A snapshot that loads must then work: it snapshots again to a file that loads,
// and its first user takes events (seen-set ring and filter, event key window) and reads.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_common.hpp"
#include "recserve/profiles/profiles.hpp"

namespace {

using recserve::profiles::Profiles;
using recserve::profiles::ProfilesOptions;

// snapshot.cpp's header layout.
constexpr std::size_t kDimsAt = 12, kBodyCrcAt = 32, kSeenRecentAt = 36, kFilterBitsAt = 40, kFilterItemsAt = 44,
                      kKeyWindowAt = 48;
constexpr std::size_t kFirstUserKeyAt = 64 + 4 * 8 + 8;  // after the counters and the user count

std::uint32_t u32_at(const std::vector<char>& b, std::size_t at) {
    std::uint32_t v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}

ProfilesOptions options_for(const std::vector<char>& bytes) {
    ProfilesOptions o = recserve::fuzz::small_profiles();
    if (bytes.size() < recserve::fuzz::kHeaderBytes) return o;
    const std::uint32_t dims = u32_at(bytes, kDimsAt), recent = u32_at(bytes, kSeenRecentAt),
                        bits = u32_at(bytes, kFilterBitsAt), items = u32_at(bytes, kFilterItemsAt),
                        window = u32_at(bytes, kKeyWindowAt);
    if (dims >= 1 && dims <= 64) o.dims = dims;
    if (recent >= 1 && recent <= 256) o.seen.recent = recent;
    if (bits >= 64 && bits <= 4096 && (bits & (bits - 1)) == 0) o.seen.filter_bits = bits;
    if (items >= 1 && items <= 1024) o.seen.filter_items = items;
    if (window >= 1 && window <= 256) o.event_key_window = window;
    return o;
}

void exercise(Profiles& p, const std::vector<char>& bytes) {
    // It snapshots to a file that loads.
    static const recserve::fuzz::TempFile resaved("snapshot-resaved");
    const std::vector<char> again = p.snapshot(7);
    resaved.write(again.data(), again.size());
    std::uint64_t lsn = 0;
    auto reloaded = Profiles::load(resaved.path(), p.options(), &lsn);
    FUZZ_CHECK(reloaded.is_ok());
    FUZZ_CHECK(lsn == 7);
    FUZZ_CHECK(reloaded.value()->snapshot(7).size() == again.size());

    // The first stored user (if any) takes more events than its ring and key window hold.
    std::uint64_t user = 1;
    if (bytes.size() >= kFirstUserKeyAt + 8) std::memcpy(&user, bytes.data() + kFirstUserKeyAt, sizeof user);
    if (user == recserve::embed::kInvalidKey) user = 1;
    const float item_vector[64] = {1.0f};
    const std::uint64_t item = 3;
    FUZZ_CHECK(p.set_items(&item, item_vector, 1).is_ok() || p.stats().items >= p.options().item_capacity);
    recserve::fuzz::apply_more_events(p, user, 24, 0xABC0, 1000, 1000,
                                      [](std::size_t i) { return i % 5 == 0 ? 3 : 100 + i; });
    (void)p.stats();
}

void load(const std::string& path, const std::vector<char>& bytes) {
    std::uint64_t lsn = 0;
    auto p = Profiles::load(path, options_for(bytes), &lsn);
    if (p.is_ok()) exercise(*p.value(), bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const recserve::fuzz::TempFile file("snapshot");
    return recserve::fuzz::fuzz_file(file, data, size, kBodyCrcAt, load);
}

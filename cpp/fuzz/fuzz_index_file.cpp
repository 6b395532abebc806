// Fuzzes the ANN index file: read_index_file (index_file.hpp) and the body parser behind
// Index::load (index.cpp). Each input is loaded as it is (magic, version, sizes, checksums),
// then, if its checksums were wrong, again with both CRC-32C fields recomputed so mutations
// reach the body parser. An index that loads must then work: search, add, remove, compact,
// and save a file that loads again.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "fuzz_common.hpp"
#include "recserve/ann/index.hpp"
#include "recserve/ann/index_file.hpp"

namespace {

using recserve::ann::Index;
using recserve::ann::IndexFileHeader;

void exercise(Index& index) {
    const std::size_t dims = index.options().dims;
    std::vector<float> query(dims);
    for (std::size_t d = 0; d < dims; ++d) query[d] = static_cast<float>(d % 7) - 3.0f;
    std::uint64_t ids[4];
    float dist[4];
    recserve::ann::SearchParams params;
    params.ef = 8;
    FUZZ_CHECK(index.search(query.data(), 1, 4, params, ids, dist).is_ok());
    (void)index.stats();

    // Slots come in chunks of 16,384 (ann/chunked_array.hpp): the first add to an empty index
    // of 65,536 dims allocates 4 GiB, as it would after Index::create. A load has allocated the
    // chunk already when the file has slots; an empty index takes an add only at small dims.
    const std::uint64_t fresh = 0x5EED5EED5EEDull;
    std::vector<std::uint64_t> missing;
    if (index.stats().slots > 0 || dims <= 1024) {
        FUZZ_CHECK(index.add(&fresh, query.data(), 1, 1).is_ok());
        FUZZ_CHECK(index.contains(fresh));
        FUZZ_CHECK(index.search(query.data(), 1, 4, params, ids, dist).is_ok());
        FUZZ_CHECK(index.remove(&fresh, 1, &missing) == 1);
    }
    if (ids[0] != recserve::ann::kMissingId && ids[0] != fresh) (void)index.remove(&ids[0], 1, &missing);
    (void)index.compact();
    FUZZ_CHECK(index.search(query.data(), 1, 4, params, ids, dist).is_ok());

    // What it saves, it loads.
    recserve::fuzz::TempFile saved("index-resaved");
    FUZZ_CHECK(index.save(saved.path()).is_ok());
    auto again = Index::load(saved.path(), 0.0);
    if (!again.is_ok()) std::fprintf(stderr, "reloading the saved index: %s\n", again.status().message().c_str());
    FUZZ_CHECK(again.is_ok());
}

void load(const std::string& path, const std::vector<char>& bytes) {
    // A positive compact_threshold starts a background compactor thread per index: keep runs
    // deterministic by turning it off, except where the file's value is itself what is tested.
    std::optional<double> threshold;
    if (bytes.size() >= sizeof(IndexFileHeader)) {
        double saved;
        std::memcpy(&saved, bytes.data() + offsetof(IndexFileHeader, compact_threshold), sizeof saved);
        if (saved > 0.0) threshold = 0.0;
    }
    auto index = Index::load(path, threshold);
    if (index.is_ok()) exercise(*index.value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const recserve::fuzz::TempFile file("index");
    return recserve::fuzz::fuzz_file(file, data, size, offsetof(IndexFileHeader, body_crc), load);
}

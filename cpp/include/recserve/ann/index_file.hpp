// The index file format: a fixed 64-byte header, then the body, both checksummed.
//
//   offset  size  field
//        0     8  magic "RSVANNIX"
//        8     4  format version (1)
//       12     4  dims
//       16     1  metric   17  1 dtype   18  1 rerank   19  1 reserved (0)
//       20     4  M
//       24     4  ef_construction
//       28     4  slots
//       32     8  seed
//       40     8  body bytes
//       48     4  CRC-32C of the body
//       52     8  compact_threshold (float64, unaligned: read with memcpy)
//       60     4  CRC-32C of bytes 0..59
// All integers little-endian. The body (see index.cpp) is columns over slots: labels, levels,
// states, level-0 links, upper links, vector payloads, then the entry point and free list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "recserve/base/byte_io.hpp"
#include "recserve/base/status.hpp"

namespace recserve::ann {

inline constexpr char kIndexMagic[8] = {'R', 'S', 'V', 'A', 'N', 'N', 'I', 'X'};
inline constexpr std::uint32_t kIndexFormatVersion = 1;

struct IndexFileHeader {
    char magic[8];
    std::uint32_t version;
    std::uint32_t dims;
    std::uint8_t metric;
    std::uint8_t dtype;
    std::uint8_t rerank;
    std::uint8_t reserved0;
    std::uint32_t M;
    std::uint32_t ef_construction;
    std::uint32_t slots;
    std::uint64_t seed;
    std::uint64_t body_bytes;
    std::uint32_t body_crc;
    std::uint8_t compact_threshold[8];
    std::uint32_t header_crc;
};
static_assert(sizeof(IndexFileHeader) == 64, "the header is 64 bytes on disk");
static_assert(offsetof(IndexFileHeader, seed) == 32 && offsetof(IndexFileHeader, header_crc) == 60,
              "header field offsets are part of the file format");

// Writes header + body to path through a temporary file, fsync and rename.
Status write_index_file(const std::string& path, IndexFileHeader header, const std::vector<char>& body);

// Reads and verifies magic, version and both checksums; the body is returned only if intact.
Status read_index_file(const std::string& path, IndexFileHeader* header, std::vector<char>* body);

}  // namespace recserve::ann

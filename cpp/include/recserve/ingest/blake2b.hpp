// BLAKE2b (RFC 7693), unkeyed, digests of 1 to 64 bytes: the hash behind the 64-bit keys of the
// API's string ids (python/recserve/ids.py), so the core can key a decoded event itself.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve::ingest {

inline constexpr std::size_t kBlake2bMaxDigest = 64;

// Writes the `digest_size`-byte (1..64) BLAKE2b digest of `size` bytes to `out`; equals
// hashlib.blake2b(data, digest_size=digest_size).digest().
void blake2b(const void* data, std::size_t size, std::size_t digest_size, std::uint8_t* out);

// The 8-byte digest read as a little-endian uint64 (one compression per 128 bytes, no copy).
std::uint64_t blake2b_u64(const void* data, std::size_t size);

// The key of an id: its UTF-8 bytes' 8-byte BLAKE2b, with 2^64-1 (reserved by the tables)
// moved to 2^64-2; equals recserve.ids.key_of.
inline constexpr std::uint64_t kReservedKey = ~std::uint64_t{0};
inline std::uint64_t id_key(const void* utf8, std::size_t size) {
    const std::uint64_t key = blake2b_u64(utf8, size);
    return key == kReservedKey ? key - 1 : key;
}

}  // namespace recserve::ingest

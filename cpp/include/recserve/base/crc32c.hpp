// CRC-32C (Castagnoli), the checksum of every recserve file format and WAL record.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve {

// Extends `crc` (0 to start) over `size` bytes; crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace recserve

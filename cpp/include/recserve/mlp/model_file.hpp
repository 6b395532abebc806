// The ranker's model file (.rsm): a fixed 64-byte header, then the body, both checksummed.
//
//   offset  size  field
//        0     8  magic "RSRANKER"
//        8     4  format version (1)
//       12     4  weight type (0 float32, 1 int8)
//       16     4  layers
//       20     4  inputs
//       24     4  heads
//       28     4  reserved (0)
//       32     8  body bytes
//       40     4  CRC-32C of the body
//       44    16  reserved (0)
//       60     4  CRC-32C of bytes 0..59
// Body, little-endian:
//   u64 metadata bytes, metadata (UTF-8 JSON: feature spec, blend weights, training record)
//   per head: u8 activation, u16 name bytes, name
//   u32 input_scale count (0 or inputs), f32[count]
//   per layer: u32 out, u32 in, f32 bias[out], then
//              float32: f32 weight[out*in]          int8: f32 scale[out], i8 weight[out*in]
// A file that fails any check is reported as kCorrupt, never half-loaded.
#pragma once

#include <string>

#include "recserve/base/status.hpp"
#include "recserve/mlp/model.hpp"

namespace recserve::mlp {

inline constexpr char kModelMagic[8] = {'R', 'S', 'R', 'A', 'N', 'K', 'E', 'R'};
inline constexpr std::uint32_t kModelFormatVersion = 1;

// Validates, then writes through a temporary file, fsync and rename.
Status save_model(const std::string& path, const Model& model);

// Reads, verifies both checksums and every structural rule of validate().
Result<Model> load_model(const std::string& path);

}  // namespace recserve::mlp

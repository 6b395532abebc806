#include "recserve/ann/index_file.hpp"

#include <fstream>
#include <span>

#include "recserve/base/crc32c.hpp"

namespace recserve::ann {

Status write_index_file(const std::string& path, IndexFileHeader header, const std::vector<char>& body) {
    std::memcpy(header.magic, kIndexMagic, sizeof(kIndexMagic));
    header.version = kIndexFormatVersion;
    header.body_bytes = body.size();
    header.body_crc = crc32c(body.data(), body.size());
    header.header_crc = crc32c(&header, offsetof(IndexFileHeader, header_crc));

    const std::span<const char> parts[] = {
        {reinterpret_cast<const char*>(&header), sizeof(header)},
        {body.data(), body.size()},
    };
    return write_file_atomically(path, parts);
}

Status read_index_file(const std::string& path, IndexFileHeader* header, std::vector<char>* body) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::not_found("cannot open index file '" + path + "'");
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::size_t>(in.tellg());
    in.seekg(0);
    const std::string where = "index file '" + path + "'";
    if (size < sizeof(IndexFileHeader))
        return Status::corrupt(where + " is truncated: " + std::to_string(size) + " bytes, less than its header");
    in.read(reinterpret_cast<char*>(header), sizeof(IndexFileHeader));
    if (std::memcmp(header->magic, kIndexMagic, sizeof(kIndexMagic)) != 0)
        return Status::corrupt(where + " is not a recserve index (bad magic)");
    if (crc32c(header, offsetof(IndexFileHeader, header_crc)) != header->header_crc)
        return Status::corrupt(where + " has a corrupt header (checksum mismatch)");
    if (header->version != kIndexFormatVersion)
        return Status::corrupt(where + " has format version " + std::to_string(header->version) +
                               "; this build reads version " + std::to_string(kIndexFormatVersion));
    if (header->body_bytes != size - sizeof(IndexFileHeader))
        return Status::corrupt(where + " is truncated or padded: body is " +
                               std::to_string(size - sizeof(IndexFileHeader)) + " bytes, header says " +
                               std::to_string(header->body_bytes));
    body->resize(header->body_bytes);
    in.read(body->data(), static_cast<std::streamsize>(body->size()));
    if (!in) return Status::io_error("cannot read " + where);
    if (crc32c(body->data(), body->size()) != header->body_crc)
        return Status::corrupt(where + " is corrupt (body checksum mismatch)");
    return Status::ok();
}

}  // namespace recserve::ann

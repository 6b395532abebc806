#include "recserve/ann/index_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

#include "recserve/base/crc32c.hpp"

namespace recserve::ann {
namespace {

std::string errno_text() { return std::strerror(errno); }

Status write_all(int fd, const char* p, std::size_t n, const std::string& path) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return Status::io_error("cannot write '" + path + "': " + errno_text());
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return Status::ok();
}

}  // namespace

Status write_index_file(const std::string& path, IndexFileHeader header, const std::vector<char>& body) {
    std::memcpy(header.magic, kIndexMagic, sizeof(kIndexMagic));
    header.version = kIndexFormatVersion;
    header.body_bytes = body.size();
    header.body_crc = crc32c(body.data(), body.size());
    header.header_crc = crc32c(&header, offsetof(IndexFileHeader, header_crc));

    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::io_error("cannot create '" + tmp + "': " + errno_text());
    Status st = write_all(fd, reinterpret_cast<const char*>(&header), sizeof(header), tmp);
    if (st.is_ok()) st = write_all(fd, body.data(), body.size(), tmp);
    if (st.is_ok() && ::fsync(fd) != 0) st = Status::io_error("cannot fsync '" + tmp + "': " + errno_text());
    ::close(fd);
    if (st.is_ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
        st = Status::io_error("cannot rename '" + tmp + "' to '" + path + "': " + errno_text());
    if (!st.is_ok()) std::remove(tmp.c_str());
    return st;
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

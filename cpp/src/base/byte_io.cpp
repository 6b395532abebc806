#include "recserve/base/byte_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

namespace recserve {
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

Status write_file_atomically(const std::string& path, std::span<const std::span<const char>> parts) {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::io_error("cannot create '" + tmp + "': " + errno_text());
    Status st = Status::ok();
    for (const std::span<const char>& part : parts) {
        if (st.is_ok()) st = write_all(fd, part.data(), part.size(), tmp);
    }
    if (st.is_ok() && ::fsync(fd) != 0) st = Status::io_error("cannot fsync '" + tmp + "': " + errno_text());
    ::close(fd);
    if (st.is_ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
        st = Status::io_error("cannot rename '" + tmp + "' to '" + path + "': " + errno_text());
    if (!st.is_ok()) std::remove(tmp.c_str());
    return st;
}

Result<std::vector<char>> read_whole_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::not_found("cannot open '" + path + "'");
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::size_t>(in.tellg());
    in.seekg(0);
    std::vector<char> bytes(size);
    in.read(bytes.data(), static_cast<std::streamsize>(size));
    if (!in) return Status::io_error("cannot read '" + path + "'");
    return bytes;
}

}  // namespace recserve

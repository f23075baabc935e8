#include "superd/builtin_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include <cerrno>
#include <cstring>

namespace superd {

Result<ServedFile> open_served_file(const std::string& path)
{
    // O_NONBLOCK: a FIFO put in the file's place must not block the loop in
    // open(), waiting for a writer. It changes nothing for a regular file.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd)
        return Error{"open " + path + ": " + std::strerror(errno)};
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
        return Error{"stat " + path + ": " + std::strerror(errno)};
    if (!S_ISREG(st.st_mode))
        return Error{path + " is not a regular file"};
    return ServedFile{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

void file_start(BuiltinStream& s, const ServiceConfig& config)
{
    s.closing = true; // the whole file, then the FIN
    auto file = open_served_file(config.file_path);
    if (!file) {
        s.failure = file.error();
        return;
    }
    s.file = std::move(file->fd);
    s.file_size = file->size;
    if (s.file_size == 0)
        return;
    // Without mmap, so that a file truncated under a transfer can never
    // fault superd (SIGBUS), and without locks: the loop is one thread. The
    // stream owns the fd (no close-on-free); the output holds its own
    // reference to the segment.
    evbuffer_file_segment* segment = evbuffer_file_segment_new(s.file.get(), 0, static_cast<ev_off_t>(s.file_size),
                                                               EVBUF_FS_DISABLE_MMAP | EVBUF_FS_DISABLE_LOCKING);
    if (!segment) {
        s.failure = "cannot queue " + config.file_path;
        return;
    }
    if (evbuffer_add_file_segment(s.output(), segment, 0, static_cast<ev_off_t>(s.file_size)) != 0)
        s.failure = "cannot queue " + config.file_path;
    evbuffer_file_segment_free(segment);
}

std::optional<std::string> file_write_stalled(BuiltinStream& s)
{
    struct stat st;
    if (::fstat(s.file.get(), &st) != 0)
        return std::string("stat: ") + std::strerror(errno);
    if (static_cast<uint64_t>(st.st_size) >= s.file_size)
        return std::nullopt; // the socket's EAGAIN: go on
    uint64_t sent = s.file_size - evbuffer_get_length(s.output());
    return "file shrank while sending (" + std::to_string(sent) + " of " + std::to_string(s.file_size) + " bytes sent)";
}

std::optional<std::string> file_datagram(const ServiceConfig& config, std::string_view, std::mt19937&)
{
    auto file = open_served_file(config.file_path);
    if (!file)
        return std::nullopt;
    std::string head(std::min<uint64_t>(file->size, kMaxDatagram), '\0');
    ssize_t n = ::pread(file->fd.get(), head.data(), head.size(), 0);
    if (n <= 0)
        return std::nullopt;
    head.resize(static_cast<size_t>(n));
    return head;
}

} // namespace superd

// The file builtin: a file sent whole to each client, as publicfile and
// the motd and quote-of-the-day services do, with no process per
// connection and no byte of it copied through superd.
//
//     [service.motd]
//     listen  = ["127.0.0.1:7017"]
//     builtin = "file"
//     path    = "/etc/motd"
//
// The file is opened anew for each connection, so a file replaced (by
// rename) is served from the next connection on, while a transfer under
// way keeps the file it opened. Over TCP the open file goes into the
// bufferevent's output as a file segment, which libevent sends with
// sendfile(2): the kernel copies from the page cache to the socket as fast
// as the client reads, superd holds none of it, and a slow client costs
// superd nothing but the connection. Then the connection closes with a FIN.
// A file that shrinks meanwhile ends its transfers with a failure logged;
// one that is gone or has become something else (a folder, a FIFO, which
// could block the loop) fails the connection at once.
//
// Over UDP a datagram gets the file's first kMaxDatagram bytes (as RFC 865's
// quote of the day), and only with allow_amplification.
#pragma once

#include "superd/builtin_kind.h"

#include <cstddef>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace superd {

inline constexpr size_t kMaxDatagram = 512;

// An open file that may be served: a regular file opened for reading,
// without blocking, and its size.
struct ServedFile {
    UniqueFd fd;
    uint64_t size = 0;
};
// Opens `path` for serving; the reason otherwise ("open PATH: ...",
// "PATH is not a regular file").
Result<ServedFile> open_served_file(const std::string& path);

void file_start(BuiltinStream& s, const ServiceConfig& config);
std::optional<std::string> file_write_stalled(BuiltinStream& s);
std::optional<std::string> file_datagram(const ServiceConfig& config, std::string_view, std::mt19937&);

} // namespace superd

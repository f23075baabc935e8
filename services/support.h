// What the inetd-style services share: finding their client and writing
// reliably to a socket that is also their stdout.
//
// A service's stderr is the client's socket too, so diagnostics go to syslog,
// never to fd 2.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>

namespace service {

struct Peer {
    std::string ip; // numeric; IPv4-mapped IPv6 shown as plain IPv4
    unsigned port = 0;
};

// The client connected on `fd`, as getpeername() sees it.
std::optional<Peer> peer_of(int fd);

// read(), retried on EINTR: >0 bytes read, 0 at EOF, -1 on error.
ssize_t read_some(int fd, void* buffer, size_t size);

// Writes all of `data`, retrying short writes and EINTR; false on error.
bool write_all(int fd, const void* data, size_t size);

// Opens syslog as `name` and logs which client fd 0 is connected to.
void log_client(const char* name);

} // namespace service

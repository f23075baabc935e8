// What the measuring tools share: a port argument, a raised fd limit, and
// a listening socket on 127.0.0.1. Header-only: each tool is one file.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>

namespace bench {

// "7007" -> 7007; nothing for anything that is not a port 1-65535.
inline std::optional<uint16_t> parse_port(std::string_view text)
{
    int port = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc{} || end != text.data() + text.size() || port < 1 || port > 65535)
        return std::nullopt;
    return static_cast<uint16_t>(port);
}

// Thousands of sockets (clients, held connections) need more than the
// default soft limit of 1024: take the hard one.
inline void raise_nofile()
{
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

// A TCP socket listening on 127.0.0.1:port; `flags` go to socket() (e.g.
// SOCK_NONBLOCK). On failure says why, prefixed with `tool`, and returns -1.
inline int listen_loopback(uint16_t port, int flags, const char* tool)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) {
        std::fprintf(stderr, "%s: ", tool);
        std::perror("socket");
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0 || ::listen(fd, SOMAXCONN) < 0) {
        std::fprintf(stderr, "%s: ", tool);
        std::perror("bind/listen");
        return -1;
    }
    return fd;
}

} // namespace bench

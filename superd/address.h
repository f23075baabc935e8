// Socket addresses: parsing the config's listen syntax and printing peers.
//
// A listen address is written "ADDR:PORT" (IPv4), "[V6ADDR]:PORT", "PORT"
// alone, which means every address of both families and so yields two socket
// addresses (0.0.0.0 and ::), or "unix:PATH" for a unix socket. Hosts are numeric: a name resolved once at load
// time would silently go stale, so names are refused.
//
// Printing is allocation-free (HostText/PortText buffers) because it runs for
// every connection; IPv4-mapped IPv6 addresses print as plain IPv4.
#pragma once

#include "superd/result.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

// The kind of socket a service listens on; unix is a unix stream socket.
enum class Protocol { kTcp, kUdp, kUnix };

inline const char* to_string(Protocol protocol)
{
    switch (protocol) {
    case Protocol::kTcp:
        return "tcp";
    case Protocol::kUdp:
        return "udp";
    case Protocol::kUnix:
        return "unix";
    }
    return "?";
}

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    static SocketAddress any_ipv4(uint16_t port);
    static SocketAddress any_ipv6(uint16_t port);
    static SocketAddress unix_path(std::string_view path); // truncated to fit

    // The path of a unix socket address; empty for other families.
    std::string_view path() const;

    int family() const { return storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
    uint16_t port() const;
    bool is_wildcard() const;

    // "127.0.0.1:7007", "[::1]:7007" or "unix:/run/x.sock".
    std::string to_string() const;

    friend bool operator==(const SocketAddress& a, const SocketAddress& b);
};

// Numeric host and port as NUL-terminated text, with no allocation.
using HostText = std::array<char, 64>;
using PortText = std::array<char, 8>;
void format_host(const SocketAddress& address, HostText& out);
void format_port(const SocketAddress& address, PortText& out);

// Parses one listen address; the error says what is wrong with `text`.
Result<std::vector<SocketAddress>> parse_listen_address(std::string_view text);

} // namespace superd

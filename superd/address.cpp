#include "superd/address.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace superd {

namespace {

const sockaddr_in& as_ipv4(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in&>(a.storage); }
const sockaddr_in6& as_ipv6(const SocketAddress& a) { return reinterpret_cast<const sockaddr_in6&>(a.storage); }
sockaddr_in& as_ipv4(SocketAddress& a) { return reinterpret_cast<sockaddr_in&>(a.storage); }
sockaddr_in6& as_ipv6(SocketAddress& a) { return reinterpret_cast<sockaddr_in6&>(a.storage); }

Result<uint16_t> parse_port(std::string_view text)
{
    if (text.empty())
        return Error{"missing port"};
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text[0] == '+')
        return Error{"port '" + std::string(text) + "' is not a number"};
    if (value == 0 || value > 65535)
        return Error{"port " + std::string(text) + " is out of range (1-65535)"};
    return static_cast<uint16_t>(value);
}

Result<std::vector<SocketAddress>> parse_ipv4(std::string_view host, uint16_t port)
{
    SocketAddress a = SocketAddress::any_ipv4(port);
    std::string h(host);
    if (inet_pton(AF_INET, h.c_str(), &as_ipv4(a).sin_addr) != 1)
        return Error{"'" + h
                     + "' is not a numeric IPv4 address (host names are not resolved; "
                       "write e.g. 127.0.0.1, or [::1] for IPv6)"};
    return std::vector<SocketAddress>{a};
}

Result<std::vector<SocketAddress>> parse_ipv6(std::string_view host, uint16_t port)
{
    SocketAddress a = SocketAddress::any_ipv6(port);
    std::string h(host);
    const in6_addr& addr = as_ipv6(a).sin6_addr;
    if (inet_pton(AF_INET6, h.c_str(), &as_ipv6(a).sin6_addr) != 1)
        return Error{"'" + h + "' is not a numeric IPv6 address"};
    // IPv6 sockets are v6-only, so these could never be bound.
    if (IN6_IS_ADDR_V4MAPPED(&addr))
        return Error{"'" + h + "' is an IPv4-mapped address; write the IPv4 address itself"};
    if (IN6_IS_ADDR_LINKLOCAL(&addr))
        return Error{"'" + h + "' is link-local and needs an interface, which superd does not take yet"};
    return std::vector<SocketAddress>{a};
}

const sockaddr_un& as_unix(const SocketAddress& a) { return reinterpret_cast<const sockaddr_un&>(a.storage); }

bool is_v4_mapped(const SocketAddress& a)
{
    return a.family() == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&as_ipv6(a).sin6_addr);
}

} // namespace

SocketAddress SocketAddress::any_ipv4(uint16_t port)
{
    SocketAddress a;
    sockaddr_in& sin = as_ipv4(a);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    a.length = sizeof sin;
    return a;
}

SocketAddress SocketAddress::any_ipv6(uint16_t port)
{
    SocketAddress a;
    sockaddr_in6& sin6 = as_ipv6(a);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    sin6.sin6_addr = in6addr_any;
    a.length = sizeof sin6;
    return a;
}

SocketAddress SocketAddress::unix_path(std::string_view path)
{
    SocketAddress a;
    auto& sun = reinterpret_cast<sockaddr_un&>(a.storage);
    sun.sun_family = AF_UNIX;
    size_t n = std::min(path.size(), sizeof sun.sun_path - 1);
    std::memcpy(sun.sun_path, path.data(), n);
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
    return a;
}

std::string_view SocketAddress::path() const
{
    if (family() != AF_UNIX || length <= offsetof(sockaddr_un, sun_path))
        return {};
    const sockaddr_un& sun = as_unix(*this);
    return std::string_view(sun.sun_path, strnlen(sun.sun_path, length - offsetof(sockaddr_un, sun_path)));
}

uint16_t SocketAddress::port() const
{
    switch (family()) {
    case AF_INET:
        return ntohs(as_ipv4(*this).sin_port);
    case AF_INET6:
        return ntohs(as_ipv6(*this).sin6_port);
    default:
        return 0;
    }
}

bool SocketAddress::is_wildcard() const
{
    switch (family()) {
    case AF_INET:
        return as_ipv4(*this).sin_addr.s_addr == htonl(INADDR_ANY);
    case AF_INET6:
        return IN6_IS_ADDR_UNSPECIFIED(&as_ipv6(*this).sin6_addr);
    default:
        return false;
    }
}

bool operator==(const SocketAddress& a, const SocketAddress& b)
{
    if (a.family() != b.family() || a.port() != b.port())
        return false;
    switch (a.family()) {
    case AF_INET:
        return as_ipv4(a).sin_addr.s_addr == as_ipv4(b).sin_addr.s_addr;
    case AF_INET6:
        return std::memcmp(&as_ipv6(a).sin6_addr, &as_ipv6(b).sin6_addr, sizeof(in6_addr)) == 0;
    case AF_UNIX:
        return a.path() == b.path();
    default:
        return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
    }
}

void format_host(const SocketAddress& address, HostText& out)
{
    const char* ok = nullptr;
    if (address.family() == AF_INET) {
        ok = inet_ntop(AF_INET, &as_ipv4(address).sin_addr, out.data(), out.size());
    } else if (is_v4_mapped(address)) {
        // The last four bytes of ::ffff:a.b.c.d are the IPv4 address.
        ok = inet_ntop(AF_INET, &as_ipv6(address).sin6_addr.s6_addr[12], out.data(), out.size());
    } else if (address.family() == AF_INET6) {
        ok = inet_ntop(AF_INET6, &as_ipv6(address).sin6_addr, out.data(), out.size());
    } else if (address.family() == AF_UNIX) {
        std::strcpy(out.data(), "unix"); // a path can be longer than a host
        ok = out.data();
    }
    if (!ok)
        std::strcpy(out.data(), "?");
}

void format_port(const SocketAddress& address, PortText& out)
{
    auto [end, ec] = std::to_chars(out.data(), out.data() + out.size() - 1, address.port());
    *end = '\0';
}

std::string SocketAddress::to_string() const
{
    if (family() == AF_UNIX)
        return "unix:" + std::string(path());
    HostText host;
    PortText port;
    format_host(*this, host);
    format_port(*this, port);
    if (family() == AF_INET6 && !is_v4_mapped(*this))
        return std::string("[") + host.data() + "]:" + port.data();
    return std::string(host.data()) + ":" + port.data();
}

Result<std::vector<SocketAddress>> parse_listen_address(std::string_view text)
{
    auto invalid = [text](std::string_view reason) {
        std::string message = "'";
        message.append(text).append("': ").append(reason);
        return Error{std::move(message)};
    };
    if (text.empty())
        return Error{"empty listen address"};

    if (text.substr(0, 5) == "unix:") {
        std::string_view path = text.substr(5);
        if (path.empty())
            return invalid("missing socket path after 'unix:'");
        if (path.size() >= sizeof(sockaddr_un::sun_path))
            return invalid("socket path longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
        if (path.find('\0') != std::string_view::npos)
            return invalid("socket path contains a NUL byte");
        return std::vector<SocketAddress>{SocketAddress::unix_path(path)};
    }

    if (text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos)
            return invalid("missing ']' after the IPv6 address");
        std::string_view rest = text.substr(close + 1);
        if (rest.empty() || rest.front() != ':')
            return invalid("expected ':PORT' after ']'");
        auto port = parse_port(rest.substr(1));
        if (!port)
            return invalid(port.error());
        return parse_ipv6(text.substr(1, close - 1), *port);
    }

    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        auto port = parse_port(text);
        if (!port)
            return invalid(port.error());
        return std::vector<SocketAddress>{SocketAddress::any_ipv4(*port), SocketAddress::any_ipv6(*port)};
    }
    if (text.find(':') != colon)
        return invalid("write IPv6 addresses in brackets, as [::1]:PORT");
    auto port = parse_port(text.substr(colon + 1));
    if (!port)
        return invalid(port.error());
    return parse_ipv4(text.substr(0, colon), *port);
}

} // namespace superd

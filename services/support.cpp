#include "services/support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>

namespace service {

std::optional<Peer> peer_of(int fd)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return std::nullopt;

    char text[INET6_ADDRSTRLEN] = "";
    Peer peer;
    if (ss.ss_family == AF_INET) {
        const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
        inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
        peer.port = ntohs(sin.sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
            inet_ntop(AF_INET, &sin6.sin6_addr.s6_addr[12], text, sizeof text);
        else
            inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text);
        peer.port = ntohs(sin6.sin6_port);
    } else {
        return std::nullopt;
    }
    peer.ip = text;
    return peer;
}

ssize_t read_some(int fd, void* buffer, size_t size)
{
    ssize_t n;
    do
        n = ::read(fd, buffer, size);
    while (n < 0 && errno == EINTR);
    return n;
}

bool write_all(int fd, const void* data, size_t size)
{
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

void log_client(const char* name)
{
    ::openlog(name, LOG_PID, LOG_DAEMON);
    if (auto peer = peer_of(0))
        ::syslog(LOG_INFO, "connection from %s port %u", peer->ip.c_str(), peer->port);
    else
        ::syslog(LOG_WARNING, "fd 0 is not a connected socket: %m");
}

} // namespace service

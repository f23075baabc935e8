#include "superd/activation.h"

#include "superd/log.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace superd {

namespace {

// The kinds of socket superd serves, one row each.
struct KindRow {
    int family;
    int type;
    int protocol; // SO_PROTOCOL: an SCTP stream socket is no tcp socket
    Protocol kind;
};
constexpr KindRow kKinds[] = {
    {AF_INET, SOCK_STREAM, IPPROTO_TCP, Protocol::kTcp}, {AF_INET6, SOCK_STREAM, IPPROTO_TCP, Protocol::kTcp},
    {AF_INET, SOCK_DGRAM, IPPROTO_UDP, Protocol::kUdp},  {AF_INET6, SOCK_DGRAM, IPPROTO_UDP, Protocol::kUdp},
    {AF_UNIX, SOCK_STREAM, 0, Protocol::kUnix},
};

// The whole of `text` as a number, or nothing.
template <typename T>
std::optional<T> parse_number(std::string_view text)
{
    T value{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

std::string quoted(const char* text) { return fmt::format("\"{}\"", Escaped{text}); }

int get_option(int fd, int level, int option, int& value)
{
    socklen_t length = sizeof value;
    return ::getsockopt(fd, level, option, &value, &length);
}

// Whether `socket` can serve `spec`: the same kind at the same address, and
// listening if it is a stream socket.
bool serves(const SocketInfo& socket, const SocketSpec& spec)
{
    return socket.kind() == spec.protocol && socket.address == spec.address
           && (socket.type != SOCK_STREAM || socket.listening);
}

// "fd=3 name=\"web\"": which inherited socket a log line speaks of.
std::string which(int number, const std::string& name)
{
    if (name.empty())
        return fmt::format("fd={}", number);
    return fmt::format("fd={} name=\"{}\"", number, Escaped{name});
}

} // namespace

Result<ListenEnv> parse_listen_env(const char* pid, const char* fds, const char* names, pid_t self, int max_count)
{
    ListenEnv env;
    if (!fds) {
        if (pid || names)
            env.warnings.push_back(std::string(pid ? "LISTEN_PID" : "LISTEN_FDNAMES")
                                   + " without LISTEN_FDS: no socket inherited");
        return env;
    }
    if (!pid) {
        env.warnings.push_back("LISTEN_FDS=" + quoted(fds) + " without LISTEN_PID: ignored");
        return env;
    }
    auto owner = parse_number<long long>(pid);
    if (!owner || *owner != self) {
        env.warnings.push_back("LISTEN_PID=" + quoted(pid) + " is not superd's pid " + std::to_string(self)
                               + ": the LISTEN_FDS sockets are another process's, ignored");
        return env;
    }
    auto count = parse_number<int>(fds);
    if (!count || *count < 0 || *count > max_count)
        return Error{"LISTEN_FDS=" + quoted(fds) + ": not a number of descriptors from 0 to "
                     + std::to_string(max_count)};
    env.count = *count;
    // An empty LISTEN_FDNAMES names no fd, as systemd splits it.
    if (names && *names) {
        std::vector<std::string> split;
        std::string_view rest = names;
        for (;;) {
            size_t colon = rest.find(':');
            split.emplace_back(rest.substr(0, colon));
            if (colon == std::string_view::npos)
                break;
            rest.remove_prefix(colon + 1);
        }
        if (split.size() == static_cast<size_t>(env.count))
            env.names = std::move(split);
        else
            env.warnings.push_back("LISTEN_FDNAMES=" + quoted(names) + " has " + std::to_string(split.size())
                                   + " names for " + std::to_string(env.count) + " fds: names ignored");
    }
    return env;
}

std::optional<Protocol> SocketInfo::kind() const
{
    for (const KindRow& row : kKinds)
        if (row.family == family && row.type == type && row.protocol == protocol)
            return row.kind;
    return std::nullopt;
}

std::string SocketInfo::kind_name() const
{
    if (auto known = kind())
        return to_string(*known);
    std::string name = family == AF_UNIX ? "unix" : family == AF_INET ? "ipv4" : "ipv6";
    switch (type) {
    case SOCK_STREAM:
        return name + " stream (protocol " + std::to_string(protocol) + ")";
    case SOCK_DGRAM:
        return name + " datagram" + (family == AF_UNIX ? "" : " (protocol " + std::to_string(protocol) + ")");
    case SOCK_SEQPACKET:
        return name + " seqpacket";
    default:
        return name + " socket of type " + std::to_string(type);
    }
}

Result<SocketInfo> describe_socket(int fd)
{
    if (::fcntl(fd, F_GETFD) < 0)
        return Error{"not open"};
    SocketInfo info;
    if (get_option(fd, SOL_SOCKET, SO_TYPE, info.type) != 0)
        return Error{errno == ENOTSOCK ? std::string("not a socket") : std::string(std::strerror(errno))};
    int listening = 0;
    if (get_option(fd, SOL_SOCKET, SO_DOMAIN, info.family) != 0
        || get_option(fd, SOL_SOCKET, SO_PROTOCOL, info.protocol) != 0
        || get_option(fd, SOL_SOCKET, SO_ACCEPTCONN, listening) != 0)
        return Error{std::string("cannot ask what socket it is: ") + std::strerror(errno)};
    info.listening = listening != 0;
    if (info.family != AF_INET && info.family != AF_INET6 && info.family != AF_UNIX)
        return Error{"a socket of address family " + std::to_string(info.family) + ", not ipv4, ipv6 or unix"};
    info.address.length = sizeof info.address.storage;
    if (::getsockname(fd, info.address.get(), &info.address.length) != 0)
        return Error{std::string("getsockname: ") + std::strerror(errno)};
    return info;
}

InheritedSockets InheritedSockets::collect(int first, const ListenEnv& env)
{
    std::vector<Socket> sockets;
    for (int i = 0; i < env.count; ++i) {
        Socket socket;
        socket.number = first + i;
        if (!env.names.empty())
            socket.name = env.names[static_cast<size_t>(i)];
        auto info = describe_socket(socket.number);
        if (!info) {
            bool open = ::fcntl(socket.number, F_GETFD) >= 0;
            spdlog::warn("unused {} reason=\"{}{}\"", which(socket.number, socket.name), info.error(),
                         open ? ": closed" : "");
            if (open)
                ::close(socket.number); // ours by the protocol, whatever it is
            continue;
        }
        // Ours now: close-on-exec, like every fd superd holds.
        ::fcntl(socket.number, F_SETFD, FD_CLOEXEC);
        socket.fd.reset(socket.number);
        socket.info = *info;
        sockets.push_back(std::move(socket));
    }
    return InheritedSockets(std::move(sockets));
}

std::optional<Error> InheritedSockets::mismatch(const std::vector<SocketSpec>& wanted) const
{
    for (const Socket& socket : sockets_) {
        auto takes = [&](const SocketSpec& spec) { return serves(socket.info, spec); };
        if (std::any_of(wanted.begin(), wanted.end(), takes))
            continue;
        for (const SocketSpec& spec : wanted) {
            if (!(spec.address == socket.info.address))
                continue;
            std::string what = socket.info.kind_name() + " socket";
            if (socket.info.type == SOCK_STREAM && !socket.info.listening && socket.info.kind() == spec.protocol)
                what += " that does not listen";
            return Error{"inherited fd " + std::to_string(socket.number) + " is a " + what + " at "
                         + spec.address.to_string() + ", where the config listens with " + to_string(spec.protocol)};
        }
    }
    return std::nullopt;
}

UniqueFd InheritedSockets::take(const SocketSpec& spec)
{
    auto it = std::find_if(sockets_.begin(), sockets_.end(), [&](const Socket& s) { return serves(s.info, spec); });
    if (it == sockets_.end())
        return UniqueFd();
    Socket socket = std::move(*it);
    sockets_.erase(it);
    spdlog::info("adopted {} listen={} kind={}", which(socket.number, socket.name), spec.address,
                 to_string(spec.protocol));
    int v6only = 1;
    if (spec.address.family() == AF_INET6 && spec.address.is_wildcard()
        && get_option(socket.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only) == 0 && v6only == 0)
        spdlog::warn("adopted {} listen={} reason=\"IPV6_V6ONLY is off, so it takes IPv4 too (a socket unit "
                     "sets it with BindIPv6Only=ipv6-only)\"",
                     which(socket.number, socket.name), spec.address);
    if ((spec.mode || spec.uid || spec.gid) && !from_upgrade_)
        spdlog::warn("adopted {} listen={} reason=\"socket_mode, socket_user and socket_group are not applied: the "
                     "socket file is its maker's (SocketMode=, SocketUser=, SocketGroup= in a socket unit)\"",
                     which(socket.number, socket.name), spec.address);
    return std::move(socket.fd);
}

void InheritedSockets::close_rest()
{
    for (const Socket& socket : sockets_)
        spdlog::warn("unused {} listen={} kind={} reason=\"no service listens there: closed\"",
                     which(socket.number, socket.name), socket.info.address, socket.info.kind_name());
    sockets_.clear();
}

Result<InheritedSockets> take_inherited_sockets()
{
    auto copy = [](const char* name) {
        const char* value = std::getenv(name);
        return value ? std::optional<std::string>(value) : std::nullopt;
    };
    auto pid = copy("LISTEN_PID");
    auto fds = copy("LISTEN_FDS");
    auto names = copy("LISTEN_FDNAMES");
    // Read once, for superd alone: no child inherits them, whatever it asks.
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    long open_max = ::sysconf(_SC_OPEN_MAX);
    int max_count = static_cast<int>(std::clamp<long>(open_max - kListenFdsStart, 0, 1 << 20));
    auto env = parse_listen_env(pid ? pid->c_str() : nullptr, fds ? fds->c_str() : nullptr,
                                names ? names->c_str() : nullptr, ::getpid(), max_count);
    if (!env)
        return Error{env.error()};
    for (const std::string& warning : env->warnings)
        spdlog::warn("socket activation: {}", warning);
    return InheritedSockets::collect(kListenFdsStart, *env);
}

} // namespace superd

// What the measuring tools share: a port argument, a raised fd limit, a
// listening socket on 127.0.0.1 and the epoll loop of the reference servers
// around it, and on the client side the address to connect to and a clock.
// Header-only: each tool is one file.
#pragma once

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// A client's command line: its name and usage text, for what rejects a bad
// one (exit status 2, as the tools document).
struct CommandLine {
    const char* tool;
    const char* usage; // "usage: TOOL ...\n"

    // Says `why` (if any) and the usage, and exits with status 2.
    [[noreturn]] void fail(const std::string& why) const
    {
        if (!why.empty())
            std::fprintf(stderr, "%s: %s\n", tool, why.c_str());
        std::fputs(usage, stderr);
        std::exit(2);
    }

    // The value of the flag at argv[i], stepping i past it; -h, --help and a
    // flag without a value fail().
    std::string_view value_of(int argc, char** argv, int& i) const
    {
        std::string_view flag = argv[i];
        if (flag == "-h" || flag == "--help")
            fail("");
        if (i + 1 >= argc)
            fail("missing value for " + std::string(flag));
        return argv[++i];
    }

    // `text` as a number in [low, high], or fail().
    template <typename T>
    T number(std::string_view flag, std::string_view text, T low, T high) const
    {
        T value{};
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc{} || end != text.data() + text.size() || !(value >= low && value <= high))
            fail("bad value for " + std::string(flag) + ": '" + std::string(text) + "'");
        return value;
    }
};

inline int64_t now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Where a client connects: a numeric or named host and a port.
struct Address {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

// Resolves host:port; on failure says why, prefixed with `tool`.
inline std::optional<Address> resolve(const std::string& host, int port, const char* tool)
{
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0 || !res) {
        std::fprintf(stderr, "%s: cannot resolve '%s': %s\n", tool, host.c_str(), ::gai_strerror(rc));
        return std::nullopt;
    }
    Address a;
    std::memcpy(&a.addr, res->ai_addr, res->ai_addrlen);
    a.len = res->ai_addrlen;
    ::freeaddrinfo(res);
    return a;
}

// Adds `fd` to `epfd` for `events`, keyed by the fd; false if it cannot.
inline bool watch(int epfd, int fd, uint32_t events)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    return ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

// Starts a non-blocking connect to `to` and adds the socket to `epfd` under
// `key`, edge-triggered for everything: each step of a client then runs its
// system calls until EAGAIN, and one registration serves the whole
// connection. Stores the socket in `fd` as soon as it exists (the caller
// closes it); false, with errno, on failure.
inline bool start_connect(const Address& to, int epfd, uint64_t key, int& fd)
{
    fd = ::socket(to.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&to.addr), to.len) < 0 && errno != EINPROGRESS)
        return false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = key;
    return ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

// Waits on `epfd` for events, at most a second at a time, until
// `deadline_ns` (bench::now_ns()); the number of events (0 for a spurious
// wakeup), or -1 once the deadline has passed or epoll failed (said, with
// `tool`).
inline int wait_until(int epfd, std::vector<epoll_event>& events, int64_t deadline_ns, const char* tool)
{
    int64_t left = deadline_ns - now_ns();
    if (left <= 0)
        return -1;
    int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(std::min<int64_t>((left + 999'999) / 1'000'000, 1000)));
    if (n >= 0 || errno == EINTR)
        return n < 0 ? 0 : n;
    std::fprintf(stderr, "%s: ", tool);
    std::perror("epoll_wait");
    return -1;
}

// An epoll set holding `listener`, level-triggered for reading; -1 (and
// says why) on failure.
inline int epoll_with(int listener, const char* tool)
{
    int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        std::fprintf(stderr, "%s: ", tool);
        std::perror("epoll_create1");
        return -1;
    }
    watch(epfd, listener, EPOLLIN);
    return epfd;
}

// The loop of a single-process epoll server: accepts every connection
// waiting on `listener` (non-blocking, close-on-exec) and hands it to
// `accepted`, which registers it in `epfd` keyed by its fd or closes it;
// hands every other event to `ready`. Returns only on an error, 1.
inline int serve(int epfd, int listener, const char* tool, const std::function<void(int fd)>& accepted,
                 const std::function<void(int fd, uint32_t events)>& ready)
{
    std::vector<epoll_event> events(1024);
    for (;;) {
        int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            std::fprintf(stderr, "%s: ", tool);
            std::perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            if (events[i].data.fd != listener) {
                ready(events[i].data.fd, events[i].events);
                continue;
            }
            for (;;) {
                int conn = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (conn < 0) {
                    if (errno == EMFILE || errno == ENFILE) {
                        std::fprintf(stderr, "%s: ", tool);
                        std::perror("accept4"); // level-triggered: retried next round
                    }
                    break; // EAGAIN: drained; anything else: try again on the next wakeup
                }
                accepted(conn);
            }
        }
    }
}

} // namespace bench

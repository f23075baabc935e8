// ref_echo: a bare single-process epoll echo server on 127.0.0.1:PORT -- the
// ceiling for handling connections in-process, to compare superd against.
// Echoes everything a client sends and closes once the client's EOF has
// arrived and every byte has been written back.
//
//   g++ -std=c++20 -O2 -I. -o ref_echo bench/ref_echo.cpp
//   ref_echo PORT
//
// Runs until killed.
#include "bench/tools.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Conn {
    std::string pending; // bytes read but not yet written back
    size_t offset = 0;   // how much of pending has been written
};

int epfd = -1;
std::vector<std::unique_ptr<Conn>> conns; // indexed by fd: fds are small and dense

void close_conn(int fd)
{
    conns[static_cast<size_t>(fd)].reset();
    ::close(fd); // also drops it from the epoll set
}

void set_interest(int fd, uint32_t events)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    ::epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

// Writes out what is pending; false if the connection was closed.
bool flush(int fd, Conn& c)
{
    while (c.offset < c.pending.size()) {
        ssize_t n = ::send(fd, c.pending.data() + c.offset, c.pending.size() - c.offset, MSG_NOSIGNAL);
        if (n > 0) {
            c.offset += static_cast<size_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            close_conn(fd);
            return false;
        }
    }
    c.pending.clear();
    c.offset = 0;
    return true;
}

void on_event(int fd, uint32_t events)
{
    Conn& c = *conns[static_cast<size_t>(fd)];
    if (!c.pending.empty()) {
        // Waiting for EPOLLOUT: reading is paused until the backlog drains, so a
        // client that never reads cannot make us buffer without bound.
        if (!flush(fd, c))
            return;
        if (!c.pending.empty()) {
            if (events & (EPOLLERR | EPOLLHUP))
                close_conn(fd);
            return;
        }
        // Reading resumes below; a half-close that arrived meanwhile shows up
        // as recv() == 0 there, after everything has been written back.
        set_interest(fd, EPOLLIN);
    }

    char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n > 0) {
            c.pending.assign(buffer, static_cast<size_t>(n));
            c.offset = 0;
            if (!flush(fd, c))
                return;
            if (!c.pending.empty()) {
                set_interest(fd, EPOLLOUT);
                return;
            }
        } else if (n == 0) {
            close_conn(fd); // everything already written back
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            close_conn(fd);
            return;
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<uint16_t> port = bench::parse_port(argc == 2 ? argv[1] : "");
    if (!port) {
        std::fprintf(stderr, "usage: ref_echo PORT\n");
        return 2;
    }

    bench::raise_nofile();
    int listener = bench::listen_loopback(*port, SOCK_NONBLOCK, "ref_echo");
    if (listener < 0)
        return 1;

    epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        std::perror("ref_echo: epoll_create1");
        return 1;
    }
    epoll_event lev{};
    lev.events = EPOLLIN;
    lev.data.fd = listener;
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &lev);

    std::vector<epoll_event> events(1024);
    for (;;) {
        int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            std::perror("ref_echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd != listener) {
                if (static_cast<size_t>(fd) < conns.size() && conns[static_cast<size_t>(fd)])
                    on_event(fd, events[i].events);
                continue;
            }
            for (;;) {
                int conn = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (conn < 0) {
                    if (errno == EMFILE || errno == ENFILE)
                        std::perror("ref_echo: accept4"); // level-triggered: retried next round
                    break; // EAGAIN: drained; anything else: try again on the next wakeup
                }
                if (static_cast<size_t>(conn) >= conns.size())
                    conns.resize(static_cast<size_t>(conn) + 1024);
                conns[static_cast<size_t>(conn)] = std::make_unique<Conn>();
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.fd = conn;
                if (::epoll_ctl(epfd, EPOLL_CTL_ADD, conn, &ev) < 0)
                    close_conn(conn);
            }
        }
    }
}

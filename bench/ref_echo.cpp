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
    if (static_cast<size_t>(fd) >= conns.size() || !conns[static_cast<size_t>(fd)])
        return; // closed earlier in the same batch of events
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
    if (listener < 0 || (epfd = bench::epoll_with(listener, "ref_echo")) < 0)
        return 1;
    auto accepted = [](int conn) {
        if (static_cast<size_t>(conn) >= conns.size())
            conns.resize(static_cast<size_t>(conn) + 1024);
        conns[static_cast<size_t>(conn)] = std::make_unique<Conn>();
        if (!bench::watch(epfd, conn, EPOLLIN))
            close_conn(conn);
    };
    return bench::serve(epfd, listener, "ref_echo", accepted, on_event);
}

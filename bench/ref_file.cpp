// ref_file: a bare single-process epoll server on 127.0.0.1:PORT that sends
// FILE to every connection -- the ceiling for serving a file, to compare
// superd's file builtin against. Per connection it opens FILE (so a replaced
// file is served at once, as superd does), sends it whole, half-closes, and
// closes once the client's EOF has arrived; what the client sends is read
// and dropped, so closing never turns into a reset that loses unread bytes.
//
// By default the bytes go with sendfile(2), never through user space. With
// --copy they go through a 64 KiB buffer with read(2) and send(2): the
// classic copy server, so that the system call is the only difference
// between the two.
//
//   g++ -std=c++20 -O2 -I. -o ref_file bench/ref_file.cpp
//   ref_file PORT FILE [--copy]
//
// Runs until killed.
#include "bench/tools.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kCopyBuffer = 64 * 1024;

struct Conn {
    int file = -1;
    off_t offset = 0;                       // how much of the file has been sent
    off_t size = 0;                         // the file's size when it was opened
    bool sent = false;                      // all of it sent and SHUT_WR done: only the client's EOF is awaited
    bool peer_eof = false;                  // the client has half-closed: nothing more to read
    uint32_t interest = EPOLLIN | EPOLLOUT; // what epoll waits for on this connection
    std::vector<char> copy;                 // --copy: bytes read from the file
    size_t copy_offset = 0;                 // --copy: how much of them has been sent
    ~Conn()
    {
        if (file >= 0)
            ::close(file);
    }
};

int epfd = -1;
bool copy_mode = false;
std::vector<std::unique_ptr<Conn>> conns; // indexed by fd: fds are small and dense

void close_conn(int fd)
{
    conns[static_cast<size_t>(fd)].reset();
    ::close(fd); // also drops it from the epoll set
}

// Changes what epoll waits for, if that is a change: the bare reference
// spends no system call it can avoid.
void set_interest(int fd, Conn& c, uint32_t events)
{
    if (c.interest == events)
        return;
    c.interest = events;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    ::epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

enum class Progress { Blocked, Done, Failed };

Progress send_with_sendfile(int fd, Conn& c)
{
    while (c.offset < c.size) {
        ssize_t n = ::sendfile(fd, c.file, &c.offset, static_cast<size_t>(c.size - c.offset));
        if (n > 0)
            continue;
        if (n == 0)
            return Progress::Done; // the file shrank: what is left of it has been sent
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return Progress::Blocked;
        if (errno != EINTR)
            return Progress::Failed;
    }
    return Progress::Done;
}

Progress send_with_copy(int fd, Conn& c)
{
    for (;;) {
        if (c.copy_offset == c.copy.size()) {
            c.copy.resize(kCopyBuffer);
            ssize_t n = ::read(c.file, c.copy.data(), c.copy.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return Progress::Failed;
            c.copy.resize(static_cast<size_t>(n));
            c.copy_offset = 0;
            if (n == 0)
                return Progress::Done;
        }
        ssize_t n = ::send(fd, c.copy.data() + c.copy_offset, c.copy.size() - c.copy_offset, MSG_NOSIGNAL);
        if (n > 0)
            c.copy_offset += static_cast<size_t>(n);
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return Progress::Blocked;
        else if (n < 0 && errno != EINTR)
            return Progress::Failed;
    }
}

// Reads and drops what the client sent, up to its EOF; false if the
// connection failed and was closed.
bool drain(int fd, Conn& c)
{
    char buffer[16384];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n > 0)
            continue;
        if (n == 0) {
            c.peer_eof = true;
            return true;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        if (errno != EINTR) {
            close_conn(fd);
            return false;
        }
    }
}

void on_event(int fd, uint32_t events)
{
    if (static_cast<size_t>(fd) >= conns.size() || !conns[static_cast<size_t>(fd)])
        return; // closed earlier in the same batch of events
    Conn& c = *conns[static_cast<size_t>(fd)];
    if (!c.peer_eof && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !drain(fd, c))
        return;
    if (c.sent) {
        if (c.peer_eof)
            close_conn(fd);
        return;
    }
    // Once the client's EOF is in, its readability would wake us forever: wait for writability alone.
    const uint32_t readable = c.peer_eof ? 0u : uint32_t{EPOLLIN};
    switch (copy_mode ? send_with_copy(fd, c) : send_with_sendfile(fd, c)) {
    case Progress::Blocked:
        set_interest(fd, c, readable | EPOLLOUT);
        return;
    case Progress::Failed:
        close_conn(fd);
        return;
    case Progress::Done:
        c.sent = true;
        ::close(c.file);
        c.file = -1;
        c.copy = {};
        ::shutdown(fd, SHUT_WR);
        if (c.peer_eof)
            close_conn(fd);
        else
            set_interest(fd, c, EPOLLIN);
        return;
    }
}

// Opens the file for a new connection; false (and says why) if it cannot.
bool open_file(const char* path, Conn& c)
{
    c.file = ::open(path, O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (c.file < 0 || ::fstat(c.file, &st) < 0) {
        std::perror("ref_file: open");
        return false;
    }
    c.size = st.st_size;
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<uint16_t> port = bench::parse_port(argc >= 3 ? argv[1] : "");
    copy_mode = argc == 4 && std::string_view(argv[3]) == "--copy";
    if (!port || argc > 4 || (argc == 4 && !copy_mode)) {
        std::fprintf(stderr, "usage: ref_file PORT FILE [--copy]\n");
        return 2;
    }
    const char* path = argv[2];
    if (::access(path, R_OK) < 0) {
        std::perror(path);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN); // sendfile has no MSG_NOSIGNAL

    bench::raise_nofile();
    int listener = bench::listen_loopback(*port, SOCK_NONBLOCK, "ref_file");
    if (listener < 0 || (epfd = bench::epoll_with(listener, "ref_file")) < 0)
        return 1;
    auto accepted = [path](int conn) {
        if (static_cast<size_t>(conn) >= conns.size())
            conns.resize(static_cast<size_t>(conn) + 1024);
        conns[static_cast<size_t>(conn)] = std::make_unique<Conn>();
        if (!open_file(path, *conns[static_cast<size_t>(conn)])) {
            close_conn(conn);
            return;
        }
        // Writable at once: the first event starts sending.
        if (!bench::watch(epfd, conn, EPOLLIN | EPOLLOUT))
            close_conn(conn);
    };
    return bench::serve(epfd, listener, "ref_file", accepted, on_event);
}

// UniqueFd: the one owner of a file descriptor.
//
// Every descriptor superd opens is wrapped in a UniqueFd the moment it exists
// and is close-on-exec from birth (SOCK_CLOEXEC, accept4, O_CLOEXEC), so a
// spawned service starts with exactly the fds it was handed and nothing else.
// Move-only: ownership passes explicitly; the destructor closes.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

namespace superd {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }

    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept
    {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }

    int release() { return std::exchange(fd_, -1); }

    void reset(int fd = -1)
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// Moves `fd` to the high end of the fd table (above half the soft
// RLIMIT_NOFILE), keeping it close-on-exec, and closes the original; if
// there is no room up there, `fd` stays where it is. Long-lived descriptors
// (listeners, pidfds) live up there so that the few a spawned child needs
// (its connection, /dev/null, a pipe) get low numbers: the child then copies
// only the bottom of the table (see launcher.cpp).
int move_high(int fd);

// Sets or clears O_NONBLOCK, a flag of the open socket or file (shared
// with whoever else holds it), not of the fd.
inline void set_nonblocking(int fd, bool on)
{
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && ((flags & O_NONBLOCK) != 0) != on)
        ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

// Closing this socket sends a reset, not a FIN: the peer sees a failure,
// not a clean end of something cut short.
inline void reset_on_close(int fd)
{
    linger hard{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
}

} // namespace superd

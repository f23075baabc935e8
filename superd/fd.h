// UniqueFd: the one owner of a file descriptor.
//
// Every descriptor superd opens is wrapped in a UniqueFd the moment it exists
// and is close-on-exec from birth (SOCK_CLOEXEC, accept4, O_CLOEXEC), so a
// spawned service starts with exactly the fds it was handed and nothing else.
// Move-only: ownership passes explicitly; the destructor closes.
#pragma once

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

} // namespace superd

#include "superd/process.h"

#include "superd/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace superd {

namespace {

// For kernels without close_range (before 5.11): walk the fds that exist,
// never every number up to the limit.
void cloexec_from_proc(int lowest)
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir)
        return;
    while (dirent* entry = ::readdir(dir)) {
        int fd = std::atoi(entry->d_name);
        if (fd >= lowest && fd != ::dirfd(dir))
            ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    ::closedir(dir);
}

} // namespace

int move_high(int fd)
{
    // Read once (a syscall saved per spawn): by the first call superd has
    // raised its limit for good (prepare_process). Were the limit lowered
    // later, F_DUPFD_CLOEXEC would fail and the fd simply stay low.
    static const int floor = [] {
        rlimit limit{};
        if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur < 64)
            return -1;
        return static_cast<int>(std::min<rlim_t>(limit.rlim_cur / 2, 1 << 20));
    }();
    if (fd < 0 || floor < 0 || fd >= floor)
        return fd;
    int high = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (high < 0)
        return fd;
    ::close(fd);
    return high;
}

Result<StartedWith> prepare_process()
{
    for (int fd = 0; fd <= 2; ++fd) {
        if (::fcntl(fd, F_GETFD) >= 0)
            continue;
        int null = ::open("/dev/null", O_RDWR);
        if (null < 0)
            return Error{std::string("cannot open /dev/null: ") + std::strerror(errno)};
        if (null != fd) {
            // Lower numbers are taken, so open() returned exactly `fd`
            // unless the fd was closed between the two calls.
            ::dup2(null, fd);
            ::close(null);
        }
    }

    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        cloexec_from_proc(3);

    StartedWith started;
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        rlimit raised{nofile.rlim_max, nofile.rlim_max};
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
            started.nofile = nofile;
    }

    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    return started;
}

} // namespace superd

#include "superctl/client.h"

#include "superd/fd.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cmath>
#include <cstring>

namespace superctl {

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int error) { return std::strerror(error); }

// Waits until `fd` is ready for `events` or `deadline` passes; false then.
// A poll error other than EINTR counts as ready: the read or write that
// follows reports it.
bool wait_ready(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return false;
        pollfd p = {fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1'000'000)));
        if (n > 0 || (n < 0 && errno != EINTR))
            return true;
    }
}

std::string seconds_text(std::chrono::milliseconds timeout)
{
    char text[32];
    double seconds = static_cast<double>(timeout.count()) / 1000;
    if (seconds == std::floor(seconds))
        std::snprintf(text, sizeof text, "%.0f s", seconds);
    else
        std::snprintf(text, sizeof text, "%.3g s", seconds);
    return text;
}

} // namespace

superd::Result<std::string> exchange(const std::string& path, std::string_view request,
                                     std::chrono::milliseconds timeout)
{
    auto deadline = Clock::now() + timeout;
    std::string cannot_connect = "cannot connect to " + path + ": ";

    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path)
        return superd::Error{cannot_connect + errno_text(ENAMETOOLONG)};
    std::memcpy(address.sun_path, path.data(), path.size());

    superd::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return superd::Error{cannot_connect + errno_text(errno)};
    // A unix socket connects at once or fails (EAGAIN: its backlog is full);
    // EINPROGRESS is not expected but handled as for any socket.
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        if (errno != EINPROGRESS)
            return superd::Error{cannot_connect + errno_text(errno)};
        if (!wait_ready(fd.get(), POLLOUT, deadline))
            return superd::Error{cannot_connect + "no connection within " + seconds_text(timeout)};
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0)
            return superd::Error{cannot_connect + errno_text(error)};
    }

    std::string line = std::string(request) + "\n";
    for (size_t sent = 0; sent < line.size();) {
        // MSG_NOSIGNAL: a superd that closed early is an error, not SIGPIPE.
        ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_ready(fd.get(), POLLOUT, deadline))
                return superd::Error{"cannot send to " + path + ": not accepted within " + seconds_text(timeout)};
        } else {
            return superd::Error{"cannot send to " + path + ": " + errno_text(errno)};
        }
    }

    std::string reply;
    size_t scanned = 0; // the bytes of `reply` known to hold no newline
    for (;;) {
        size_t end = reply.find('\n', scanned);
        if (end != std::string::npos) {
            reply.resize(end);
            if (!reply.empty() && reply.back() == '\r')
                reply.pop_back();
            return reply;
        }
        scanned = reply.size();
        if (reply.size() > kMaxReplyBytes)
            return superd::Error{"the reply from " + path + " is longer than " + std::to_string(kMaxReplyBytes >> 20)
                                 + " MiB"};
        char buffer[65536];
        ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
        if (n > 0) {
            reply.append(buffer, static_cast<size_t>(n));
        } else if (n == 0) {
            return superd::Error{path + " closed the connection "
                                 + (reply.empty() ? "without a reply" : "in the middle of a reply")};
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_ready(fd.get(), POLLIN, deadline))
                return superd::Error{"no reply from " + path + " within " + seconds_text(timeout)};
        } else {
            return superd::Error{"cannot read from " + path + ": " + errno_text(errno)};
        }
    }
}

} // namespace superctl

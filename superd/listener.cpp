#include "superd/listener.h"

#include "superd/log.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace superd {

namespace {

// Enough to drain a burst without starving the other listeners and signals.
constexpr int kAcceptBatch = 64;

// How long a listener rests when the process is out of fds or memory.
constexpr timeval kPause{1, 0};

// listen() caps the backlog at net.core.somaxconn, so asking for the most
// gives the system's maximum.
constexpr int kBacklog = INT_MAX;

} // namespace

Result<std::unique_ptr<Listener>> Listener::open(const SocketAddress& address)
{
    auto fail = [&](const char* what) {
        return Error{"cannot " + std::string(what) + " " + address.to_string() + ": " + std::strerror(errno)};
    };

    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return fail("create a socket for");
    int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        return fail("set SO_REUSEADDR on");
    // An IPv6 socket takes IPv6 only, whatever net.ipv6.bindv6only says, so
    // that "PORT" can bind 0.0.0.0 and :: side by side on any host.
    if (address.family() == AF_INET6
        && ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        return fail("set IPV6_V6ONLY on");
    if (::bind(fd.get(), address.get(), address.length) != 0)
        return fail("bind");
    if (::listen(fd.get(), kBacklog) != 0)
        return fail("listen on");
    return std::unique_ptr<Listener>(new Listener(std::move(fd), address));
}

void Listener::start(event_base* base, Handler handler)
{
    handler_ = std::move(handler);
    read_event_.reset(event_new(base, fd_.get(), EV_READ | EV_PERSIST, on_readable, this));
    resume_timer_.reset(evtimer_new(base, on_resume, this));
    event_add(read_event_.get(), nullptr);
}

void Listener::on_readable(evutil_socket_t, short, void* self)
{
    static_cast<Listener*>(self)->accept_batch();
}

void Listener::on_resume(evutil_socket_t, short, void* self)
{
    auto* listener = static_cast<Listener*>(self);
    spdlog::info("resumed listen={}", listener->address_.to_string());
    event_add(listener->read_event_.get(), nullptr);
}

void Listener::accept_batch()
{
    for (int i = 0; i < kAcceptBatch; ++i) {
        SocketAddress peer;
        peer.length = sizeof peer.storage;
        int fd = ::accept4(fd_.get(), peer.get(), &peer.length, SOCK_CLOEXEC);
        if (fd >= 0) {
            handler_(UniqueFd(fd), peer);
            continue;
        }
        switch (errno) {
        case EAGAIN:
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        // Linux reports a connection's pending network errors on accept();
        // the listener itself is fine (accept(2), "Error handling").
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        default:
            spdlog::warn("paused listen={} reason=\"accept: {}\" for={}s", address_.to_string(),
                         std::strerror(errno), kPause.tv_sec);
            pause();
            return;
        }
    }
}

void Listener::pause()
{
    event_del(read_event_.get());
    evtimer_add(resume_timer_.get(), &kPause);
}

} // namespace superd

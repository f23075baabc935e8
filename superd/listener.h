// Listener: one listening TCP socket and the read event that accepts from it.
//
// On readiness it accepts in a loop (accept4 with SOCK_CLOEXEC, so the
// connection is blocking and close-on-exec) until EAGAIN or a batch limit,
// and hands each connection to its handler, which owns it from then on.
// Transient accept errors are skipped; running out of descriptors or memory
// pauses this listener for a while instead of spinning on a socket that stays
// readable.
//
// A Listener must not move once started: its events point at it.
#pragma once

#include "superd/address.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/result.h"

#include <functional>
#include <memory>

namespace superd {

class Listener {
public:
    using Handler = std::function<void(UniqueFd connection, const SocketAddress& peer)>;

    // Opens, binds and listens; the error names the address and the reason.
    static Result<std::unique_ptr<Listener>> open(const SocketAddress& address);

    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Watches the socket on `base` and calls `handler` for each connection.
    void start(event_base* base, Handler handler);

    const SocketAddress& address() const { return address_; }
    int fd() const { return fd_.get(); }

private:
    Listener(UniqueFd fd, const SocketAddress& address) : fd_(std::move(fd)), address_(address) {}

    static void on_readable(evutil_socket_t, short, void* self);
    static void on_resume(evutil_socket_t, short, void* self);
    void accept_batch();
    void pause();

    UniqueFd fd_;
    SocketAddress address_;
    Handler handler_;
    Event read_event_;
    Event resume_timer_;
};

} // namespace superd

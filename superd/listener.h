// Listener: one listening (or bound datagram) socket and the read event
// that serves it.
//
// A listener is opened once and may outlive the configuration that opened
// it: a reload hands it to the new service with set_handler(), so the socket,
// and every connection waiting in its backlog, survives.
//
// Two ways to serve it:
// - accepting: on readiness, accept4 (SOCK_CLOEXEC, so the connection is
//   blocking and close-on-exec) in a loop until EAGAIN or a batch limit, and
//   hand each connection to the handler. Transient errors are skipped; out
//   of descriptors or memory pauses the listener instead of spinning.
// - watching: on readiness, call the handler with the socket itself (wait
//   services, UDP builtins). The handler decides whether to pause.
//
// A Listener must not move once started: its events point at it.
#pragma once

#include "superd/address.h"
#include "superd/config.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/result.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace superd {

// How a listening socket is made; part of its identity across reloads.
struct SocketSpec {
    Protocol protocol = Protocol::kTcp;
    SocketAddress address;
    // Unix sockets: applied at open and again at each reload.
    std::optional<mode_t> mode;
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;

    // "tcp 127.0.0.1:7007": the same key means the same socket.
    std::string key() const;
};

class Listener {
public:
    using ConnectionHandler = std::function<void(UniqueFd connection, const SocketAddress& peer)>;
    using ReadyHandler = std::function<void()>;

    // Opens, binds and (for streams) listens. A stale unix socket file left
    // by a dead superd is replaced; one that is live, or a file that is not a
    // socket, is an error. The error names the address and the reason.
    static Result<std::unique_ptr<Listener>> open(const SocketSpec& spec);
    ~Listener();

    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Serves the socket with `handler` from now on; replaces any earlier one.
    void accept_with(event_base* base, ConnectionHandler handler);
    void watch_with(event_base* base, ReadyHandler handler);

    // Stops reacting to readiness; the kernel backlog holds new connections.
    void pause();
    // Reacts again, at once or after `delay`.
    void resume(std::chrono::milliseconds delay = std::chrono::milliseconds(0));
    bool paused() const { return paused_; }

    // Re-applies a unix socket's mode and owner (a reload may change them).
    std::optional<Error> apply_ownership(const SocketSpec& spec);

    const SocketSpec& spec() const { return spec_; }
    const SocketAddress& address() const { return spec_.address; }
    int fd() const { return fd_.get(); }

private:
    Listener(UniqueFd fd, const SocketSpec& spec) : fd_(std::move(fd)), spec_(spec) {}

    static void on_readable(evutil_socket_t, short, void* self);
    static void on_resume(evutil_socket_t, short, void* self);
    void start(event_base* base);
    void accept_batch();

    UniqueFd fd_;
    SocketSpec spec_;
    ino_t unix_inode_ = 0; // the socket file we created, removed when closed
    ConnectionHandler on_connection_;
    ReadyHandler on_ready_;
    Event read_event_;
    Event resume_timer_;
    bool paused_ = false;
};

} // namespace superd

// Listener: one listening (or bound datagram) socket and the read event
// that serves it.
//
// A listener is opened once and may outlive the configuration that opened
// it: a reload hands it to the new service with set_handler(), so the socket,
// and every connection waiting in its backlog, survives.
//
// Two ways to serve it:
// - accepting: on readiness, accept4 (SOCK_CLOEXEC, so the connection is
//   blocking and close-on-exec) in a loop until EAGAIN, a batch limit, or
//   the gate says no, and hand each connection to the handler. Transient
//   errors are skipped. Out of descriptors or memory, the shortage hook
//   runs (the daemon drains one connection, logs, and holds the listener).
// - watching: on readiness, call the handler with the socket itself (wait
//   services, UDP builtins).
//
// Backpressure is by not listening: while any hold is on, the socket is not
// watched and the kernel backlog keeps new connections. Holds have reasons,
// each put on and taken off on its own, some released by a timer.
//
// A Listener must not move once started: its events point at it.
#pragma once

#include "superd/address.h"
#include "superd/clock.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/result.h"

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace superd {

// Why a listener is not being watched.
enum Hold : unsigned {
    kHoldWaitChild = 1u << 0,   // a wait service's child owns the socket
    kHoldServiceFull = 1u << 1, // max_instances reached (on_limit = "queue")
    kHoldAllFull = 1u << 2,     // [superd] max_children reached
    kHoldRate = 1u << 3,        // the service's rate, until the next token
    kHoldShortage = 1u << 4,    // accept ran out of descriptors or memory
    kHoldPaced = 1u << 5,       // spawns fail, or wait children exit at once
    kHoldPaused = 1u << 6,      // paused by superctl, until resumed
};
constexpr int kHoldReasons = 7;

// How a listening socket is made; part of its identity across reloads.
struct SocketSpec {
    Protocol protocol = Protocol::kTcp;
    SocketAddress address;
    std::optional<int> backlog; // stream sockets; default: the system's maximum
    bool reuse_port = false;    // SO_REUSEPORT (TCP, UDP): set again at each reload
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

    struct AcceptHooks {
        ConnectionHandler on_connection;
        // Asked before each accept; false stops (it should put a hold on).
        std::function<bool()> gate;
        // accept() failed for want of something other than a connection:
        // descriptors (EMFILE, ENFILE) or memory (ENOMEM, ENOBUFS). The
        // hook gets errno; it should put a hold on. Without one, the
        // listener rests a second.
        std::function<void(int error)> on_shortage;
        // Connections come non-blocking, for a service served in-process;
        // a spawned program gets them blocking, as inetd gives them.
        bool nonblocking = false;
    };

    // Opens, binds and (for streams) listens. A stale unix socket file left
    // by a dead superd is replaced; one that is live, or a file that is not a
    // socket, is an error. A unix socket is bound at its path, born with its
    // mode (and group, when superd may set its fsgid), so it is never
    // reachable by those its mode leaves out; no symlink is ever followed.
    // The error names the address and the reason.
    static Result<std::unique_ptr<Listener>> open(const SocketSpec& spec);
    // Serves `socket`, bound (and listening, for streams) by someone else
    // at `spec`'s address with `spec`'s kind (socket activation, see
    // activation.h). It gets what open() gives its own sockets and can still
    // take once bound: close-on-exec, non-blocking, a high fd number, packet
    // info (UDP), and the config's backlog when it sets one. IPV6_V6ONLY
    // cannot change after bind. A unix socket's file stays its maker's: its
    // mode and owner are left as they are, and it is not removed on close.
    static Result<std::unique_ptr<Listener>> adopt(UniqueFd socket, const SocketSpec& spec);
    ~Listener();

    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Serves the socket from now on, on `base`; replaces any earlier
    // handler. Timed holds run on `timers`, which must outlive the listener.
    void accept_with(event_base* base, Timers& timers, AcceptHooks hooks);
    void watch_with(event_base* base, Timers& timers, ReadyHandler handler);

    // Lends the socket to a wait-mode child, in blocking mode as inetd gives
    // it. The mode belongs to the socket, which the child (or a process it
    // left behind) shares and may change at any moment; from now on every
    // turn of accepting sets it non-blocking again and, should it be
    // cleared in mid-turn, a receive timeout ends a blocked accept.
    void lend();
    // The socket is another process's now (an upgrade): stops watching it
    // for good and closes superd's descriptor of it, leaving its file, which
    // that process serves, in place. Holds still go on and off; nothing is
    // watched again, and fd() is -1.
    void hand_over();
    // Tells this socket from another one opened later on the same address.
    uint64_t id() const { return id_; }

    // Puts a hold on / takes it off; the socket is watched when none is on.
    void hold(Hold reason);
    void release(Hold reason);
    // Puts a hold on now and takes it off after `delay`.
    void hold_for(Hold reason, std::chrono::milliseconds delay);
    bool held() const { return holds_ != 0; }
    bool held(Hold reason) const { return (holds_ & reason) != 0; }

    // Re-applies what a reload may change on a kept socket: a unix socket's
    // mode and owner, a stream socket's backlog. A unix socket path that no
    // longer holds our socket file (a symlink or another file put there by
    // whoever can write to the folder) is left alone, with an error.
    std::optional<Error> apply_settings(const SocketSpec& spec);

    const SocketSpec& spec() const { return spec_; }
    const SocketAddress& address() const { return spec_.address; }
    int fd() const { return fd_.get(); }

private:
    Listener(UniqueFd fd, const SocketSpec& spec) : fd_(std::move(fd)), spec_(spec), id_(++last_id_) {}

    static void on_readable(evutil_socket_t, short, void* self);
    void start(event_base* base, Timers& timers);
    void update();
    void accept_batch();

    UniqueFd fd_;
    SocketSpec spec_;
    uint64_t id_;
    static inline uint64_t last_id_ = 0;
    // The unix socket file we created (O_PATH), removed when closed. Held
    // open, its inode number cannot be reused by a file made there later.
    UniqueFd unix_file_;
    AcceptHooks accept_;
    ReadyHandler on_ready_;
    event_base* base_ = nullptr;
    Timers* timers_ = nullptr;
    Event read_event_;
    std::array<std::unique_ptr<Timer>, kHoldReasons> releases_; // each takes one hold off
    unsigned holds_ = 0;
    bool watching_ = false;
    bool lent_ = false; // see lend()
};

} // namespace superd

// ControlServer: the control socket, through which superctl (superctl/)
// asks a running superd what it is doing and tells it what to do. This
// module is the transport and the gate; the daemon answers the requests
// (daemon_control.cpp).
//
// The socket is a unix stream socket, made by Listener (so it is born with
// its mode, a stale one left by a dead superd is replaced and a live one is
// an error), mode 0600, or 0660 with the group `control_group`. The kernel
// checks the file's mode at connect; the server checks again who connected
// (SO_PEERCRED, SO_PEERGROUPS): root, superd's own user, or a member of the
// group. Anyone else gets an error reply and is closed.
//
// The protocol, for superctl and for scripts with socat:
//   request:  one line, "COMMAND [ARG...]", words separated by spaces, at
//             most kMaxRequest bytes, ended by "\n" (or by the client's EOF);
//   reply:    one JSON object on one line, ended by "\n", with "ok": true
//             and the command's fields, or "ok": false and "error".
// A connection may send requests one after another; each gets its reply,
// in order. The commands and their fields are the daemon's (daemon.h) and
// the README's ("Running it").
//
// The server runs on the daemon's event loop and never blocks it: a client
// that sends no complete request for kIdle, or that stops reading while
// kIdle passes, is dropped; so is one that has let more than kMaxUnread of
// replies pile up, and a request longer than kMaxRequest ends its
// connection with an error reply. At most kMaxClients are served at once.
//
// The handler runs inside the server's callbacks: it must not destroy the
// server. A server that is replaced (a reload moved the socket) is told to
// stop listening with close_listener() and freed once clients() is 0.
#pragma once

#include "superd/clock.h"
#include "superd/config.h"
#include "superd/listener.h"
#include "superd/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

struct bufferevent;
struct event_base;

namespace superd {

// The process at the other end of a control connection, as it was when it
// connected.
struct ControlPeer {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// Whether a peer with credentials `peer` and supplementary groups `groups`
// may use a control socket of superd running as `self` with control group
// `group`.
bool control_allowed(const ControlPeer& peer, std::span<const gid_t> groups, uid_t self, std::optional<gid_t> group);

class ControlServer {
public:
    // Answers one request line (without its "\n") with one reply (JSON,
    // without its "\n").
    using Handler = std::function<std::string(std::string_view request, const ControlPeer& peer)>;

    static constexpr std::chrono::seconds kIdle{5};
    static constexpr size_t kMaxRequest = 1024;
    static constexpr size_t kMaxUnread = 1 << 20;
    static constexpr size_t kMaxClients = 32;

    // Creates the socket (and its folder, when only the last level is
    // missing, mode 0755) and serves it on `base`; `timers` must outlive
    // the server. The error names the path and the reason.
    // `socket`, when given, is the control socket an upgrade's old process
    // handed over (upgrade.h), served as it is instead of a new one.
    static Result<std::unique_ptr<ControlServer>>
    open(event_base* base, Timers& timers, const ControlSettings& settings, Handler handler, UniqueFd socket = {});
    // What the socket at `settings`' path is, for finding it among the
    // inherited ones.
    static SocketSpec socket_spec(const ControlSettings& settings);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Takes new settings for the same path: the socket file's group and mode.
    std::optional<Error> regroup(const ControlSettings& settings);
    // Stops accepting and removes the socket file; the connections already
    // accepted are answered until they end.
    void close_listener();
    // Stops accepting and leaves the socket file to the process the socket
    // was handed to (an upgrade); the connections already accepted are
    // answered until they end.
    void hand_over();
    // The listening socket, -1 once closed.
    int fd() const { return listener_ ? listener_->fd() : -1; }

    const ControlSettings& settings() const { return settings_; }
    size_t clients() const { return clients_.size(); }

private:
    struct Client;
    ControlServer(event_base* base, const ControlSettings& settings, Handler handler);

    void accepted(UniqueFd fd);
    static void on_read(bufferevent*, void* ctx);
    static void on_write(bufferevent*, void* ctx);
    static void on_event(bufferevent*, short what, void* ctx);
    // Answers the complete requests in `client`'s input; false when the
    // client was dropped.
    bool answer(Client& client, bool at_eof);
    // Queues one reply line; false when the client was dropped for not
    // reading its replies.
    bool reply(Client& client, const std::string& json);
    void drop(Client& client);

    event_base* base_;
    ControlSettings settings_;
    Handler handler_;
    std::unique_ptr<Listener> listener_;
    std::unordered_map<Client*, std::unique_ptr<Client>> clients_;
};

} // namespace superd

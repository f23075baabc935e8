// The forward builtin: each connection relayed to a backend, as xinetd's
// `redirect` and systemd-socket-proxyd do, inside superd and with no byte
// copied through it.
//
//     [service.web]
//     listen     = ["0.0.0.0:80"]
//     builtin    = "forward"
//     forward_to = "127.0.0.1:8080"   # "ADDR:PORT", "[V6]:PORT" or "unix:PATH"
//     connect_timeout = "5s"          # the default
//     send_proxy = "v2"               # optional: a PROXY protocol header first
//
// A ForwardRelay is one connection. It connects to the backend without
// blocking, within connect_timeout; a backend that refuses, cannot be
// reached or does not answer in time ends it as a refusal ("backend"),
// which the daemon counts and logs, and the client is closed at once. The
// client is not read meanwhile: what it sends waits in its socket. Then
// the bytes flow each way through a pipe of its own with splice(2), socket
// to pipe to socket, never through user space. With send_proxy the backend
// first gets the PROXY header naming the client and the address it reached,
// and no byte of the client's before it.
//
// Backpressure: a direction reads from its source only while its pipe is
// empty, and writes while it is not. A pipe counts slots, not bytes, so
// "not full" cannot be told from the outside: reading into an empty pipe
// only is what keeps a level-triggered loop from spinning on a socket with
// data and a pipe that has no slot left. Each socket has a read and a write
// event, added only while wanted: a client that does not read stops its
// backend's side, and nothing else.
//
// Half-close is carried across: the end of one side's input becomes
// shutdown(SHUT_WR) on the other, once the pipe has drained, so protocols
// that read to EOF work. The relay is over when both directions have ended.
// An error on either side (a reset) aborts it, and the other side is reset
// too (SO_LINGER 0), so that a client whose backend failed sees a failure
// and not a clean end of a truncated reply.
//
// Six descriptors a connection: the client, the backend and two pipes (the
// pipes taken once the backend has answered, from a pool of empty ones that
// the relays give back). Out of descriptors, the relay
// ends as a refusal ("fds"). A pipe starts at the kernel's 64 KiB; one
// whose direction turns out to be a bulk transfer (1 MiB moved) grows to
// 1 MiB, which takes a bulk transfer from about 0.85 to about 1.4 GB/s on
// loopback, while short exchanges never hold the larger pipe.
#pragma once

#include "superd/address.h"
#include "superd/config.h"
#include "superd/connection.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/pipe_pool.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace superd {

// The descriptors one forwarded connection holds: client, backend, and the
// two ends of each of two pipes.
inline constexpr unsigned kForwardFds = 6;

class ForwardRelay final : public Relay {
public:
    // Takes the connection's fd; copies what it needs of `config`; takes
    // its pipes from `pipes` and gives them back, empty, when it ends.
    ForwardRelay(const ServiceConfig& config, Connection& connection, PipePool& pipes);
    ~ForwardRelay() override;

    void start(event_base* base, Closed closed) override;

private:
    // One way through the relay: from a socket, into a pipe, to the other.
    struct Direction {
        const char* from_name; // "client" or "backend", for messages
        const char* to_name;
        int from = -1;
        int to = -1;
        Pipe pipe{};
        size_t queued = 0;  // bytes in the pipe
        bool ended = false; // `from` has said EOF
        bool shut = false;  // ...and `to` has been told (SHUT_WR)
        bool grown = false; // its pipe has been made larger (a bulk transfer)
        uint64_t moved = 0;
    };
    static void on_io(evutil_socket_t, short, void* self);
    static void on_connect(evutil_socket_t, short what, void* self);

    void connected();
    // Moves what can be moved up (client to backend) and down; an error
    // ends the relay (and `this`).
    void pump(bool up, bool down);
    // The reason a direction failed, or nothing.
    std::optional<std::string> pump(Direction& d, const Direction& other, bool may_write);
    // Writes the PROXY header into header_; returns its length.
    size_t write_header();
    std::optional<std::string> send_header();
    void refuse(const char* reason, const std::string& error);
    void abort(const std::string& error);
    // The relay's last act: closes everything and reports.
    void finish(RelayEnd end);
    std::string moved() const;

    SocketAddress backend_;
    std::chrono::milliseconds connect_timeout_;
    ProxyVersion send_proxy_;
    SocketAddress peer_, local_;
    PipePool& pipes_;
    Closed closed_;

    UniqueFd client_, server_;
    Direction up_{.from_name = "client", .to_name = "backend"};
    Direction down_{.from_name = "backend", .to_name = "client"};
    // The connect, with connect_timeout as its timeout; then an event per
    // socket and way.
    Event connecting_;
    Interest client_read_, client_write_, server_read_, server_write_;
    // The PROXY header still to send, before any of the client's bytes.
    std::array<uint8_t, 232> header_{};
    size_t header_at_ = 0, header_length_ = 0;
};

// The forward row's relay function (builtin_kind.h).
std::unique_ptr<Relay> make_forward_relay(const ServiceConfig& config, Connection& connection, PipePool& pipes);

} // namespace superd

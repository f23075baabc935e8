// Connection: one accepted connection on its way from the listener to the
// handler of its service's kind. Every connection takes the same path:
//
//     accept -> header stage -> admission -> stage ... stage -> handler
//
// Admission (admission.h) decides and hands out the Ticket that counts the
// connection; the connection carries it, and then whatever serves it (a
// child, a builtin) does, until it ends. The stages are asynchronous steps,
// each with a deadline: a PROXY protocol header (proxy_stage.h) before
// admission, since it names the client admission judges; a TLS handshake
// (tls_stage.h) after it. A service without any has the daemon call the
// handler at once, on the stack: its connections cost no allocation and no
// system call more for the stages existing.
//
// A Pipeline owns the connections that are in a stage, with their fds and
// tickets, until each one is handed on, fails, or runs out of time; the
// last two close it and report why. Destroying the pipeline cancels them
// all. A connection keeps its service's stages alive (shared ownership)
// while it is in one: a reload may replace the service meanwhile.
//
// A stage may change what the handler gets: TLS hands it the plaintext end
// of a socketpair in place of the client's socket, with the facts of the
// handshake for a program's environment, and puts a Relay in the
// connection. A Relay is what of a connection outlives its handler's
// start: TLS relays between the client and the service's end of the
// socketpair, `forward` between the client and a backend. From the spawn on
// a child's relay belongs to the connection's Lifetime (children.h), and
// the connection ends only once its child's session has ended and its relay
// has closed; a builtin's TLS relay belongs to the daemon. The forward
// builtin makes its own and Builtins owns it (builtins.h). A connection
// without one carries a null pointer.
#pragma once

#include "superd/address.h"
#include "superd/admission.h"
#include "superd/clock.h"
#include "superd/fd.h"

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

struct event_base;

namespace superd {

// How a relay ended, for its owner to count and log.
struct RelayEnd {
    // A refusal reason (kRefusalReasons' name: "backend", "fds") when the
    // relay never got going; null when it ran.
    const char* refusal = nullptr;
    // For the log line, as key=value pairs: what it moved, or what went wrong.
    std::string detail;
};

// Something superd runs on the loop for a connection after its handler has
// started, until both of its ends are done.
class Relay {
public:
    using Closed = std::function<void(const RelayEnd& end)>;
    // Destroying a relay (superd stops) closes its fds and cancels its
    // events; `closed` is never called afterwards.
    virtual ~Relay() = default;
    // Begins relaying on `base`. `closed` runs once, when the relay is over
    // and its fds are closed: from the loop, or within start() when it
    // cannot begin at all (a backend refused at once). It may destroy the
    // relay, so it is the relay's last act, and start()'s caller must not
    // touch the relay after start() returns unless it owns it otherwise.
    virtual void start(event_base* base, Closed closed) = 0;
    // Every process of the child's session has ended (the daemon says so):
    // nothing reads the service's end any more, and a client that neither
    // sends nor closes must not keep the relay, and its connection, open.
    // It may call `closed`, as its last act.
    virtual void service_ended() {}
};

struct Connection {
    UniqueFd fd;
    SocketAddress peer;               // the client, as accept() named it
    SocketAddress local;              // the address it reached
    SocketAddress shown;              // who log lines name: the client, or for a unix socket the socket
    std::optional<ucred> credentials; // unix sockets (SO_PEERCRED)
    Admission::Ticket ticket;
    std::unique_ptr<Relay> relay;         // set by a stage (TLS): the handler starts it
    std::vector<std::string> environment; // "NAME=value" for a program, from the stages (TLS)
    // The PROXY header named no client (v2 LOCAL, v1 UNKNOWN): the
    // balancer's own connection, a health check. A builtin logs such a
    // connection at debug: one line at info every check would drown the rest.
    bool balancer_own = false;
};

// One step of the pipeline's middle, shared by every connection of the
// services that use it; each connection gets a Run of its own.
class Stage {
public:
    // A stage in progress on one connection. Destroying it (at the deadline,
    // or when superd stops) must cancel whatever it waits for: its events
    // and timers go with it, and it never calls back afterwards.
    class Run {
    public:
        virtual ~Run() = default;
    };
    // Called once by a run: no reason when the stage is done and the
    // connection goes on, else why it is refused (for the log line's
    // error="...").
    using Done = std::function<void(std::optional<std::string> failure)>;
    // A run's last act: calls `done` with `failure`, taken out of the run
    // first, since the call may destroy the run and `done` with it.
    static void finish(Done& done, std::optional<std::string> failure)
    {
        Done last = std::move(done);
        last(std::move(failure));
    }

    virtual ~Stage() = default;
    virtual const char* name() const = 0;
    // What a run waits for, for the message when it runs out of time:
    // "handshake timed out after 10000ms".
    virtual const char* awaiting() const { return "stage"; }
    virtual std::chrono::milliseconds deadline() const = 0;
    // Begins the stage on `connection`, which stays where it is until `done`
    // is called; a run may read and write its fd on `base`. `done` may be
    // called from within start() already.
    virtual std::unique_ptr<Run> start(event_base* base, Connection& connection, Done done) = 0;
};

class Pipeline {
public:
    // After the last stage: hands the connection to its service's handler.
    using Next = std::function<void(Connection& connection)>;
    // A stage failed or ran out of time; the connection closes after this.
    using Failed = std::function<void(Connection& connection, const Stage& stage, const std::string& reason)>;

    Pipeline(event_base* base, Timers& timers) : base_(base), timers_(timers) {}
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;

    // Takes `connection` through `stages`, then to `next`; with no stages,
    // `next` runs before run() returns. A run past its stage's deadline
    // fails with "timed out after Nms".
    void run(Connection connection, std::span<const std::shared_ptr<Stage>> stages, Next next, Failed failed);
    size_t in_progress() const { return flights_.size(); }

private:
    struct Flight {
        Connection connection;
        std::vector<std::shared_ptr<Stage>> stages; // its own: the service's may go by a reload
        size_t at = 0;
        Next next;
        Failed failed;
        std::unique_ptr<Stage::Run> run;
        std::unique_ptr<Timer> deadline;
        bool starting = false; // within start(): a `done` now finishes on return
        std::optional<std::optional<std::string>> outcome;
    };
    void advance(Flight* flight);
    void stage_done(Flight* flight, std::optional<std::string> failure);
    void finish(Flight* flight);

    event_base* base_;
    Timers& timers_;
    std::unordered_map<Flight*, std::unique_ptr<Flight>> flights_;
};

} // namespace superd

// Daemon: the running superserver. It owns the event base and all state:
// services, their listeners and launchers, the table of live children and
// the signal events. Nothing else in superd holds mutable global state.
//
// Flow: a listener accepts a connection, the daemon spawns the service's
// program with it and closes its own copy at once; SIGCHLD reaps and logs.
// Signals arrive as libevent events, never as work done in a handler:
// SIGCHLD reaps, SIGTERM and SIGINT stop accepting and end run() with 0
// (running services are left to finish their connections).
#pragma once

#include "superd/children.h"
#include "superd/config.h"
#include "superd/event.h"
#include "superd/listener.h"
#include "superd/result.h"
#include "superd/spawn.h"

#include <memory>
#include <optional>
#include <vector>

namespace superd {

class Daemon {
public:
    explicit Daemon(Config config);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens every listening socket. The error names the service and address
    // that could not be opened; the caller exits, nothing is left half-open.
    std::optional<Error> start();

    // Serves until SIGTERM or SIGINT; returns the process exit status.
    int run();

private:
    struct Service {
        ServiceConfig config;
        std::unique_ptr<Launcher> launcher;
        std::vector<std::unique_ptr<Listener>> listeners;
    };

    static void on_signal(evutil_socket_t signal, short, void* self);
    void handle_signal(int signal);
    void on_connection(Service& service, const Listener& listener, UniqueFd connection,
                       const SocketAddress& peer);
    void reap();

    EventBase base_; // first: destroyed after every event that refers to it
    Config config_;
    std::vector<std::unique_ptr<Service>> services_;
    std::vector<Event> signal_events_;
    ChildTable children_;
};

} // namespace superd

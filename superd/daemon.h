// Daemon: the running superserver. It owns the event base and all state:
// services, their listeners and launchers, the builtins, the table of live
// children, stderr pipes and the signal events. Nothing else in superd holds
// mutable global state.
//
// Flow: a listener accepts a connection, the daemon spawns the service's
// program with it and closes its own copy at once (or hands it to a
// builtin); SIGCHLD reaps and logs. A wait service's listener is paused while
// its child runs and resumed when it exits, paced with backoff if the child
// keeps exiting at once. Signals arrive as libevent events, never as work
// done in a handler: SIGCHLD reaps, SIGHUP reloads, SIGTERM and SIGINT stop
// accepting and end run() with 0 (running services finish undisturbed).
//
// A reload is a transaction: the new configuration is loaded and validated
// in full and every new socket is opened before anything changes; on any
// error the running configuration stays as it was. Sockets whose key
// (protocol and address) stays are handed over, not reopened, so no
// connection waiting in a backlog is lost. Running children are untouched.
#pragma once

#include "superd/builtins.h"
#include "superd/children.h"
#include "superd/config.h"
#include "superd/event.h"
#include "superd/listener.h"
#include "superd/result.h"
#include "superd/spawn.h"
#include "superd/stderr_log.h"

#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace superd {

class Daemon {
public:
    // `sources` is where a reload reads the configuration again.
    explicit Daemon(ConfigSources sources);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens every listening socket of `config`. The error names the service
    // and address that could not be opened; nothing is left half-open.
    std::optional<Error> start(Config config);

    // Serves until SIGTERM or SIGINT; returns the process exit status.
    int run();

private:
    struct Service {
        ServiceConfig config;
        std::unique_ptr<Launcher> launcher; // null for builtins
    };
    // One listening socket and what serves it.
    struct Slot {
        std::unique_ptr<Listener> listener;
        Service* service = nullptr;
        int quick_exits = 0; // wait services: children in a row that exited at once
    };

    static void on_signal(evutil_socket_t signal, short, void* self);
    void handle_signal(int signal);

    // Makes `config` the running configuration, or changes nothing.
    std::optional<Error> apply(Config config);
    void serve(Slot& slot);
    void reload();

    void on_connection(Slot& slot, UniqueFd connection, const SocketAddress& peer);
    void on_wait_ready(Slot& slot, const std::string& key);
    // Spawns `service` with `socket`; false when the spawn failed (logged).
    bool launch(Service& service, int socket, const Peer& peer, const SocketAddress& shown,
                const std::string& wait_listener);
    void reap();
    void child_exited(const ChildExit& exit);

    ConfigSources sources_;
    EventBase base_; // before every member that holds events
    UniqueFd dev_null_;
    std::vector<std::unique_ptr<Service>> services_;
    std::map<std::string, Slot> listeners_; // by SocketSpec::key()
    std::unique_ptr<Builtins> builtins_;
    std::unordered_map<StderrPipe*, std::unique_ptr<StderrPipe>> stderr_pipes_;
    std::vector<Event> signal_events_;
    ChildTable children_;
    bool started_ = false; // the first apply() is the start, later ones reloads
};

} // namespace superd

// Daemon: the running superserver. It owns the event base and all state:
// services, their listeners and launchers, the builtins, the table of live
// children, their deadlines, stderr pipes, counters and the signal events.
// Nothing else in superd holds mutable global state.
//
// Flow: a listener accepts a connection, the daemon admits it (access list,
// instances, per-source count, rates) or refuses it, then spawns the
// service's program with it and closes its own copy at once (or hands it to
// a builtin); SIGCHLD reaps and logs. Limits under on_limit = "queue" stop
// the listener before accept, so the kernel backlog holds the rest; a wait
// service's listener is held while its child runs. Signals arrive as
// libevent events, never as work done in a handler: SIGCHLD reaps, SIGHUP
// reloads, SIGUSR1 logs the counters, SIGTERM and SIGINT stop accepting and
// end run() with 0 (running services finish undisturbed).
//
// A connection lasts as long as its child's session: superd is a child
// subreaper, so processes a child leaves behind come back to it and are
// reaped, and a connection whose program exited while the rest of its
// process group lives on still counts (running, max_instances,
// max_children, its timeout) until the group is empty.
//
// A reload is a transaction: the new configuration is loaded and validated
// in full and every new socket is opened before anything changes; on any
// error the running configuration stays as it was. Sockets whose key
// (protocol and address) stays are handed over, not reopened, so no
// connection waiting in a backlog is lost. Running children, counters and
// per-service counts are kept by service name.
#pragma once

#include "superd/builtins.h"
#include "superd/children.h"
#include "superd/config.h"
#include "superd/event.h"
#include "superd/limits.h"
#include "superd/listener.h"
#include "superd/log.h"
#include "superd/result.h"
#include "superd/spawn.h"
#include "superd/stderr_log.h"

#include <sys/resource.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace superd {

// What happened to a service's connections; SIGUSR1 logs them.
struct Counters {
    uint64_t accepted = 0;
    uint64_t spawned = 0;
    uint64_t refused_acl = 0;
    uint64_t refused_limit = 0;
    uint64_t refused_source = 0;
    uint64_t refused_rate = 0;
    uint64_t refused_fds = 0;
    uint64_t failed_spawn = 0;
    uint64_t exited_ok = 0;
    uint64_t exited_error = 0;
    uint64_t exited_signal = 0;
    uint64_t timed_out = 0;
};

class Daemon {
public:
    // `sources` is where a reload reads the configuration again;
    // `child_nofile` is the fd limit to give children (see process.h).
    explicit Daemon(ConfigSources sources, std::optional<rlimit> child_nofile = std::nullopt);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens every listening socket of `config`. The error names the service
    // and address that could not be opened; nothing is left half-open.
    std::optional<Error> start(Config config);

    // Serves until SIGTERM or SIGINT; returns the process exit status.
    int run();

private:
    struct Slot;
    struct ServiceState;
    struct Service {
        ServiceConfig config;
        std::unique_ptr<Launcher> launcher; // null for builtins
        std::vector<Slot*> slots;
        ServiceState* state = nullptr; // in states_, by name: found once per load, not per connection
        std::optional<TokenBucket> bucket;
        std::unordered_map<SourceKey, TokenBucket, SourceKeyHash> source_buckets;
        size_t sweep_at = 4096; // when to forget full per-source buckets
        std::shared_ptr<StderrBudget> stderr_budget; // stderr = "log": lines a second, for all its children
    };
    // One listening socket and what serves it.
    struct Slot {
        std::unique_ptr<Listener> listener;
        Service* service = nullptr;
        int quick_exits = 0; // wait services: children in a row that exited at once, leaving their work
        std::optional<size_t> pending_at_spawn; // UDP wait services: the datagram the child was started for
        std::chrono::milliseconds fd_backoff{0};
        std::chrono::milliseconds spawn_backoff{0};
    };
    // Kept by service name across reloads.
    struct ServiceState {
        Counters counters;
        unsigned running = 0; // children and builtin connections
        std::unordered_map<SourceKey, unsigned, SourceKeyHash> per_source;
        Service* current = nullptr; // the configured service of this name, if any
    };
    // A child's timeout: SIGTERM to its process group, SIGKILL after grace.
    struct Deadline {
        Daemon* daemon = nullptr;
        pid_t pid = 0;
        std::string service;
        std::chrono::milliseconds grace{0};
        bool terminated = false;
        Event timer;
    };
    enum class Refusal { kAcl, kLimit, kSource, kRate, kFds };
    // A connection whose program has exited while other members of its
    // process group live on; keyed by that group (the program's pid).
    struct Lingering {
        Child child;
        Clock::time_point ended; // when the program itself exited
    };

    static void on_signal(evutil_socket_t signal, short, void* self);
    void handle_signal(int signal);

    // Makes `config` the running configuration, or changes nothing.
    std::optional<Error> apply(Config config);
    void serve(Slot& slot);
    void reload();
    void log_counters();

    bool may_accept(Slot& slot);
    void on_connection(Slot& slot, UniqueFd connection, const SocketAddress& peer);
    bool admit(Service& service, const SocketAddress& peer, std::optional<SourceKey>& source, Refusal& why);
    // Counts and logs a refusal; `connection` (or -1) gets the busy message.
    // Datagrams are logged at debug level: a flood must not flood the log.
    void refuse(Service& service, int connection, const SocketAddress& peer, Refusal why, bool datagram = false);
    void out_of_fds(Slot& slot);
    void on_wait_ready(Slot& slot, const std::string& key);
    // Spawns `service` with `socket`; false when the spawn failed (logged).
    bool launch(Slot& slot, int socket, const Peer& peer, const SocketAddress& shown,
                const std::string& wait_listener, const std::optional<SourceKey>& source);
    // A child or builtin connection of `service` has ended.
    void finished(const std::string& service, const std::optional<SourceKey>& source);
    void reap();
    // Blocks SIGCHLD while every child has a pidfd and no connection
    // lingers, unblocks it otherwise.
    void watch_sigchld();
    static void on_orphan_sweep(evutil_socket_t, short, void* self);
    void child_exited(const ChildExit& exit);
    // Ends the lingering connections whose process group is empty; or the
    // one of `group`, whatever its state.
    void end_lingering();
    void end_lingering(pid_t group);
    void session_ended(pid_t pid, const Child& child, Clock::time_point program_ended);
    size_t live_children() const { return children_.size() + lingering_.size(); }
    static void on_deadline(evutil_socket_t, short, void* deadline);

    ConfigSources sources_;
    std::optional<rlimit> child_nofile_;
    EventBase base_; // before every member that holds events
    LogAttachment log_attachment_; // the log's queue is written from base_ until this goes
    UniqueFd dev_null_;
    UniqueFd reserve_fd_; // given up to drain a connection when out of fds
    std::vector<std::unique_ptr<Service>> services_;
    std::map<std::string, Slot> listeners_; // by SocketSpec::key()
    std::map<std::string, ServiceState> states_;
    std::optional<unsigned> max_children_;
    std::unique_ptr<Builtins> builtins_;
    std::unordered_map<StderrPipe*, std::unique_ptr<StderrPipe>> stderr_pipes_;
    std::unordered_map<pid_t, std::unique_ptr<Deadline>> deadlines_; // by the program's pid, its group
    std::unordered_map<pid_t, Lingering> lingering_;
    Event orphan_sweep_;
    std::vector<Event> signal_events_;
    ChildTable children_;
    bool sigchld_blocked_ = false;
    bool started_ = false; // the first apply() is the start, later ones reloads
};

} // namespace superd

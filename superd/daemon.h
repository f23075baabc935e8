// Daemon: the running superserver. It owns the event base and all state,
// and wires the modules together; the decisions are theirs:
// admission.h admits, connection.h carries a connection through its stages,
// launcher.h spawns, children.h reaps and times out, listener.h holds a
// socket's events. Nothing else in superd holds mutable global state.
//
// Flow: a listener accepts a connection; it becomes a Connection, whose
// PROXY header (if the service expects one, from proxy_from) names its
// client; its service's Admission admits it (access list, instances,
// per-source count, rates) or refuses it; it then goes through the
// service's stages (a TLS handshake), and last to the handler of the
// service's kind (the table kKinds):
// spawn a program for it, or serve it as a builtin. Wait services and UDP
// builtins are not accepted: their kind's handler takes the readable socket
// itself, lending it to a child or answering its datagrams. SIGCHLD and
// pidfds reap and log. Limits under on_limit = "queue" stop the listener
// before accept, so the kernel backlog holds the rest; a wait service's
// listener is held while its child runs. Signals arrive as libevent events,
// never as work done in a handler: SIGCHLD reaps, SIGHUP reloads, SIGUSR1
// logs the counters, SIGTERM and SIGINT stop accepting and end run() with 0
// (running services finish undisturbed), SIGUSR2 upgrades.
//
// An upgrade (upgrade.h) starts the superd binary at superd's path with
// every socket superd listens on, the control socket included. Once the
// new process says it serves, this one hands over: its listeners close
// without removing a socket file, it tells the service manager the new
// main pid, refuses reloads and upgrades, and ends run() with 0 when its
// last connection (child, lingering group, relay, builtin, stage, control
// client) has ended. Until then nothing has changed: a failed upgrade
// leaves this superd serving as before.
//
// A connection lasts as long as its child's session: superd is a child
// subreaper, so processes a child leaves behind come back to it and are
// reaped, and a connection whose program exited while the rest of its
// process group lives on still counts (running, max_instances,
// max_children, its timeout) until the group is empty. What counts it is its
// admission ticket, which moves with it from the connection to its child's
// Lifetime. A connection with a relay (a program behind TLS) lasts until
// its session has ended and its relay has closed, in either order: a
// session that ends first leaves the connection in relaying_, still counted.
//
// A reload is a transaction: the new configuration is loaded and validated
// in full and every new socket is opened before anything changes; on any
// error the running configuration stays as it was. Sockets whose key
// (protocol and address) stays are handed over, not reopened, so no
// connection waiting in a backlog is lost. What is kept by service name
// (ServiceState: counters and admission, with its counts and buckets)
// outlives every configuration; a Service and its Slots are rebuilt.
//
// The control socket (control.h) is part of the configuration: opened with
// the listeners, moved or closed by a reload. Its commands, the daemon's
// answers to superctl, are in daemon_control.cpp; a pause is a hold on the
// service's listeners, kept in its ServiceState so that it outlives reloads.
// The metrics builtin's page is made in daemon_metrics.cpp.
#pragma once

#include "superd/activation.h"
#include "superd/admission.h"
#include "superd/builtins.h"
#include "superd/children.h"
#include "superd/clock.h"
#include "superd/config.h"
#include "superd/connection.h"
#include "superd/control.h"
#include "superd/counters.h"
#include "superd/event.h"
#include "superd/launcher.h"
#include "superd/limits.h"
#include "superd/listener.h"
#include "superd/log.h"
#include "superd/notify.h"
#include "superd/result.h"
#include "superd/stderr_log.h"
#include "superd/upgrade.h"

#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace superd {

// What the daemon acts on the world through, so that tests can drive its
// timing (pacing, backoff, a wait service's hold) with fakes. Each one left
// empty is the real one: a Launcher, libevent's timers on the daemon's own
// loop, the system's process sessions. What is given must outlive the daemon.
struct DaemonSeams {
    // Makes a service's spawner, once per load of the service.
    std::function<std::unique_ptr<Spawner>(const ServiceConfig& config)> spawner;
    Timers* timers = nullptr;
    Sessions* sessions = nullptr;
    // Tells the service manager (notify.h): main gives the one from the
    // environment; left empty, no one is told.
    Notifier notifier;
    // How to start superd again for an upgrade (upgrade.h): main gives its
    // own command line; left empty, upgrades are refused.
    std::optional<SelfCommand> self;
    // This superd is an upgrade's new process: the old one tells the
    // service manager that it took over (MAINPID=), so start() does not say
    // READY=1, which the manager would refuse from a process not yet its main.
    bool replacing = false;
};

class Daemon {
public:
    // `sources` is where a reload reads the configuration again;
    // `child_nofile` is the fd limit to give children (see process.h).
    explicit Daemon(ConfigSources sources, std::optional<rlimit> child_nofile = std::nullopt, DaemonSeams seams = {});
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens every listening socket of `config`, taking the `inherited` one
    // of each address instead where there is one (activation.h), and closes
    // the inherited sockets left over. The error names the service and
    // address that could not be opened; nothing is left half-open.
    std::optional<Error> start(Config config, InheritedSockets inherited = {});

    // Serves until SIGTERM or SIGINT, or until an upgrade's new process
    // serves and this one's last connection has ended; returns the process
    // exit status.
    int run();

private:
    struct Slot;
    struct ServiceState;
    // A kind of service and its handler: an accepting kind serves each
    // connection once admitted and through the stages; a watching kind
    // takes the readable socket itself.
    struct Kind {
        const char* name;
        bool (*matches)(const ServiceConfig& config);
        void (Daemon::*serve)(Slot& slot, Connection& connection); // accepting kinds
        void (Daemon::*ready)(Slot& slot);                         // watching kinds
    };
    static const Kind kKinds[4];
    static const Kind& kind_for(const ServiceConfig& config);
    struct Service {
        ServiceConfig config;
        const Kind* kind = nullptr;                        // the row of kKinds that serves it
        std::unique_ptr<Spawner> launcher;                 // null for builtins
        std::vector<std::shared_ptr<Stage>> header_stages; // before admission (a PROXY header)
        std::vector<std::shared_ptr<Stage>> stages;        // between admission and the handler (TLS)
        std::vector<Slot*> slots;
        ServiceState* state = nullptr;               // in states_, by name: found once per load, not per connection
        std::shared_ptr<StderrBudget> stderr_budget; // stderr = "log": lines a second, for all its children
    };
    // One listening socket and what serves it.
    struct Slot {
        std::unique_ptr<Listener> listener;
        Service* service = nullptr;
        QuickExitPacer pacer;                   // wait services: children that exit at once, leaving their work
        std::optional<size_t> pending_at_spawn; // UDP wait services: the datagram the child was started for
        Backoff fd_backoff;                     // accept out of descriptors
        Backoff spawn_backoff;                  // spawns out of processes, memory or descriptors
        Slot();
    };
    // Kept by service name across reloads.
    struct ServiceState {
        Counters counters;
        Admission admission;
        Service* current = nullptr; // the configured service of this name, if any
        bool paused = false;        // by superctl: its listeners are held until it is resumed
    };
    // A connection whose program has exited while other members of its
    // process group live on; keyed by that group (the program's pid).
    struct Lingering {
        Child child;
        Clock::time_point ended; // when the program itself exited
    };
    // A connection whose session has ended while its relay is still open.
    struct Relaying {
        pid_t pid; // its program's
        Child child;
    };
    // In kRefusalReasons' order.
    enum class Refusal { kAcl, kLimit, kSource, kRate, kFds };
    // How a reload went, for status(), superctl and the metrics.
    struct ReloadOutcome {
        bool ok = false;
        std::string message; // the "reloaded ..." line, or the error
        std::chrono::system_clock::time_point when;
    };
    // How the last upgrade went, for superctl.
    struct UpgradeState {
        pid_t pid = 0;      // the new process, 0 if none could be started
        const char* state;  // "starting", "ready" or "failed"
        std::string reason; // why it failed
        std::chrono::system_clock::time_point when;
    };

    static void on_signal(evutil_socket_t signal, short, void* self);
    void handle_signal(int signal);

    // Makes `config` the running configuration, or changes nothing.
    std::optional<Error> apply(Config config);
    // Sets up `slot`'s listener for its service's kind.
    void watch(Slot& slot);
    // Loads the configuration again and applies it, or keeps the running
    // one; `trigger` says who asked, for the log.
    const ReloadOutcome& reload(std::string_view trigger);
    void log_counters();
    void warn_fd_budget() const;
    // Starts an upgrade's new process (upgrade.h); `trigger` says who asked,
    // for the log. The error: it could not be started (logged).
    Result<pid_t> upgrade(std::string_view trigger);
    void upgrade_done(const Upgrade::Outcome& outcome);
    // The new process serves: stop accepting, leaving it the sockets, and
    // exit once the last connection has ended.
    void hand_over(pid_t successor);
    void exit_if_drained();
    // The service manager's one-line status (STATUS=).
    std::string status() const;
    // The metrics builtin's page: every service's counters and superd's
    // own, in Prometheus' text format (daemon_metrics.cpp).
    std::string metrics() const;
    // The reply to one request on the control socket (daemon_control.cpp,
    // where the commands are).
    std::string control(std::string_view request, const ControlPeer& peer);
    friend struct ControlCommands;

    bool may_accept(Slot& slot);
    void on_connection(Slot& slot, UniqueFd fd, const SocketAddress& peer);
    // Admission, then the stages, then the handler.
    void admit(Slot& slot, Connection& connection);
    // A stage refused a connection of service `name`: counted, logged, ended.
    void stage_failed(const std::string& name, Connection& connection, const Stage& stage, const std::string& reason);
    // The handlers, one per kind of service (kKinds).
    void spawn_for(Slot& slot, Connection& connection);
    void serve_builtin(Slot& slot, Connection& connection);
    void lend_to_child(Slot& slot);
    void answer_datagrams(Slot& slot);
    // Counts and logs a refusal; `connection` (or -1) gets the busy message.
    // Datagrams are logged at debug level: a flood must not flood the log.
    void refuse(Service& service, int connection, const SocketAddress& peer, Refusal why, bool datagram = false);
    void log_refusal(const std::string& service, const SocketAddress& peer, std::string_view reason,
                     bool datagram = false);
    // A builtin's connection has ended: how, if its relay says.
    void builtin_closed(const std::string& name, Admission::Ticket ticket, const SocketAddress& peer,
                        const RelayEnd& end);
    // accept() ran out of descriptors or memory.
    void shortage(Slot& slot, int error);
    void out_of_fds(Slot& slot);
    // Spawns `service` with `socket`; false when the spawn failed (logged).
    // The child takes `ticket`.
    bool launch(Slot& slot, int socket, const Peer& peer, const SocketAddress& shown, const std::string& wait_listener,
                Admission::Ticket ticket, std::unique_ptr<Relay> relay = nullptr);
    // A child or builtin connection of service `name` has ended.
    void finished(const std::string& name, Admission::Ticket ticket);
    void reap();
    // Blocks SIGCHLD while every child has a pidfd and no connection
    // lingers, unblocks it otherwise.
    void watch_sigchld();
    void sweep_orphans();
    void child_exited(ChildExit& exit);
    void wait_child_exited(const Child& child, Clock::duration ran);
    // Ends the lingering connections whose process group is empty; or the
    // one of `group`, whatever its state.
    void end_lingering();
    void end_lingering(pid_t group);
    void session_ended(pid_t pid, Child& child, Clock::time_point program_ended);
    // The session of `child` (program `pid`) is over; so is its connection
    // unless its relay is still open.
    void session_over(pid_t pid, Child& child);
    // Relay `relay` of the connection whose program is `pid` has closed.
    void relay_closed(pid_t pid, Relay* relay);
    size_t live_children() const { return children_.size() + lingering_.size() + relaying_.size(); }

    ConfigSources sources_;
    std::optional<rlimit> child_nofile_;
    EventBase base_; // before every member that holds events
    EventTimers event_timers_{base_.get()};
    SystemSessions system_sessions_;
    Timers& timers_;     // event_timers_, unless a test gave its own
    Sessions& sessions_; // system_sessions_, likewise
    std::function<std::unique_ptr<Spawner>(const ServiceConfig&)> make_spawner_; // empty: a Launcher
    LogAttachment log_attachment_; // the log's queue is written from base_ until this goes
    Notifier notifier_;            // its watchdog runs on base_
    // How the reloads went, for status(), superctl and the metrics.
    std::optional<ReloadOutcome> last_reload_; // none before the first
    uint64_t reloads_ok_ = 0;
    uint64_t reloads_failed_ = 0;
    std::chrono::system_clock::time_point started_at_ = std::chrono::system_clock::now();
    std::chrono::system_clock::time_point applied_at_ = started_at_; // the running configuration's load
    UniqueFd dev_null_;
    UniqueFd reserve_fd_; // given up to drain a connection when out of fds
    std::vector<std::unique_ptr<Service>> services_;
    std::map<std::string, Slot> listeners_; // by SocketSpec::key()
    InheritedSockets inherited_;            // until start() has taken what it serves
    // Before everything that holds a ticket (children, lingering
    // connections, builtin connections, the pipeline): tickets point here.
    std::map<std::string, ServiceState> states_;
    std::optional<unsigned> max_children_;
    std::unique_ptr<Builtins> builtins_;
    std::unordered_map<StderrPipe*, std::unique_ptr<StderrPipe>> stderr_pipes_;
    std::unordered_map<pid_t, std::unique_ptr<Deadline>> deadlines_; // by the program's pid, its group
    Pipeline pipeline_{base_.get(), timers_};                        // connections in a stage
    std::unordered_map<pid_t, Lingering> lingering_;
    // Connections whose session has ended while their relay is still open.
    std::unordered_map<Relay*, Relaying> relaying_;
    // The TLS relays of builtins' connections, until each has closed.
    std::unordered_map<Relay*, std::unique_ptr<Relay>> tls_relays_;
    std::unique_ptr<Timer> orphan_sweep_;   // sweep_orphans(), every kOrphanSweep
    std::vector<std::string> config_files_; // every file the running configuration was read from
    std::unique_ptr<ControlServer> control_;
    // Replaced by a reload (the socket moved) while answering: freed by the
    // sweep once their last connection has ended.
    std::vector<std::unique_ptr<ControlServer>> retired_controls_;
    std::vector<Event> signal_events_;
    ChildTable children_;
    bool sigchld_blocked_ = false;
    bool started_ = false; // the first apply() is the start, later ones reloads
    std::optional<SelfCommand> self_;
    bool replacing_ = false;
    std::unique_ptr<Upgrade> upgrade_;         // the last one, until the next
    std::optional<UpgradeState> last_upgrade_; // none before the first
    std::optional<pid_t> handed_to_;           // the new process, once it serves
    std::unique_ptr<Timer> drain_check_;       // exit_if_drained(), once the current event is done
};

} // namespace superd

#include "superd/daemon.h"

#include "superd/forward.h"

#include "superd/log.h"
#include "superd/proxy_stage.h"
#include "superd/tls_stage.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace superd {

namespace {

constexpr int kSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};

// Out of memory at accept: the listener rests this long.
constexpr std::chrono::milliseconds kOutOfMemoryPause{1000};
// How often orphans and emptied process groups are looked for.
constexpr std::chrono::milliseconds kOrphanSweep{1000};

SocketSpec spec_for(const ServiceConfig& service, const ListenAddress& listen)
{
    return SocketSpec{service.protocol,    listen.address,     service.backlog,   service.reuse_port,
                      service.socket_mode, service.socket_uid, service.socket_gid};
}

UniqueFd open_null() { return UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC)); }

// The datagram at the head of a UDP socket's queue, as a fingerprint of its
// source, length and first bytes; nothing when none waits.
std::optional<size_t> head_datagram(int fd)
{
    SocketAddress source;
    std::array<char, 512> head;
    iovec iov{head.data(), head.size()};
    msghdr msg{};
    msg.msg_name = source.get();
    msg.msg_namelen = sizeof source.storage;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0)
        return std::nullopt;
    std::hash<std::string_view> hash;
    size_t kept = std::min(static_cast<size_t>(n), head.size());
    return hash(std::string_view(head.data(), kept))
           ^ (hash(std::string_view(reinterpret_cast<const char*>(&source.storage), msg.msg_namelen)) << 1)
           ^ (static_cast<size_t>(n) << 3);
}

// Did a wait child leave its socket as it found it? A UDP program that never
// reads keeps the datagram it was started for at the head of the queue; a
// stream program that never accepts leaves the socket readable. Either one,
// respawned at once, would spin; a program that did its work and exited
// must never be slowed down (tftpd serves one request per run). Not told
// apart: a program that took its datagram when an identical one (same
// source, length and first 512 bytes: a retransmission) waits behind it.
bool left_undone(int fd, Protocol protocol, const std::optional<size_t>& pending_at_spawn)
{
    if (protocol == Protocol::kUdp)
        return pending_at_spawn && head_datagram(fd) == pending_at_spawn;
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

// Lifecycle lines name a connection's client, or a wait service's socket.
const char* who_key(const Child& child) { return child.wait_listener.empty() ? "peer" : "listen"; }

} // namespace

// The kinds of service, the first row that matches a configuration
// serving it.
const Daemon::Kind Daemon::kKinds[] = {
    {"builtin datagram", [](const ServiceConfig& c) { return c.builtin && c.protocol == Protocol::kUdp; }, nullptr,
     &Daemon::answer_datagrams},
    {"builtin stream", [](const ServiceConfig& c) { return bool(c.builtin); }, &Daemon::serve_builtin, nullptr},
    {"wait", [](const ServiceConfig& c) { return c.mode == Mode::kWait; }, nullptr, &Daemon::lend_to_child},
    {"spawn", [](const ServiceConfig&) { return true; }, &Daemon::spawn_for, nullptr},
};

const Daemon::Kind& Daemon::kind_for(const ServiceConfig& config)
{
    for (const Kind& kind : kKinds)
        if (kind.matches(config))
            return kind;
    return kKinds[std::size(kKinds) - 1];
}

Daemon::Slot::Slot()
    : pacer(kWaitPacing), fd_backoff(kFirstBackoff, kMaxBackoff), spawn_backoff(kFirstBackoff, kMaxBackoff)
{
}

Daemon::Daemon(ConfigSources sources, std::optional<rlimit> child_nofile, DaemonSeams seams)
    : sources_(std::move(sources)), child_nofile_(child_nofile), base_(event_base_new()),
      timers_(seams.timers ? *seams.timers : event_timers_),
      sessions_(seams.sessions ? *seams.sessions : system_sessions_), make_spawner_(std::move(seams.spawner)),
      notifier_(std::move(seams.notifier)), self_(std::move(seams.self)), replacing_(seams.replacing)
{
}

std::optional<Error> Daemon::start(Config config, InheritedSockets inherited)
{
    inherited_ = std::move(inherited);
    if (!base_)
        return Error{"cannot create the event loop"};
    log_attachment_ = attach_logging(base_.get());
    dev_null_ = open_null();
    reserve_fd_ = open_null();
    if (!dev_null_ || !reserve_fd_)
        return Error{std::string("cannot open /dev/null: ") + std::strerror(errno)};
    builtins_ = std::make_unique<Builtins>(
        base_.get(),
        [this](const std::string& service, Admission::Ticket ticket, const SocketAddress& peer, const RelayEnd& end) {
            builtin_closed(service, std::move(ticket), peer, end);
        },
        [this] { return metrics(); });
    // What a service leaves behind comes back to superd when its parent
    // exits: reaped, never a zombie, and counted against its connection.
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        spdlog::warn("cannot become a child subreaper: {}", std::strerror(errno));
    orphan_sweep_ = timers_.timer([this] {
        sweep_orphans();
        orphan_sweep_->arm(kOrphanSweep);
    });
    if (!orphan_sweep_->valid())
        return Error{"cannot set the timer that reaps orphans"};
    orphan_sweep_->arm(kOrphanSweep);
    drain_check_ = timers_.timer([this] { exit_if_drained(); });
    if (!drain_check_->valid())
        return Error{"cannot set the timer that ends an upgraded superd"};
    children_.watch_pidfds(base_.get(), [this](ChildExit& exit) { child_exited(exit); });

    // Signals first, so that no child can end unnoticed.
    for (int signal : kSignals) {
        Event ev(evsignal_new(base_.get(), signal, on_signal, this));
        if (!ev || event_add(ev.get(), nullptr) != 0)
            return Error{std::string("cannot watch SIG") + sigabbrev_np(signal)};
        signal_events_.push_back(std::move(ev));
    }
    watch_sigchld();
    // An inherited socket of the wrong kind must fail the start before
    // anything is bound or a stale unix socket file removed in its place.
    std::vector<SocketSpec> wanted;
    for (const ServiceConfig& sc : config.services)
        for (const ListenAddress& la : sc.listen)
            wanted.push_back(spec_for(sc, la));
    if (!config.control.path.empty())
        wanted.push_back(ControlServer::socket_spec(config.control));
    if (auto error = inherited_.mismatch(wanted))
        return error;
    if (auto error = apply(std::move(config)))
        return error;
    inherited_.close_rest();
    for (const auto& [key, slot] : listeners_)
        spdlog::info("listening service={} listen={}", slot.service->config.name, slot.listener->address());
    spdlog::info("ready services={} listeners={} pid={}", services_.size(), listeners_.size(), getpid());
    if (!replacing_)
        notifier_.ready(status());
    // Fed from the loop itself: a loop that is stuck stops feeding it.
    notifier_.start_watchdog(base_.get());
    return std::nullopt;
}

int Daemon::run()
{
    if (event_base_dispatch(base_.get()) < 0) {
        spdlog::error("event loop failed");
        return 1;
    }
    return 0;
}

std::optional<Error> Daemon::apply(Config config)
{
    // Open what is new. Until the commit below, failing changes nothing:
    // `next` closes what it opened.
    std::map<std::string, Slot> next;
    for (const ServiceConfig& sc : config.services) {
        for (const ListenAddress& la : sc.listen) {
            SocketSpec spec = spec_for(sc, la);
            std::string key = spec.key();
            if (listeners_.count(key) || next.count(key))
                continue;
            UniqueFd inherited = inherited_.take(spec);
            auto listener = inherited ? Listener::adopt(std::move(inherited), spec) : Listener::open(spec);
            if (!listener)
                return Error{"service '" + sc.name + "': " + listener.error()};
            next[key].listener = std::move(*listener);
        }
    }

    // The control socket, last: nothing after it can fail. One that moves
    // is opened anew; one that stays only takes its new group.
    const std::string& control_path = control_ ? control_->settings().path : std::string();
    bool control_moves = control_path != config.control.path;
    std::unique_ptr<ControlServer> control;
    if (control_moves && !config.control.path.empty()) {
        auto opened = ControlServer::open(
            base_.get(), timers_, config.control,
            [this](std::string_view request, const ControlPeer& peer) { return this->control(request, peer); },
            inherited_.take(ControlServer::socket_spec(config.control)));
        if (opened)
            control = std::move(*opened);
        else if (config.control.required)
            return Error{opened.error()};
        else
            spdlog::warn("no control socket: {} (set [superd] control to a path superd may create, or \"\")",
                         opened.error());
    }

    // Commit: nothing below can fail.
    if (control_moves) {
        // Its connections may be the one asking for this reload: it stops
        // listening now, and goes once they have.
        if (control_) {
            control_->close_listener();
            retired_controls_.push_back(std::move(control_));
        }
        control_ = std::move(control);
    } else if (control_ && control_->settings() != config.control) {
        if (auto e = control_->regroup(config.control))
            spdlog::warn("control={} reason=\"{}\"", config.control.path, e->message);
    }
    config_files_ = std::move(config.files);
    std::vector<std::unique_ptr<Service>> services;
    size_t kept = 0, opened = next.size();
    auto now = timers_.now();
    for (ServiceConfig& sc : config.services) {
        auto service = std::make_unique<Service>();
        service->kind = &kind_for(sc);
        if (!sc.builtin)
            service->launcher = make_spawner_ ? make_spawner_(sc) : std::make_unique<Launcher>(sc, child_nofile_);
        ServiceState& state = states_[sc.name]; // counters start at zero
        // Admission keeps the buckets of an unchanged rate, as counters
        // carry on: a reload must not hand out a fresh burst.
        state.admission.configure(sc, now);
        if (sc.stderr_target == StderrTarget::kLog)
            service->stderr_budget =
                StderrBudget::keep_or_make(state.current ? state.current->stderr_budget : nullptr, base_.get(), sc.name,
                                           sc.stderr_rate, sc.stderr_burst, now);
        service->state = &state;
        // The stages: a PROXY header before admission, TLS after it, with a
        // context loaded with this configuration, so that a reload serves new
        // connections with the certificate files as they are now.
        if (sc.proxy_protocol)
            service->header_stages.push_back(std::make_shared<ProxyStage>(*sc.proxy_protocol, sc.proxy_timeout));
        if (sc.tls_context) {
            service->stages.push_back(std::make_shared<TlsStage>(sc.tls_context));
            for (const std::string& warning : sc.tls_warnings)
                spdlog::warn("service={} tls=\"{}\"", sc.name, warning);
        }
        service->config = std::move(sc);
        for (const ListenAddress& la : service->config.listen) {
            SocketSpec spec = spec_for(service->config, la);
            std::string key = spec.key();
            Slot& slot = next[key];
            if (!slot.listener) {
                Slot& old = listeners_[key];
                slot.listener = std::move(old.listener);
                slot.pacer = old.pacer;
                slot.pending_at_spawn = old.pending_at_spawn;
                if (auto e = slot.listener->apply_settings(spec))
                    spdlog::warn("service={} listen={} reason=\"{}\"", service->config.name, la.address, e->message);
                ++kept;
            }
            slot.service = service.get();
            service->slots.push_back(&slot);
        }
        services.push_back(std::move(service));
    }
    size_t closed = 0;
    for (const auto& [key, slot] : listeners_)
        closed += slot.listener ? 1 : 0;
    listeners_ = std::move(next); // closes the sockets no service uses any more
    for (auto& [name, state] : states_)
        state.current = nullptr;
    services_ = std::move(services);
    for (auto& service : services_)
        service->state->current = service.get();
    warn_fd_budget();
    // A service the reload removed keeps its counts (its connections run
    // on) but not its rates: one of its name that comes back starts anew.
    for (auto& [name, state] : states_)
        if (!state.current)
            state.admission.retire();
    max_children_ = config.max_children;
    builtins_->refresh_interfaces();
    // UDP builtins stay silent to these source ports: answering one loops.
    std::vector<uint16_t> udp_ports;
    for (const auto& [key, slot] : listeners_)
        if (slot.listener->spec().protocol == Protocol::kUdp)
            udp_ports.push_back(slot.listener->address().port());
    builtins_->set_udp_ports(std::move(udp_ports));
    for (auto& [key, slot] : listeners_) {
        // Limits may have changed: the gate puts back whatever still applies.
        slot.listener->release(kHoldServiceFull);
        slot.listener->release(kHoldAllFull);
        // A pause outlives reloads, and belongs to a service, not a socket.
        if (slot.service->state->paused)
            slot.listener->hold(kHoldPaused);
        else
            slot.listener->release(kHoldPaused);
        watch(slot);
    }
    if (started_) {
        std::string line = fmt::format("reloaded services={} listeners={} kept={} opened={} closed={}",
                                       services_.size(), listeners_.size(), kept, opened, closed);
        spdlog::info("{}", line);
        last_reload_ = ReloadOutcome{true, std::move(line), std::chrono::system_clock::now()};
        applied_at_ = last_reload_->when;
    }
    started_ = true;
    return std::nullopt;
}

void Daemon::watch(Slot& slot)
{
    const Service& service = *slot.service;
    Listener& listener = *slot.listener;
    Slot* s = &slot;
    if (service.kind->ready) {
        listener.watch_with(base_.get(), timers_, [this, s] { (this->*s->service->kind->ready)(*s); });
        return;
    }
    listener.accept_with(
        base_.get(), timers_,
        Listener::AcceptHooks{
            [this, s](UniqueFd fd, const SocketAddress& peer) { on_connection(*s, std::move(fd), peer); },
            [this, s] { return may_accept(*s); },
            [this, s](int error) { shortage(*s, error); },
            // The loop reads them itself.
            bool(service.config.builtin) || !service.stages.empty() || !service.header_stages.empty(),
        });
}

const Daemon::ReloadOutcome& Daemon::reload(std::string_view trigger)
{
    spdlog::info("reloading {}", trigger);
    notifier_.reloading();
    std::optional<std::string> refused;
    if (handed_to_) {
        refused = fmt::format("this superd has handed its sockets to pid {}, which reloads", *handed_to_);
    } else if (auto config = load_config(sources_); !config) {
        refused = config.error();
    } else if (auto error = apply(std::move(*config))) {
        refused = error->message;
    }
    if (refused) {
        spdlog::error("reload failed reason=\"{}\" (the running configuration stays)", *refused);
        last_reload_ = ReloadOutcome{false, std::move(*refused), std::chrono::system_clock::now()};
        ++reloads_failed_;
    } else {
        ++reloads_ok_; // apply() has recorded its line
    }
    // Ready again either way: a refused reload leaves the old configuration serving.
    notifier_.ready(status());
    return *last_reload_;
}

std::string Daemon::status() const
{
    std::string line =
        fmt::format("services: {}, listeners: {}, running: {}", services_.size(), listeners_.size(), live_children());
    if (last_reload_)
        line += last_reload_->ok ? "; last reload applied" : "; last reload refused: " + last_reload_->message;
    return line;
}

// A forward at max_instances can need more descriptors than superd may
// open: said at load, or its connections would be refused (refused_fds)
// without warning.
void Daemon::warn_fd_budget() const
{
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur == RLIM_INFINITY)
        return;
    for (const auto& service : services_) {
        const ServiceConfig& c = service->config;
        // A forward's six; TLS's client socket and its end of the socketpair.
        unsigned held = (c.builtin == find_builtin("forward") ? kForwardFds : 0) + (c.tls ? 2 : 0);
        if (held > 0 && c.max_instances && uint64_t{*c.max_instances} * held > nofile.rlim_cur)
            spdlog::warn("service={} reason=\"max_instances={} connections hold {} descriptors each in superd, more "
                         "than its limit of {}\"",
                         c.name, *c.max_instances, held, nofile.rlim_cur);
    }
}

void Daemon::log_counters()
{
    for (const auto& [name, st] : states_) {
        const Counters& c = st.counters;
        std::string refused;
        for (const RefusalReason& row : kRefusalReasons)
            refused += fmt::format(" refused_{}={}", row.name, c.*row.counter);
        spdlog::info("counters service={} running={} accepted={} spawned={}{} failed_spawn={} exited_ok={} "
                     "exited_error={} exited_signal={} timed_out={}",
                     name, st.admission.running(), c.accepted, c.spawned, refused, c.failed_spawn, c.exited_ok,
                     c.exited_error, c.exited_signal, c.timed_out);
    }
    spdlog::info("counters children={} lingering={} builtin_connections={} stderr_pipes={} pooled_pipes={}",
                 children_.size(), lingering_.size(), builtins_->connections(), stderr_pipes_.size(),
                 builtins_->pooled_pipes());
}

Result<pid_t> Daemon::upgrade(std::string_view trigger)
{
    std::optional<std::string> refused;
    if (handed_to_)
        refused = fmt::format("this superd has handed its sockets to pid {} already", *handed_to_);
    else if (upgrade_ && upgrade_->pending())
        refused = fmt::format("an upgrade is under way (pid {})", upgrade_->pid());
    else if (!self_)
        refused = "this superd was not given its command line, to start again";
    if (refused) {
        spdlog::warn("upgrade refused {} reason=\"{}\"", trigger, *refused);
        return Error{*refused};
    }
    // Every socket superd listens on; LISTEN_FDNAMES separates names with ':'.
    std::vector<HandedSocket> sockets;
    for (const auto& [key, slot] : listeners_) {
        std::string name = slot.service->config.name;
        std::replace(name.begin(), name.end(), ':', '_');
        sockets.push_back(HandedSocket{slot.listener->fd(), std::move(name)});
    }
    if (control_ && control_->fd() >= 0)
        sockets.push_back(HandedSocket{control_->fd(), "control"});
    // superd's environment (the service manager's variables were taken out
    // of it at start), and those the new process must find again.
    std::vector<std::string> environment;
    for (char** e = environ; *e; ++e)
        environment.emplace_back(*e);
    for (std::string& told : notifier_.environment())
        environment.push_back(std::move(told));
    auto started = Upgrade::start(base_.get(), timers_, *self_, sockets, environment, child_nofile_,
                                  [this](const Upgrade::Outcome& outcome) { upgrade_done(outcome); });
    if (!started) {
        spdlog::error("upgrade failed {} reason=\"{}\" (this superd serves on)", trigger, started.error());
        last_upgrade_ = UpgradeState{0, "failed", started.error(), std::chrono::system_clock::now()};
        return Error{started.error()};
    }
    upgrade_ = std::move(*started);
    spdlog::info("upgrade started pid={} program={} sockets={} {}", upgrade_->pid(), self_->program, sockets.size(),
                 trigger);
    last_upgrade_ = UpgradeState{upgrade_->pid(), "starting", {}, std::chrono::system_clock::now()};
    return upgrade_->pid();
}

void Daemon::upgrade_done(const Upgrade::Outcome& outcome)
{
    pid_t pid = upgrade_->pid();
    last_upgrade_ =
        UpgradeState{pid, outcome.ready ? "ready" : "failed", outcome.reason, std::chrono::system_clock::now()};
    if (!outcome.ready) {
        spdlog::error("upgrade failed pid={} reason=\"{}\" (this superd serves on)", pid, Escaped{outcome.reason});
        return;
    }
    hand_over(pid);
}

void Daemon::hand_over(pid_t successor)
{
    // The sockets are one object each in the kernel, which the new process
    // holds too: closing ours loses no connection waiting in a backlog.
    for (auto& [key, slot] : listeners_)
        slot.listener->hand_over();
    if (control_)
        control_->hand_over();
    handed_to_ = successor;
    notifier_.hand_over(successor);
    spdlog::info("upgrade ready pid={} (pid {} stops accepting and exits after its last connection, running={})",
                 successor, ::getpid(), live_children());
    exit_if_drained();
}

void Daemon::exit_if_drained()
{
    if (!handed_to_)
        return;
    size_t controls = control_ ? control_->clients() : 0;
    for (const auto& server : retired_controls_)
        controls += server->clients();
    if (live_children() > 0 || builtins_->connections() > 0 || pipeline_.in_progress() > 0 || !tls_relays_.empty()
        || controls > 0)
        return;
    spdlog::info("upgraded: exiting, pid {} serves", *handed_to_);
    event_base_loopbreak(base_.get());
}

void Daemon::on_signal(evutil_socket_t signal, short, void* self)
{
    static_cast<Daemon*>(self)->handle_signal(static_cast<int>(signal));
}

void Daemon::handle_signal(int signal)
{
    switch (signal) {
    case SIGCHLD:
        reap();
        break;
    case SIGHUP:
        reload("signal=SIGHUP");
        break;
    case SIGUSR1:
        log_counters();
        break;
    case SIGUSR2:
        (void)upgrade("signal=SIGUSR2");
        break;
    case SIGTERM:
    case SIGINT: {
        // Children that ended before the signal are still logged; a second
        // SIGTERM while superd shuts down must not kill it with a status
        // other than 0 once libevent has given the signals back.
        children_.reap([this](ChildExit& exit) { child_exited(exit); });
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        ::sigprocmask(SIG_BLOCK, &stop, nullptr);
        spdlog::info("stopping signal=SIG{} running={} (left to finish)", sigabbrev_np(signal), live_children());
        notifier_.stopping();
        event_base_loopbreak(base_.get());
        break;
    }
    }
}

// Before each accept: under on_limit = "queue", a full service (or superd)
// or an empty bucket stops the listener, and the backlog waits.
bool Daemon::may_accept(Slot& slot)
{
    Service& service = *slot.service;
    if (!service.config.builtin && max_children_ && live_children() >= *max_children_) {
        slot.listener->hold(kHoldAllFull);
        return false;
    }
    Admission::Gate gate = service.state->admission.gate(timers_.now());
    switch (gate.state) {
    case Admission::Gate::kOpen:
        return true;
    case Admission::Gate::kFull:
        for (Slot* s : service.slots)
            s->listener->hold(kHoldServiceFull);
        return false;
    case Admission::Gate::kRate:
        slot.listener->hold_for(kHoldRate, gate.wait);
        return false;
    }
    return true;
}

void Daemon::refuse(Service& service, int connection, const SocketAddress& peer, Refusal why, bool datagram)
{
    // Admission's refusals convert by value: the same names, in the same order.
    static_assert(static_cast<int>(Refusal::kAcl) == static_cast<int>(Admission::Refusal::kAcl)
                  && static_cast<int>(Refusal::kLimit) == static_cast<int>(Admission::Refusal::kLimit)
                  && static_cast<int>(Refusal::kSource) == static_cast<int>(Admission::Refusal::kSource)
                  && static_cast<int>(Refusal::kRate) == static_cast<int>(Admission::Refusal::kRate));
    const RefusalReason& row = kRefusalReasons[static_cast<size_t>(why)];
    ++(service.state->counters.*row.counter);
    if (why == Refusal::kLimit && connection >= 0 && !service.config.busy_message.empty())
        (void)::send(connection, service.config.busy_message.data(), service.config.busy_message.size(),
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    log_refusal(service.config.name, peer, row.name, datagram);
}

namespace {

// A refusal that is not admission's, by its name in kRefusalReasons.
void count_refusal(Counters& counters, std::string_view reason)
{
    for (const RefusalReason& row : kRefusalReasons)
        if (row.name == reason)
            ++(counters.*row.counter);
}

} // namespace

void Daemon::log_refusal(const std::string& service, const SocketAddress& peer, std::string_view reason, bool datagram)
{
    spdlog::log(datagram ? spdlog::level::debug : spdlog::level::info, "refused service={} peer={} reason={}", service,
                peer, reason);
}

void Daemon::builtin_closed(const std::string& name, Admission::Ticket ticket, const SocketAddress& peer,
                            const RelayEnd& end)
{
    if (end.refusal) {
        // By name: the service may have been reloaded away meanwhile.
        ServiceState& st = states_[name];
        count_refusal(st.counters, end.refusal);
        spdlog::info("refused service={} peer={} reason={} {}", name, peer, end.refusal, end.detail);
        // Out of descriptors: rest the service's listeners, as a spawn that
        // ran out of them does, rather than accept what cannot be served.
        if (std::string_view(end.refusal) == "fds" && st.current)
            for (Slot* slot : st.current->slots) {
                auto rest = slot->spawn_backoff.next();
                slot->listener->hold_for(kHoldPaced, rest);
            }
    }
    finished(name, std::move(ticket));
}

void Daemon::on_connection(Slot& slot, UniqueFd fd, const SocketAddress& peer)
{
    Service& service = *slot.service;
    const Listener& listener = *slot.listener;
    ++service.state->counters.accepted;
    slot.fd_backoff.reset();

    // On the stack: with no stages, the connection is served before this
    // returns, and costs no allocation.
    Connection connection{std::move(fd), peer, listener.address(), peer, std::nullopt, {}, nullptr, {}};
    // A wildcard listener learns which local address the client reached.
    if (connection.local.is_wildcard()) {
        connection.local.length = sizeof connection.local.storage;
        if (::getsockname(connection.fd.get(), connection.local.get(), &connection.local.length) != 0)
            connection.local = listener.address();
    }
    if (connection.local.family() == AF_UNIX) {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(connection.fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            connection.credentials = cred;
        connection.shown = connection.local;
    }

    if (service.header_stages.empty()) {
        admit(slot, connection);
        return; // `connection` closes here; a child has its own copy
    }
    // A PROXY header names the client admission is about: it is read
    // first, from the balancers in proxy_from alone.
    if (!std::ranges::any_of(service.config.proxy_from, [&](const Cidr& c) { return c.contains(peer); })) {
        count_refusal(service.state->counters, "proxy");
        spdlog::info("refused service={} peer={} reason=proxy error=\"not in proxy_from\"", service.config.name,
                     connection.shown);
        return;
    }
    const std::string& name = service.config.name;
    pipeline_.run(
        std::move(connection), service.header_stages,
        [this, name](Connection& c) {
            Service* now = states_[name].current;
            if (now && !now->slots.empty())
                admit(*now->slots.front(), c);
        },
        [this, name](Connection& c, const Stage& stage, const std::string& reason) {
            stage_failed(name, c, stage, reason);
        });
}

void Daemon::admit(Slot& slot, Connection& connection)
{
    Service& service = *slot.service;
    if (auto refusal = service.state->admission.admit(connection.shown, timers_.now(), connection.ticket)) {
        refuse(service, connection.fd.get(), connection.shown, static_cast<Refusal>(*refusal));
        return; // closing the connection tells the client
    }
    // The spawn's line says it all; this one is for debugging.
    spdlog::debug("accepted service={} peer={} local={}", service.config.name, connection.shown, connection.local);
    if (service.stages.empty()) {
        (this->*service.kind->serve)(slot, connection);
        return;
    }
    // A stage can outlive this service (a reload): the connection goes on
    // with whatever service has its name by then.
    const std::string& name = service.config.name;
    pipeline_.run(
        std::move(connection), service.stages,
        [this, name](Connection& c) {
            Service* now = states_[name].current;
            if (now && !now->slots.empty() && now->kind->serve)
                (this->*now->kind->serve)(*now->slots.front(), c);
        },
        [this, name](Connection& c, const Stage& stage, const std::string& reason) {
            stage_failed(name, c, stage, reason);
        });
}

// By name: the service may have been reloaded away meanwhile.
void Daemon::stage_failed(const std::string& name, Connection& connection, const Stage& stage,
                          const std::string& reason)
{
    count_refusal(states_[name].counters, stage.name());
    spdlog::info("refused service={} peer={} reason={} error=\"{}\"", name, connection.shown, stage.name(), reason);
    finished(name, std::move(connection.ticket));
}

void Daemon::spawn_for(Slot& slot, Connection& connection)
{
    // A PROXY header is read non-blocking; the program gets the socket
    // blocking, as inetd gives it (a TLS relay's socketpair end already is).
    // Without a header stage it was accepted blocking: no system call.
    if (!connection.relay && !slot.service->header_stages.empty())
        set_nonblocking(connection.fd.get(), false);
    Peer who{&connection.peer, &connection.local, connection.credentials, connection.environment};
    launch(slot, connection.fd.get(), who, connection.shown, "", std::move(connection.ticket),
           std::move(connection.relay));
}

void Daemon::serve_builtin(Slot& slot, Connection& connection)
{
    // Behind TLS the builtin serves its end of the relay's socketpair, and
    // the relay is superd's: it ends when both sides have, apart from the
    // builtin's ticket.
    if (connection.relay) {
        set_nonblocking(connection.fd.get(), true);
        Relay* relay = connection.relay.get();
        tls_relays_.emplace(relay, std::move(connection.relay));
        relay->start(base_.get(), [this, relay](const RelayEnd&) { tls_relays_.erase(relay); });
    }
    builtins_->serve(slot.service->config, connection);
}

void Daemon::answer_datagrams(Slot& slot)
{
    Service& service = *slot.service;
    builtins_->answer(service.config, slot.listener->fd(), [this, &service](const SocketAddress& source) {
        std::optional<SourceKey> key;
        auto refusal = service.state->admission.check(source, timers_.now(), key);
        if (!refusal)
            return true;
        refuse(service, -1, source, static_cast<Refusal>(*refusal), true);
        return false;
    });
}

void Daemon::shortage(Slot& slot, int error)
{
    if (error == EMFILE || error == ENFILE) {
        out_of_fds(slot);
        return;
    }
    spdlog::warn("paused service={} listen={} reason=\"accept: {}\" retry_in={}ms", slot.service->config.name,
                 slot.listener->address(), std::strerror(error), kOutOfMemoryPause.count());
    slot.listener->hold_for(kHoldShortage, kOutOfMemoryPause);
}

// accept() has run out of descriptors. Give up the reserve to drain one
// connection (its client learns at once instead of hanging), then rest the
// listener, longer while the shortage lasts. Nothing spins.
void Daemon::out_of_fds(Slot& slot)
{
    reserve_fd_.reset();
    SocketAddress peer;
    peer.length = sizeof peer.storage;
    UniqueFd drained(::accept4(slot.listener->fd(), peer.get(), &peer.length, SOCK_CLOEXEC));
    if (drained) // a unix client has no name: it is shown by the socket it reached, as on_connection does
        refuse(*slot.service, -1, peer.family() == AF_UNIX ? slot.listener->address() : peer, Refusal::kFds);
    drained.reset();
    reserve_fd_ = open_null();
    auto rest = slot.fd_backoff.next();
    spdlog::warn("paused service={} listen={} reason=\"out of file descriptors\" retry_in={}ms",
                 slot.service->config.name, slot.listener->address(), rest.count());
    slot.listener->hold_for(kHoldShortage, rest);
}

void Daemon::lend_to_child(Slot& slot)
{
    // The child owns the socket until it exits.
    slot.listener->hold(kHoldWaitChild);
    slot.listener->lend();
    if (slot.listener->spec().protocol == Protocol::kUdp)
        slot.pending_at_spawn = head_datagram(slot.listener->fd());
    if (!launch(slot, slot.listener->fd(), Peer{}, slot.listener->address(), slot.listener->spec().key(), {})) {
        slot.listener->release(kHoldWaitChild);
        slot.listener->hold_for(kHoldPaced, slot.spawn_backoff.next());
    }
}

bool Daemon::launch(Slot& slot, int socket, const Peer& peer, const SocketAddress& shown,
                    const std::string& wait_listener, Admission::Ticket ticket, std::unique_ptr<Relay> relay)
{
    Service& service = *slot.service;
    const std::string& name = service.config.name;
    ServiceState& st = *service.state;
    SpawnIo io{socket, -1, dev_null_.get()};
    std::unique_ptr<StderrPipe> pipe;
    SpawnResult spawned;
    if (service.config.stderr_target == StderrTarget::kNull) {
        io.stderr_fd = dev_null_.get();
    } else if (service.config.stderr_target == StderrTarget::kLog) {
        auto opened = StderrPipe::open(base_.get(), name, service.stderr_budget,
                                       [this](StderrPipe* p) { stderr_pipes_.erase(p); });
        if (opened) {
            pipe = std::move(*opened);
            io.stderr_fd = pipe->write_end();
        } else {
            spawned.error = errno ? errno : EMFILE;
            spawned.step = "pipe";
        }
    }
    if (spawned.step[0] == '\0')
        spawned = service.launcher->spawn(io, peer);
    if (pipe)
        pipe->close_write_end();

    if (spawned.error != 0) {
        int e = spawned.error;
        bool out_of_fds = e == EMFILE || e == ENFILE;
        ++(out_of_fds ? st.counters.refused_fds : st.counters.failed_spawn);
        spdlog::error("failed service={} {}={} reason=\"spawn {}: {}: {}\"", name,
                      wait_listener.empty() ? "peer" : "listen", shown, service.launcher->program(), spawned.step,
                      std::strerror(e));
        // Out of processes, memory or fds: rest the listener, do not spin.
        if (wait_listener.empty() && (e == EAGAIN || e == ENOMEM || out_of_fds)) {
            auto rest = slot.spawn_backoff.next();
            spdlog::warn("paced service={} listen={} reason=\"{}\" retry_in={}ms", name, slot.listener->address(),
                         std::strerror(e), rest.count());
            slot.listener->hold_for(kHoldPaced, rest);
        }
        return false; // `ticket` ends here: nothing runs for it
    }
    slot.spawn_backoff.reset();
    // A group still lingering under this pid is gone (the kernel hands out
    // no pid still in use as a group's), unnoticed so far.
    end_lingering(spawned.pid);
    if (pipe) {
        pipe->started(spawned.pid);
        StderrPipe* raw = pipe.get();
        stderr_pipes_.emplace(raw, std::move(pipe));
    }
    // A wait service's child was admitted by nobody, yet runs.
    if (!ticket)
        ticket = st.admission.count_unadmitted();
    uint64_t lent_to = wait_listener.empty() ? 0 : slot.listener->id();
    Relay* relayed = relay.get();
    Child child{name, shown, timers_.now(), wait_listener, lent_to, Lifetime(std::move(ticket), std::move(relay))};
    const char* who = who_key(child);
    children_.add(spawned.pid, std::move(child), std::move(spawned.pidfd));
    if (relayed)
        relayed->start(base_.get(),
                       [this, pid = spawned.pid, relayed](const RelayEnd&) { relay_closed(pid, relayed); });
    watch_sigchld();
    ++st.counters.spawned;
    if (service.config.timeout) {
        auto deadline = std::make_unique<Deadline>(timers_, sessions_, spawned.pid, name,
                                                   Deadline::Limits{*service.config.timeout, service.config.kill_grace},
                                                   [this, name] { ++states_[name].counters.timed_out; });
        if (deadline->valid())
            deadlines_[spawned.pid] = std::move(deadline);
        else
            spdlog::error("service={} pid={} reason=\"cannot set its timeout\"", name, spawned.pid);
    }
    spdlog::info("spawned service={} pid={} {}={}", name, spawned.pid, who, shown);
    return true;
}

void Daemon::finished(const std::string& name, Admission::Ticket ticket)
{
    ticket.end();
    ServiceState& st = states_[name];
    // Room again: take off the holds that limits put on.
    if (Service* service = st.current; service && service->config.max_instances && st.admission.has_room())
        for (Slot* s : service->slots)
            if (s->listener->held(kHoldServiceFull))
                s->listener->release(kHoldServiceFull);
    // Only the exit that brings superd just under the cap releases (the
    // child is out of the table by now); looking at every listener on every
    // exit would cost a walk of all services per connection.
    if (max_children_ && live_children() + 1 == *max_children_)
        for (auto& [key, slot] : listeners_)
            if (slot.listener->held(kHoldAllFull))
                slot.listener->release(kHoldAllFull);
    // Once the event that ended it is done: the builtin, relay or child
    // table that held the connection may not have let go of it yet.
    if (handed_to_)
        drain_check_->arm(std::chrono::milliseconds(0));
}

// SIGCHLD: children with a pidfd are reaped through it, by pid; the
// waitpid(-1) walk is for the others (a kernel without pidfds, or no fd to
// spare when they were spawned) and for the orphans of services, which come
// back to superd as its subreaper.
void Daemon::reap()
{
    children_.reap([this](ChildExit& exit) { child_exited(exit); });
    watch_sigchld();
}

// While SIGCHLD is blocked, an orphan that ends (one a service left behind
// in a group of its own, or while the service still runs) only marks it
// pending. Once a second, a pending SIGCHLD is taken and the orphans reaped:
// one system call when there is none. A lingering group can also empty
// without superd reaping anything (its last member was the child of a
// process that left the group), so each is looked at too. The control
// servers a reload replaced go here too, once their last client has.
void Daemon::sweep_orphans()
{
    std::erase_if(retired_controls_, [](const auto& server) { return server->clients() == 0; });
    exit_if_drained(); // what ends without a ticket: control clients
    end_lingering();
    watch_sigchld();
    if (!sigchld_blocked_)
        return; // SIGCHLD itself reaps
    sigset_t pending;
    if (::sigpending(&pending) != 0 || !sigismember(&pending, SIGCHLD))
        return;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    timespec now{0, 0};
    ::sigtimedwait(&chld, nullptr, &now);
    reap();
}

// Every child's end raises SIGCHLD (exec resets a clone's exit signal to
// it), yet only a child without a pidfd needs it. Blocked, the signal is
// merely marked pending: no handler runs and the loop is not woken, which
// spares superd about a tenth of its work per connection. Unblocked, one
// that is pending is delivered at once, so no end goes unnoticed.
void Daemon::watch_sigchld()
{
    bool block = children_.untracked() == 0 && lingering_.empty();
    if (block == sigchld_blocked_)
        return;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &chld, nullptr);
    sigchld_blocked_ = block;
}

void Daemon::child_exited(ChildExit& exit)
{
    if (upgrade_ && exit.pid == upgrade_->pid()) {
        upgrade_->exited(exit.status);
        spdlog::info("reaped pid={} status=\"{}\" (an upgrade's new superd)", exit.pid,
                     describe_wait_status(exit.status));
        return;
    }
    if (!exit.known) {
        spdlog::debug("reaped pid={} status=\"{}\" (not a service)", exit.pid, describe_wait_status(exit.status));
        // Left behind by a service: its connection may have just ended.
        if (lingering_.count(exit.group) && !sessions_.group_alive(exit.group))
            end_lingering(exit.group);
        return;
    }
    Child& child = exit.child;
    auto ran = timers_.now() - child.started;
    // Something the program started still runs, holding the connection
    // (or the wait service's socket) perhaps: the connection goes on.
    bool lingers = sessions_.group_alive(exit.pid);
    spdlog::info("exited service={} pid={} {}={} status=\"{}\" ran={:.3f}s{}", child.service, exit.pid, who_key(child),
                 child.endpoint, describe_wait_status(exit.status), std::chrono::duration<double>(ran).count(),
                 lingers ? " group=alive" : "");
    Counters& c = states_[child.service].counters;
    c.run_time.observe(ran);
    if (WIFSIGNALED(exit.status))
        ++c.exited_signal;
    else if (WEXITSTATUS(exit.status) == 0)
        ++c.exited_ok;
    else
        ++c.exited_error;
    if (!child.wait_listener.empty())
        wait_child_exited(child, ran);
    if (lingers) {
        lingering_.emplace(exit.pid, Lingering{std::move(child), timers_.now()});
        watch_sigchld(); // the group's last member comes back to superd and says so
    } else {
        deadlines_.erase(exit.pid);
        session_over(exit.pid, child);
    }
}

// The socket a wait child had is superd's again, unless the child ran for
// so short a time, leaving its work undone, that spawning again at once
// would spin.
void Daemon::wait_child_exited(const Child& child, Clock::duration ran)
{
    auto it = listeners_.find(child.wait_listener);
    // Removed by a reload while the child ran, or removed and opened anew:
    // the hold on the new socket belongs to its own child.
    if (it == listeners_.end() || it->second.listener->id() != child.wait_listener_id)
        return;
    Slot& slot = it->second;
    bool quick = ran < kWaitPacing.quick;
    bool undone = quick && left_undone(slot.listener->fd(), slot.listener->spec().protocol, slot.pending_at_spawn);
    auto pace = slot.pacer.exited(ran, undone);
    slot.pending_at_spawn.reset();
    slot.listener->release(kHoldWaitChild);
    if (pace) {
        spdlog::warn("paced service={} listen={} exits_at_once={} retry_in={}ms", child.service,
                     slot.listener->address(), slot.pacer.in_a_row(), pace->count());
        slot.listener->hold_for(kHoldPaced, *pace);
    }
}

void Daemon::end_lingering()
{
    std::vector<pid_t> gone;
    for (const auto& [group, lingering] : lingering_)
        if (!sessions_.group_alive(group))
            gone.push_back(group);
    for (pid_t group : gone)
        end_lingering(group);
}

void Daemon::end_lingering(pid_t group)
{
    auto it = lingering_.find(group);
    if (it == lingering_.end())
        return;
    Lingering gone = std::move(it->second);
    lingering_.erase(it);
    session_ended(group, gone.child, gone.ended);
}

void Daemon::session_ended(pid_t pid, Child& child, Clock::time_point program_ended)
{
    deadlines_.erase(pid);
    auto now = timers_.now();
    spdlog::info("ended service={} pid={} {}={} ran={:.3f}s after_exit={:.3f}s", child.service, pid, who_key(child),
                 child.endpoint, std::chrono::duration<double>(now - child.started).count(),
                 std::chrono::duration<double>(now - program_ended).count());
    session_over(pid, child);
}

void Daemon::session_over(pid_t pid, Child& child)
{
    if (child.life.session_ended()) {
        finished(child.service, std::move(child.life.ticket()));
        return;
    }
    spdlog::debug("relaying service={} pid={} {}={}", child.service, pid, who_key(child), child.endpoint);
    Relay* relay = child.life.relay();
    relaying_.emplace(relay, Relaying{pid, std::move(child)});
    relay->service_ended(); // may close it, and end the connection, now
}

void Daemon::relay_closed(pid_t pid, Relay* relay)
{
    if (auto it = relaying_.find(relay); it != relaying_.end()) {
        // Its session ended before: the connection is over. `gone` takes
        // the relay with it, after this, its last callback, has run.
        Child gone = std::move(it->second.child);
        relaying_.erase(it);
        if (gone.life.relay_closed())
            finished(gone.service, std::move(gone.life.ticket()));
        return;
    }
    // Its session goes on: the program runs, or its group lingers.
    Child* child = children_.find(pid);
    if (!child || child->life.relay() != relay) {
        auto it = lingering_.find(pid);
        child = it != lingering_.end() ? &it->second.child : nullptr;
    }
    if (child && child->life.relay() == relay)
        child->life.relay_closed();
}

} // namespace superd

#include "superd/daemon.h"

#include "superd/log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

namespace superd {

namespace {

constexpr int kSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};

// A wait child that ran less than this "exited at once"; from the third such
// exit in a row, its listener rests before the next spawn, doubling up to the
// maximum. It never switches the service off.
constexpr std::chrono::milliseconds kQuickExit{1000};
constexpr int kQuickExitsBeforePacing = 3;
constexpr std::chrono::milliseconds kFirstPace{100};
constexpr std::chrono::milliseconds kMaxPace{10000};
// How long a wait listener rests after its spawn failed.
constexpr std::chrono::milliseconds kSpawnFailurePause{1000};

const char* signal_name(int signal)
{
    switch (signal) {
    case SIGCHLD:
        return "SIGCHLD";
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "?";
    }
}

SocketSpec spec_for(const ServiceConfig& service, const ListenAddress& listen)
{
    return SocketSpec{service.protocol, listen.address, service.socket_mode, service.socket_uid, service.socket_gid};
}

} // namespace

Daemon::Daemon(ConfigSources sources) : sources_(std::move(sources)), base_(event_base_new()) {}

std::optional<Error> Daemon::start(Config config)
{
    if (!base_)
        return Error{"cannot create the event loop"};
    dev_null_.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!dev_null_)
        return Error{std::string("cannot open /dev/null: ") + std::strerror(errno)};
    builtins_ = std::make_unique<Builtins>(base_.get());

    // Signals first, so that no child can end unnoticed.
    for (int signal : kSignals) {
        Event ev(evsignal_new(base_.get(), signal, on_signal, this));
        if (!ev || event_add(ev.get(), nullptr) != 0)
            return Error{std::string("cannot watch ") + signal_name(signal)};
        signal_events_.push_back(std::move(ev));
    }
    if (auto error = apply(std::move(config)))
        return error;
    for (const auto& [key, slot] : listeners_)
        spdlog::info("listening service={} listen={}", slot.service->config.name, slot.listener->address());
    spdlog::info("ready services={} listeners={} pid={}", services_.size(), listeners_.size(), getpid());
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
            auto listener = Listener::open(spec);
            if (!listener)
                return Error{"service '" + sc.name + "': " + listener.error()};
            next[key].listener = std::move(*listener);
        }
    }

    // Commit: nothing below can fail.
    std::vector<std::unique_ptr<Service>> services;
    size_t kept = 0, opened = next.size();
    for (ServiceConfig& sc : config.services) {
        auto service = std::make_unique<Service>();
        if (!sc.builtin)
            service->launcher = std::make_unique<Launcher>(sc);
        if (sc.inetd_max)
            spdlog::warn("service={} note=\"the .{} spawn limit of inetd.conf is not enforced yet\"", sc.name,
                         *sc.inetd_max);
        service->config = std::move(sc);
        for (const ListenAddress& la : service->config.listen) {
            SocketSpec spec = spec_for(service->config, la);
            std::string key = spec.key();
            Slot& slot = next[key];
            if (!slot.listener) {
                Slot& old = listeners_[key];
                slot.listener = std::move(old.listener);
                slot.quick_exits = old.quick_exits;
                if (auto e = slot.listener->apply_ownership(spec))
                    spdlog::warn("service={} listen={} reason=\"{}\"", service->config.name, la.address, e->message);
                ++kept;
            }
            slot.service = service.get();
        }
        services.push_back(std::move(service));
    }
    size_t closed = 0;
    for (const auto& [key, slot] : listeners_)
        closed += slot.listener ? 1 : 0;
    listeners_ = std::move(next); // closes the sockets no service uses any more
    services_ = std::move(services);
    builtins_->refresh_interfaces();
    for (auto& [key, slot] : listeners_)
        serve(slot);
    if (started_)
        spdlog::info("reloaded services={} listeners={} kept={} opened={} closed={}", services_.size(),
                     listeners_.size(), kept, opened, closed);
    started_ = true;
    return std::nullopt;
}

void Daemon::serve(Slot& slot)
{
    const ServiceConfig& config = slot.service->config;
    Listener& listener = *slot.listener;
    event_base* base = base_.get();
    Slot* s = &slot;
    if (config.builtin && config.protocol == Protocol::kUdp) {
        listener.watch_with(base, [this, s] {
            builtins_->answer(*s->service->config.builtin, s->service->config.name, s->listener->fd());
        });
    } else if (config.mode == Mode::kWait && !config.builtin) {
        std::string key = listener.spec().key();
        listener.watch_with(base, [this, s, key] { on_wait_ready(*s, key); });
    } else {
        listener.accept_with(base, [this, s](UniqueFd connection, const SocketAddress& peer) {
            on_connection(*s, std::move(connection), peer);
        });
    }
}

void Daemon::reload()
{
    spdlog::info("reloading signal=SIGHUP");
    auto config = load_config(sources_);
    if (!config) {
        spdlog::error("reload failed reason=\"{}\" (the running configuration stays)", config.error());
        return;
    }
    if (auto error = apply(std::move(*config)))
        spdlog::error("reload failed reason=\"{}\" (the running configuration stays)", error->message);
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
        reload();
        break;
    case SIGTERM:
    case SIGINT: {
        // Children that ended before the signal are still logged; a second
        // SIGTERM while superd shuts down must not kill it with a status
        // other than 0 once libevent has given the signals back.
        reap();
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        ::sigprocmask(SIG_BLOCK, &stop, nullptr);
        spdlog::info("stopping signal={} running={} (left to finish)", signal_name(signal), children_.size());
        event_base_loopbreak(base_.get());
        break;
    }
    }
}

void Daemon::on_connection(Slot& slot, UniqueFd connection, const SocketAddress& peer)
{
    Service& service = *slot.service;
    const Listener& listener = *slot.listener;

    // A wildcard listener learns which local address the client reached.
    SocketAddress local = listener.address();
    if (local.is_wildcard()) {
        local.length = sizeof local.storage;
        if (::getsockname(connection.get(), local.get(), &local.length) != 0)
            local = listener.address();
    }
    Peer who{&peer, &local, std::nullopt};
    SocketAddress shown = peer;
    if (local.family() == AF_UNIX) {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            who.credentials = cred;
        shown = local;
    }
    spdlog::info("accepted service={} peer={} local={}", service.config.name, shown, local);

    if (service.config.builtin) {
        builtins_->serve(*service.config.builtin, service.config.name, std::move(connection), shown);
        return;
    }
    launch(service, connection.get(), who, shown, "");
    // `connection` closes here: the child has its own copy.
}

void Daemon::on_wait_ready(Slot& slot, const std::string& key)
{
    // The child owns the socket until it exits.
    slot.listener->pause();
    if (!launch(*slot.service, slot.listener->fd(), Peer{}, slot.listener->address(), key))
        slot.listener->resume(kSpawnFailurePause);
}

bool Daemon::launch(Service& service, int socket, const Peer& peer, const SocketAddress& shown,
                    const std::string& wait_listener)
{
    const std::string& name = service.config.name;
    SpawnIo io{socket, -1, dev_null_.get()};
    std::unique_ptr<StderrPipe> pipe;
    if (service.config.stderr_target == StderrTarget::kNull) {
        io.stderr_fd = dev_null_.get();
    } else if (service.config.stderr_target == StderrTarget::kLog) {
        auto opened = StderrPipe::open(base_.get(), name, [this](StderrPipe* p) { stderr_pipes_.erase(p); });
        if (!opened) {
            spdlog::error("failed service={} peer={} reason=\"stderr {}\"", name, shown, opened.error());
            return false;
        }
        pipe = std::move(*opened);
        io.stderr_fd = pipe->write_end();
    }

    SpawnResult spawned = service.launcher->spawn(io, peer);
    if (pipe)
        pipe->close_write_end();
    if (spawned.error != 0) {
        spdlog::error("failed service={} peer={} reason=\"spawn {}: {}: {}\"", name, shown,
                      service.launcher->program(), spawned.step, std::strerror(spawned.error));
        return false;
    }
    if (pipe) {
        pipe->started(spawned.pid);
        StderrPipe* raw = pipe.get();
        stderr_pipes_.emplace(raw, std::move(pipe));
    }
    children_.add(spawned.pid, Child{name, shown, Clock::now(), wait_listener});
    spdlog::info("spawned service={} pid={} peer={}", name, spawned.pid, shown);
    return true;
}

void Daemon::reap()
{
    children_.reap([this](const ChildExit& exit) { child_exited(exit); });
}

void Daemon::child_exited(const ChildExit& exit)
{
    if (!exit.known) {
        spdlog::debug("reaped pid={} status=\"{}\" (not a service)", exit.pid, describe_wait_status(exit.status));
        return;
    }
    auto ran = Clock::now() - exit.child.started;
    spdlog::info("exited service={} pid={} peer={} status=\"{}\" ran={:.3f}s", exit.child.service, exit.pid,
                 exit.child.peer, describe_wait_status(exit.status),
                 std::chrono::duration<double>(ran).count());

    if (exit.child.wait_listener.empty())
        return;
    auto it = listeners_.find(exit.child.wait_listener);
    if (it == listeners_.end())
        return; // removed by a reload while the child ran
    Slot& slot = it->second;
    slot.quick_exits = ran < kQuickExit ? slot.quick_exits + 1 : 0;
    std::chrono::milliseconds pace{0};
    if (slot.quick_exits >= kQuickExitsBeforePacing) {
        int doublings = std::min(slot.quick_exits - kQuickExitsBeforePacing, 10);
        pace = std::min(kFirstPace * (1 << doublings), kMaxPace);
        spdlog::warn("paced service={} listen={} exits_at_once={} retry_in={}ms", exit.child.service,
                     slot.listener->address(), slot.quick_exits, pace.count());
    }
    slot.listener->resume(pace);
}

} // namespace superd

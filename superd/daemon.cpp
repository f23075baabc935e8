#include "superd/daemon.h"

#include "superd/log.h"

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

namespace superd {

namespace {

constexpr int kSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};

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

} // namespace

Daemon::Daemon(Config config) : base_(event_base_new()), config_(std::move(config)) {}

std::optional<Error> Daemon::start()
{
    if (!base_)
        return Error{"cannot create the event loop"};

    // Signals first, so that no child can end unnoticed.
    for (int signal : kSignals) {
        Event ev(evsignal_new(base_.get(), signal, on_signal, this));
        if (!ev || event_add(ev.get(), nullptr) != 0)
            return Error{std::string("cannot watch ") + signal_name(signal)};
        signal_events_.push_back(std::move(ev));
    }

    for (const ServiceConfig& sc : config_.services) {
        auto service = std::make_unique<Service>();
        service->config = sc;
        service->launcher = std::make_unique<Launcher>(sc.program, sc.args);
        for (const ListenAddress& la : sc.listen) {
            auto listener = Listener::open(la.address);
            if (!listener)
                return Error{"service '" + sc.name + "': " + listener.error()};
            service->listeners.push_back(std::move(*listener));
        }
        services_.push_back(std::move(service));
    }

    for (auto& service : services_) {
        for (auto& listener : service->listeners) {
            Service* s = service.get();
            const Listener* l = listener.get();
            listener->start(base_.get(), [this, s, l](UniqueFd connection, const SocketAddress& peer) {
                on_connection(*s, *l, std::move(connection), peer);
            });
            spdlog::info("listening service={} listen={}", s->config.name, l->address());
        }
    }
    spdlog::info("ready services={} listeners={} pid={}", services_.size(), config_.listener_count(), getpid());
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
    case SIGTERM:
    case SIGINT:
        spdlog::info("stopping signal={} running={} (left to finish)", signal_name(signal), children_.size());
        event_base_loopbreak(base_.get());
        break;
    case SIGHUP:
        spdlog::warn("ignored signal=SIGHUP reason=\"reload is not supported yet; restart superd\"");
        break;
    }
}

void Daemon::on_connection(Service& service, const Listener& listener, UniqueFd connection,
                           const SocketAddress& peer)
{
    const std::string& name = service.config.name;

    // A wildcard listener learns which local address the client reached.
    SocketAddress local = listener.address();
    if (local.is_wildcard()) {
        local.length = sizeof local.storage;
        if (::getsockname(connection.get(), local.get(), &local.length) != 0)
            local = listener.address();
    }
    spdlog::info("accepted service={} peer={} local={}", name, peer, local);

    SpawnResult spawned = service.launcher->spawn(connection.get(), peer, local);
    if (spawned.error != 0) {
        spdlog::error("failed service={} peer={} reason=\"spawn {}: {}\"", name, peer,
                      service.launcher->program(), std::strerror(spawned.error));
        return; // closing `connection` tells the client
    }
    children_.add(spawned.pid, Child{name, peer, Clock::now()});
    spdlog::info("spawned service={} pid={} peer={}", name, spawned.pid, peer);
}

void Daemon::reap()
{
    children_.reap([](const ChildExit& exit) {
        if (!exit.known) {
            spdlog::debug("reaped pid={} status=\"{}\" (not a service)", exit.pid, describe_wait_status(exit.status));
            return;
        }
        std::chrono::duration<double> ran = Clock::now() - exit.child.started;
        spdlog::info("exited service={} pid={} peer={} status=\"{}\" ran={:.3f}s", exit.child.service, exit.pid,
                     exit.child.peer, describe_wait_status(exit.status), ran.count());
    });
}

} // namespace superd

#include "superd/control.h"

#include "superd/event.h"
#include "superd/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace superd {

namespace {

std::string error_reply(const std::string& message) { return nlohmann::json{{"ok", false}, {"error", message}}.dump(); }

// The supplementary groups of the process at the other end of `fd`, as
// they were when it connected.
std::vector<gid_t> peer_groups(int fd)
{
    std::vector<gid_t> groups(64);
    for (int tries = 0; tries < 3; ++tries) {
        socklen_t length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
            groups.resize(length / sizeof(gid_t));
            return groups;
        }
        if (errno != ERANGE)
            break;
        groups.resize(length / sizeof(gid_t) + 1);
    }
    return {};
}

// Makes the folder of `path` when it is the only level missing (as
// /run/superd is after each boot), readable by all: the socket's own mode
// is the gate.
std::optional<Error> make_folder(const std::string& path)
{
    std::string folder = std::filesystem::path(path).parent_path().string();
    if (folder.empty() || ::access(folder.c_str(), F_OK) == 0)
        return std::nullopt;
    if (::mkdir(folder.c_str(), 0755) != 0 && errno != EEXIST)
        return Error{"cannot create the folder of control socket " + path + ": " + std::strerror(errno)};
    return std::nullopt;
}

} // namespace

bool control_allowed(const ControlPeer& peer, std::span<const gid_t> groups, uid_t self, std::optional<gid_t> group)
{
    if (peer.uid == 0 || peer.uid == self)
        return true;
    if (!group)
        return false;
    return peer.gid == *group || std::find(groups.begin(), groups.end(), *group) != groups.end();
}

struct ControlServer::Client {
    ControlServer* server = nullptr;
    Bufferevent bev;
    ControlPeer peer;
    bool closing = false; // close once the replies have gone
};

ControlServer::ControlServer(event_base* base, const ControlSettings& settings, Handler handler)
    : base_(base), settings_(settings), handler_(std::move(handler))
{
}

ControlServer::~ControlServer() = default;

SocketSpec ControlServer::socket_spec(const ControlSettings& settings)
{
    SocketSpec spec;
    spec.protocol = Protocol::kUnix;
    spec.address = SocketAddress::unix_path(settings.path);
    spec.mode = settings.group ? 0660 : 0600;
    spec.gid = settings.group;
    return spec;
}

Result<std::unique_ptr<ControlServer>>
ControlServer::open(event_base* base, Timers& timers, const ControlSettings& settings, Handler handler, UniqueFd socket)
{
    if (auto error = make_folder(settings.path))
        return *error;
    auto listener =
        socket ? Listener::adopt(std::move(socket), socket_spec(settings)) : Listener::open(socket_spec(settings));
    if (!listener)
        return Error{"control socket: " + listener.error()};
    std::unique_ptr<ControlServer> server(new ControlServer(base, settings, std::move(handler)));
    server->listener_ = std::move(*listener);
    ControlServer* self = server.get();
    Listener::AcceptHooks hooks;
    hooks.on_connection = [self](UniqueFd fd, const SocketAddress&) { self->accepted(std::move(fd)); };
    hooks.nonblocking = true;
    server->listener_->accept_with(base, timers, std::move(hooks));
    return server;
}

std::optional<Error> ControlServer::regroup(const ControlSettings& settings)
{
    settings_ = settings;
    if (!listener_)
        return std::nullopt;
    if (auto error = listener_->apply_settings(socket_spec(settings)))
        return Error{"control socket: " + error->message};
    return std::nullopt;
}

void ControlServer::close_listener() { listener_.reset(); }

void ControlServer::hand_over()
{
    if (listener_)
        listener_->hand_over();
    listener_.reset();
}

void ControlServer::accepted(UniqueFd fd)
{
    ucred cred{};
    socklen_t length = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
        spdlog::warn("refused control reason=\"SO_PEERCRED: {}\"", std::strerror(errno));
        return;
    }
    ControlPeer peer{cred.pid, cred.uid, cred.gid};
    if (!control_allowed(peer, peer_groups(fd.get()), ::geteuid(), settings_.group)) {
        spdlog::warn("refused control pid={} uid={} reason=permission", peer.pid, peer.uid);
        std::string message = "permission denied: uid " + std::to_string(peer.uid) + " is not root, superd's user";
        if (settings_.group)
            message += " or in group " + settings_.group_name;
        std::string line = error_reply(message) + "\n";
        (void)::send(fd.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        return;
    }
    if (clients_.size() >= kMaxClients) {
        spdlog::warn("refused control pid={} uid={} reason=\"{} control connections already\"", peer.pid, peer.uid,
                     kMaxClients);
        std::string line = error_reply("too many control connections; try again") + "\n";
        (void)::send(fd.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        return;
    }
    bufferevent* bev = bufferevent_socket_new(base_, fd.get(), BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        spdlog::warn("refused control pid={} uid={} reason=\"out of memory\"", peer.pid, peer.uid);
        return;
    }
    (void)fd.release(); // the bufferevent owns it now
    auto client = std::make_unique<Client>();
    client->server = this;
    client->bev.reset(bev);
    client->peer = peer;
    timeval idle = to_timeval(kIdle);
    bufferevent_set_timeouts(bev, &idle, &idle);
    bufferevent_setcb(bev, on_read, on_write, on_event, client.get());
    bufferevent_enable(bev, EV_READ);
    spdlog::debug("control connection pid={} uid={}", peer.pid, peer.uid);
    clients_.emplace(client.get(), std::move(client));
}

void ControlServer::on_read(bufferevent*, void* ctx)
{
    auto* client = static_cast<Client*>(ctx);
    client->server->answer(*client, false);
}

void ControlServer::on_write(bufferevent* bev, void* ctx)
{
    auto* client = static_cast<Client*>(ctx);
    if (client->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        client->server->drop(*client);
}

void ControlServer::on_event(bufferevent* bev, short what, void* ctx)
{
    auto* client = static_cast<Client*>(ctx);
    ControlServer* server = client->server;
    if (what & BEV_EVENT_TIMEOUT) {
        spdlog::debug("control connection pid={} closed reason=\"idle {}s\"", client->peer.pid, kIdle.count());
        server->drop(*client);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_WRITING)) {
        // The client has said all it will: answer what it sent, then close.
        if (!server->answer(*client, true))
            return;
        client->closing = true;
        bufferevent_disable(bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            server->drop(*client);
        return;
    }
    server->drop(*client); // an error, or a reset
}

bool ControlServer::answer(Client& client, bool at_eof)
{
    evbuffer* input = bufferevent_get_input(client.bev.get());
    while (!client.closing) {
        size_t available = evbuffer_get_length(input);
        if (available == 0)
            return true;
        size_t eol_length = 0;
        evbuffer_ptr eol = evbuffer_search_eol(input, nullptr, &eol_length, EVBUFFER_EOL_LF);
        size_t line_length = eol.pos >= 0 ? static_cast<size_t>(eol.pos) : available;
        if (line_length > kMaxRequest) {
            spdlog::warn("control connection pid={} closed reason=\"request longer than {} bytes\"", client.peer.pid,
                         kMaxRequest);
            evbuffer_drain(input, available);
            client.closing = true;
            bufferevent_disable(client.bev.get(), EV_READ);
            return reply(client, error_reply("request longer than " + std::to_string(kMaxRequest) + " bytes"));
        }
        if (eol.pos < 0 && !at_eof)
            return true; // the rest of the line is still to come
        std::string line(line_length, '\0');
        evbuffer_remove(input, line.data(), line_length);
        evbuffer_drain(input, eol_length);
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (!reply(client, handler_(line, client.peer)))
            return false;
    }
    return true;
}

bool ControlServer::reply(Client& client, const std::string& json)
{
    evbuffer* output = bufferevent_get_output(client.bev.get());
    if (evbuffer_get_length(output) > kMaxUnread) {
        spdlog::warn("control connection pid={} closed reason=\"more than {} bytes of replies unread\"",
                     client.peer.pid, kMaxUnread);
        drop(client);
        return false;
    }
    evbuffer_add(output, json.data(), json.size());
    evbuffer_add(output, "\n", 1);
    return true;
}

void ControlServer::drop(Client& client) { clients_.erase(&client); }

} // namespace superd

#include "superd/builtins.h"

#include "superd/children.h"
#include "superd/event.h"
#include "superd/log.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>
#include <random>

namespace superd {

namespace {

constexpr int kDatagramBatch = 64;

// Writes into `control` a control message of `received`'s kind carrying
// `info`: the source address for sendmsg(). Returns its length.
template <typename PktInfo>
size_t reply_from(const cmsghdr& received, const PktInfo& info, std::array<char, 256>& control)
{
    auto* out = reinterpret_cast<cmsghdr*>(control.data());
    *out = received;
    out->cmsg_len = CMSG_LEN(sizeof info);
    std::memcpy(CMSG_DATA(out), &info, sizeof info);
    return CMSG_SPACE(sizeof info);
}

// The level of a connection's lines (but its failures'): a balancer's
// health checks, one every few seconds from each, are debugging matter.
spdlog::level::level_enum line_level(const Connection& connection)
{
    return connection.balancer_own ? spdlog::level::debug : spdlog::level::info;
}

} // namespace

evbuffer* BuiltinStream::input() const { return bufferevent_get_input(bev); }
evbuffer* BuiltinStream::output() const { return bufferevent_get_output(bev); }

void discard_input(BuiltinStream& s) { evbuffer_drain(s.input(), evbuffer_get_length(s.input())); }

struct Builtins::Stream {
    Stream(Builtins* builtins, const BuiltinKind& kind, bufferevent* buffer)
        : owner(builtins), stream{.kind = kind, .bev = buffer, .metrics = builtins->metrics_}, bev(buffer)
    {
    }

    Builtins* owner;
    // Declared before `bev`, so destroyed after it: the bufferevent lets go
    // of a file queued in its output before the stream closes the file.
    BuiltinStream stream;
    std::string service;
    SocketAddress peer;
    Bufferevent bev;
    Clock::time_point started = Clock::now();
    Admission::Ticket ticket;
    bool client_done = false;                              // its end of the connection closed or failed
    spdlog::level::level_enum level = spdlog::level::info; // of its lines, but for failures
};

// A relay with the connection it serves.
struct Builtins::Relayed {
    std::unique_ptr<Relay> relay;
    std::string service;
    SocketAddress peer;
    Clock::time_point started = Clock::now();
    Admission::Ticket ticket;
    spdlog::level::level_enum level = spdlog::level::info;
};

Builtins::Builtins(event_base* base, OnClose on_close, MetricsSource metrics)
    : base_(base), on_close_(std::move(on_close)), metrics_(std::move(metrics)), random_(std::random_device{}())
{
    refresh_interfaces();
}

// The relays go first: a relay's events and fds are freed before the
// streams', all before the event base.
Builtins::~Builtins() { relays_.clear(); }

void Builtins::serve(const ServiceConfig& service, Connection& connection)
{
    const BuiltinKind& kind = *service.builtin;
    if (kind.relay) {
        relay(service, connection);
        return;
    }
    if (int size = kind.send_buffer; size > 0)
        ::setsockopt(connection.fd.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    bufferevent* bev = bufferevent_socket_new(base_, connection.fd.get(), BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        spdlog::error("failed service={} peer={} reason=\"cannot create a buffer\"", service.name, connection.shown);
        closed(service.name, std::move(connection.ticket), connection.shown);
        return;
    }
    connection.fd.release(); // the bufferevent closes it
    auto c = std::make_unique<Stream>(this, kind, bev);
    c->service = service.name;
    c->peer = connection.shown;
    c->ticket = std::move(connection.ticket);
    c->level = line_level(connection);
    Stream* raw = c.get();
    live_.emplace(raw, std::move(c));

    bufferevent_setcb(bev, on_read, on_write, on_event, raw);
    if (kind.idle_timeout.count() > 0) {
        timeval idle = to_timeval(kind.idle_timeout);
        bufferevent_set_timeouts(bev, &idle, &idle);
    } else if (kind.stall_timeout.count() > 0) {
        timeval stall = to_timeval(kind.stall_timeout);
        bufferevent_set_timeouts(bev, nullptr, &stall);
    }
    if (kind.start)
        kind.start(raw->stream, service);
    if (raw->stream.failure) {
        spdlog::warn("failed service={} peer={} reason=\"{}\"", raw->service, raw->peer, *raw->stream.failure);
        close(raw);
        return;
    }
    // Writing is enabled once there is something to write: enabled on an
    // empty output, it would cost a wakeup and two epoll_ctl calls for
    // nothing.
    bool speaks_first = evbuffer_get_length(raw->stream.output()) > 0;
    if (raw->stream.closing && !speaks_first) { // said all it will, which is nothing (an empty file)
        close(raw);
        return;
    }
    bufferevent_enable(bev, speaks_first ? EV_READ | EV_WRITE : EV_READ);
}

void Builtins::relay(const ServiceConfig& service, Connection& connection)
{
    auto entry = std::make_unique<Relayed>();
    entry->service = service.name;
    entry->peer = connection.shown;
    entry->ticket = std::move(connection.ticket);
    entry->level = line_level(connection);
    entry->relay = service.builtin->relay(service, connection, pipes_);
    Relay* raw = entry->relay.get();
    relays_.emplace(raw, std::move(entry));
    raw->start(base_, [this, raw](const RelayEnd& end) { relay_closed(raw, end); });
    // `raw` may be gone already: a backend refused at once.
}

// The relay's last act: it may be destroyed here.
void Builtins::relay_closed(Relay* relay, const RelayEnd& end)
{
    auto it = relays_.find(relay);
    if (it == relays_.end())
        return;
    std::unique_ptr<Relayed> gone = std::move(it->second);
    relays_.erase(it);
    if (!end.refusal) {
        std::chrono::duration<double> ran = Clock::now() - gone->started;
        spdlog::log(gone->level, "closed service={} peer={} ran={:.3f}s {}", gone->service, gone->peer, ran.count(),
                    end.detail);
    }
    closed(gone->service, std::move(gone->ticket), gone->peer, end);
}

void Builtins::on_read(bufferevent*, void* ctx)
{
    auto* c = static_cast<Stream*>(ctx);
    c->stream.kind.on_input(c->stream);
}

// Called when the output has drained (the low watermark is 0).
void Builtins::on_write(bufferevent*, void* ctx)
{
    auto* c = static_cast<Stream*>(ctx);
    if (c->stream.closing) {
        c->owner->close(c);
        return;
    }
    if (c->stream.kind.on_drained)
        c->stream.kind.on_drained(c->stream);
}

void Builtins::on_event(bufferevent* bev, short what, void* ctx)
{
    auto* c = static_cast<Stream*>(ctx);
    // Nothing has moved for the row's idle timeout, or the client has
    // taken nothing for its stall timeout.
    if (what & BEV_EVENT_TIMEOUT) {
        bool stalled = c->stream.kind.idle_timeout.count() == 0;
        spdlog::log(c->level, "{} service={} peer={} (closing)", stalled ? "stalled" : "idle", c->service, c->peer);
        c->owner->close(c);
        return;
    }
    // libevent's word for a sendfile(2) that sent nothing: EAGAIN, or a file
    // that ended early. Writing has stopped; the row says whether it goes on.
    if ((what & BEV_EVENT_WRITING) && (what & BEV_EVENT_EOF) && c->stream.kind.on_write_stalled) {
        if (auto failure = c->stream.kind.on_write_stalled(c->stream)) {
            spdlog::warn("failed service={} peer={} reason=\"{}\"", c->service, c->peer, *failure);
            c->owner->close(c);
        } else {
            bufferevent_enable(bev, EV_WRITE);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        c->client_done = true;
    // The client is done sending: what is owed to it still goes out (echo's
    // backlog, daytime's line), then the connection closes.
    if ((what & BEV_EVENT_EOF) && c->stream.kind.owes_output && evbuffer_get_length(c->stream.output()) > 0) {
        c->stream.closing = true;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        c->owner->close(c);
}

void Builtins::close(Stream* c)
{
    // Input left unread makes the kernel end the connection with a reset,
    // not a FIN: a client that sent a line before reading daytime's would
    // get ECONNRESET. Whichever builtin closes first takes what has come in
    // first, up to 64 KiB.
    if (!c->client_done) {
        std::array<char, 4096> sink;
        int fd = bufferevent_getfd(c->bev.get());
        for (int i = 0; i < 16 && ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT) > 0; ++i) {
        }
    }
    std::chrono::duration<double> ran = Clock::now() - c->started;
    spdlog::log(c->level, "closed service={} peer={} ran={:.3f}s", c->service, c->peer, ran.count());
    std::string service = std::move(c->service);
    SocketAddress peer = c->peer;
    Admission::Ticket ticket = std::move(c->ticket);
    live_.erase(c);
    closed(service, std::move(ticket), peer);
}

void Builtins::closed(const std::string& service, Admission::Ticket ticket, const SocketAddress& peer,
                      const RelayEnd& end)
{
    if (on_close_)
        on_close_(service, std::move(ticket), peer, end);
}

void Builtins::refresh_interfaces()
{
    broadcasts_.clear();
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0)
        return;
    for (ifaddrs* i = list; i; i = i->ifa_next)
        if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr && i->ifa_broadaddr->sa_family == AF_INET)
            broadcasts_.push_back(reinterpret_cast<sockaddr_in*>(i->ifa_broadaddr)->sin_addr.s_addr);
    ::freeifaddrs(list);
}

void Builtins::set_udp_ports(std::vector<uint16_t> ports)
{
    std::sort(ports.begin(), ports.end());
    ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
    udp_ports_ = std::move(ports);
}

const char* datagram_refusal(const SocketAddress& source, const SocketAddress& destination,
                             std::span<const uint16_t> udp_ports, std::span<const in_addr_t> broadcasts)
{
    // Below 1024 live the services that answer anything, among them every
    // port FreeBSD and NetBSD inetd refuse by name (echo 7, discard 9,
    // daytime 13, chargen 19, time 37): answering one starts a loop between
    // two servers. Port 0 cannot be answered at all.
    if (source.port() < 1024)
        return "low_port";
    // A source on a port superd serves UDP on is superd itself, spoofed, or
    // the same service on another host: answering either loops. Compared by
    // port alone, on any address, as FreeBSD inetd's check_loop does: which
    // addresses are "ours" changes with the interfaces and with wildcard
    // listeners, and a genuine client on exactly one of these ports is rare
    // enough to lose.
    if (std::binary_search(udp_ports.begin(), udp_ports.end(), source.port()))
        return "loop";
    auto group_or_broadcast = [broadcasts](const SocketAddress& a) {
        if (a.family() == AF_INET) {
            in_addr_t addr = reinterpret_cast<const sockaddr_in&>(a.storage).sin_addr.s_addr;
            return IN_MULTICAST(ntohl(addr)) || addr == INADDR_BROADCAST || addr == INADDR_ANY
                   || std::find(broadcasts.begin(), broadcasts.end(), addr) != broadcasts.end();
        }
        const in6_addr& addr = reinterpret_cast<const sockaddr_in6&>(a.storage).sin6_addr;
        return IN6_IS_ADDR_MULTICAST(&addr) || IN6_IS_ADDR_UNSPECIFIED(&addr);
    };
    if (group_or_broadcast(source) || (destination.family() != AF_UNSPEC && group_or_broadcast(destination)))
        return "broadcast";
    return nullptr;
}

void Builtins::answer(const ServiceConfig& config, int fd,
                      const std::function<bool(const SocketAddress& source)>& admit)
{
    const std::string& service = config.name;
    const BuiltinKind& kind = *config.builtin;
    for (int i = 0; i < kDatagramBatch; ++i) {
        std::array<char, 65536> data;
        alignas(cmsghdr) std::array<char, 256> control;
        SocketAddress source;
        iovec iov{data.data(), data.size()};
        msghdr msg{};
        msg.msg_name = source.get();
        msg.msg_namelen = sizeof source.storage;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        // The socket may have been lent to a wait child, which leaves it
        // blocking: only this flag keeps the last read from waiting.
        ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                spdlog::warn("failed service={} reason=\"recvmsg: {}\"", service, std::strerror(errno));
            return;
        }
        source.length = msg.msg_namelen;

        // Where the datagram was sent: the reply comes from there.
        SocketAddress destination;
        alignas(cmsghdr) std::array<char, 256> reply_control{};
        size_t reply_control_length = 0;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                in_pktinfo info;
                std::memcpy(&info, CMSG_DATA(cm), sizeof info);
                auto& d = reinterpret_cast<sockaddr_in&>(destination.storage);
                d.sin_family = AF_INET;
                d.sin_addr = info.ipi_addr;
                destination.length = sizeof d;
                info.ipi_spec_dst = info.ipi_addr; // answer from there, on any interface
                info.ipi_ifindex = 0;
                reply_control_length = reply_from(*cm, info, reply_control);
            } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
                in6_pktinfo info;
                std::memcpy(&info, CMSG_DATA(cm), sizeof info);
                auto& d = reinterpret_cast<sockaddr_in6&>(destination.storage);
                d.sin6_family = AF_INET6;
                d.sin6_addr = info.ipi6_addr;
                destination.length = sizeof d;
                reply_control_length = reply_from(*cm, info, reply_control);
            }
        }
        const char* refusal = datagram_refusal(source, destination, udp_ports_, broadcasts_);
        if (!refusal && kind.amplifies && !config.allow_amplification)
            refusal = "amplification";
        if (refusal) {
            spdlog::debug("refused service={} peer={} reason={}", service, source, refusal);
            continue;
        }
        if (!admit(source))
            continue;
        auto reply = kind.datagram(config, std::string_view(data.data(), static_cast<size_t>(n)), random_);
        if (!reply)
            continue;
        iovec out_iov{reply->data(), reply->size()};
        msghdr out{};
        out.msg_name = source.get();
        out.msg_namelen = source.length;
        out.msg_iov = &out_iov;
        out.msg_iovlen = 1;
        out.msg_control = reply_control_length ? reply_control.data() : nullptr;
        out.msg_controllen = reply_control_length;
        if (::sendmsg(fd, &out, MSG_DONTWAIT) < 0)
            spdlog::debug("failed service={} peer={} reason=\"sendmsg: {}\"", service, source, std::strerror(errno));
    }
}

} // namespace superd

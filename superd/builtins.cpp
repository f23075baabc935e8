#include "superd/builtins.h"

#include "superd/children.h"
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

namespace rfc {

uint32_t time_since_1900(int64_t unix_seconds)
{
    // 70 years, 17 of them leap years.
    constexpr int64_t kFrom1900To1970 = 2208988800;
    return static_cast<uint32_t>(static_cast<uint64_t>(unix_seconds + kFrom1900To1970));
}

std::string daytime(int64_t unix_seconds)
{
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm local{};
    char line[128];
    if (!::localtime_r(&t, &local) || std::strftime(line, sizeof line, "%A, %B %d, %Y %H:%M:%S-%Z\r\n", &local) == 0)
        return "unknown\r\n";
    return line;
}

std::string_view chargen_line(uint64_t n)
{
    constexpr size_t kPrintable = 95, kWidth = 72;
    // The pattern twice over, so any line is one contiguous slice of it.
    static const std::string pattern = [] {
        std::string p;
        for (size_t i = 0; i < 2 * kPrintable; ++i)
            p.push_back(static_cast<char>(' ' + i % kPrintable));
        return p;
    }();
    static const std::array<std::string, kPrintable> lines = [] {
        std::array<std::string, kPrintable> all;
        for (size_t i = 0; i < kPrintable; ++i)
            all[i] = pattern.substr(i, kWidth) + "\r\n";
        return all;
    }();
    return lines[n % kPrintable];
}

} // namespace rfc

namespace {

constexpr int kDatagramBatch = 64;

struct BuffereventDeleter {
    void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

std::optional<std::string> echo_datagram(std::string_view request, std::mt19937&)
{
    return std::string(request); // never more than came in
}

std::optional<std::string> discard_datagram(std::string_view, std::mt19937&) { return std::nullopt; }

std::optional<std::string> chargen_datagram(std::string_view, std::mt19937& random)
{
    // RFC 864: a datagram of a random length from 0 to 512 characters.
    size_t length = std::uniform_int_distribution<size_t>(0, 512)(random);
    std::string reply;
    for (uint64_t line = random(); reply.size() < length; ++line)
        reply.append(rfc::chargen_line(line));
    reply.resize(length);
    return reply;
}

std::optional<std::string> daytime_datagram(std::string_view, std::mt19937&) { return rfc::daytime(now_seconds()); }

std::optional<std::string> time_datagram(std::string_view, std::mt19937&)
{
    uint32_t t = htonl(rfc::time_since_1900(now_seconds()));
    return std::string(reinterpret_cast<const char*>(&t), sizeof t);
}

// What differs between the builtins, one row each.
struct KindRow {
    Builtin kind;
    // The reply to one datagram, or none.
    std::optional<std::string> (*datagram)(std::string_view request, std::mt19937& random);
    // The reply can be many times the request: answered over UDP only with
    // allow_amplification. daytime's line (under 64 bytes) and time's 4
    // bytes are not: with the 28 bytes of headers every datagram carries,
    // even an empty one, they reply at most about 3 bytes for 1.
    bool amplifies;
    // How much a TCP connection queues in superd before it stops reading
    // (echo) or refilling (chargen).
    size_t output_limit;
    // SO_SNDBUF for a TCP connection, 0 for the system's autotuning, which
    // on a fast path grows each never-reading client's buffer to megabytes.
    int send_buffer;
};

constexpr KindRow kKinds[] = {
    {Builtin::kEcho, echo_datagram, false, 64 * 1024, 0},
    {Builtin::kDiscard, discard_datagram, false, 0, 0},
    {Builtin::kChargen, chargen_datagram, true, 16 * 1024, 16 * 1024},
    {Builtin::kDaytime, daytime_datagram, false, 0, 0},
    {Builtin::kTime, time_datagram, false, 0, 0},
};

const KindRow& row_of(Builtin kind)
{
    for (const KindRow& row : kKinds)
        if (row.kind == kind)
            return row;
    return kKinds[0]; // unreachable: every kind has a row
}

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

} // namespace

struct Builtins::Connection {
    Builtins* owner;
    Builtin kind;
    std::string service;
    SocketAddress peer;
    std::unique_ptr<bufferevent, BuffereventDeleter> bev;
    Clock::time_point started = Clock::now();
    std::function<void()> on_close;
    uint64_t chargen_next = 0;
    bool closing = false;     // the client is done; flush, then close
    bool client_done = false; // its end of the connection closed or failed

    evbuffer* output() const { return bufferevent_get_output(bev.get()); }
};

Builtins::Builtins(event_base* base) : base_(base), random_(std::random_device{}()) { refresh_interfaces(); }

Builtins::~Builtins() = default;

void Builtins::serve(Builtin kind, const std::string& service, UniqueFd connection, const SocketAddress& peer,
                     std::function<void()> on_close)
{
    if (int size = row_of(kind).send_buffer; size > 0)
        ::setsockopt(connection.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    bufferevent* bev = bufferevent_socket_new(base_, connection.get(), BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        spdlog::error("failed service={} peer={} reason=\"cannot create a buffer\"", service, peer);
        on_close();
        return;
    }
    connection.release(); // the bufferevent closes it
    auto c = std::make_unique<Connection>();
    c->owner = this;
    c->kind = kind;
    c->service = service;
    c->peer = peer;
    c->bev.reset(bev);
    c->on_close = std::move(on_close);
    Connection* raw = c.get();
    live_.emplace(raw, std::move(c));

    bufferevent_setcb(bev, on_read, on_write, on_event, raw);
    // Writing is enabled once there is something to write: enabled on an
    // empty output, it would cost a wakeup and two epoll_ctl calls for
    // nothing.
    bool owes = kind == Builtin::kDaytime || kind == Builtin::kTime || kind == Builtin::kChargen;
    bufferevent_enable(bev, owes ? EV_READ | EV_WRITE : EV_READ);
    switch (kind) {
    case Builtin::kDaytime: {
        std::string line = rfc::daytime(now_seconds());
        evbuffer_add(raw->output(), line.data(), line.size());
        raw->closing = true;
        break;
    }
    case Builtin::kTime: {
        uint32_t t = htonl(rfc::time_since_1900(now_seconds()));
        evbuffer_add(raw->output(), &t, sizeof t);
        raw->closing = true;
        break;
    }
    case Builtin::kChargen:
        on_write(bev, raw);
        break;
    case Builtin::kEcho:
    case Builtin::kDiscard:
        break;
    }
}

void Builtins::on_read(bufferevent* bev, void* ctx)
{
    auto* c = static_cast<Connection*>(ctx);
    evbuffer* input = bufferevent_get_input(bev);
    if (c->kind != Builtin::kEcho) {
        evbuffer_drain(input, evbuffer_get_length(input));
        return;
    }
    evbuffer_add_buffer(c->output(), input);
    bufferevent_enable(bev, EV_WRITE);
    if (evbuffer_get_length(c->output()) >= row_of(c->kind).output_limit)
        bufferevent_disable(bev, EV_READ); // until the client reads
}

// Called when the output has drained (the low watermark is 0).
void Builtins::on_write(bufferevent* bev, void* ctx)
{
    auto* c = static_cast<Connection*>(ctx);
    if (c->closing) {
        c->owner->close(c);
        return;
    }
    if (c->kind == Builtin::kEcho) {
        bufferevent_enable(bev, EV_READ);
    } else if (c->kind == Builtin::kChargen) {
        while (evbuffer_get_length(c->output()) < row_of(c->kind).output_limit) {
            std::string_view line = rfc::chargen_line(c->chargen_next++);
            evbuffer_add(c->output(), line.data(), line.size());
        }
    }
}

void Builtins::on_event(bufferevent*, short what, void* ctx)
{
    auto* c = static_cast<Connection*>(ctx);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        c->client_done = true;
    // The client is done sending: what is owed to it still goes out (echo's
    // backlog, daytime's line), then the connection closes. chargen owes
    // nothing.
    if ((what & BEV_EVENT_EOF) && c->kind != Builtin::kChargen && evbuffer_get_length(c->output()) > 0) {
        c->closing = true;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        c->owner->close(c);
}

void Builtins::close(Connection* c)
{
    // Input left unread makes the kernel end the connection with a reset,
    // not a FIN: a client that sent a line before reading daytime's would
    // get ECONNRESET. What has come in is taken first, up to 64 KiB.
    if (!c->client_done) {
        std::array<char, 4096> sink;
        int fd = bufferevent_getfd(c->bev.get());
        for (int i = 0; i < 16 && ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT) > 0; ++i) {
        }
    }
    std::chrono::duration<double> ran = Clock::now() - c->started;
    spdlog::info("closed service={} peer={} ran={:.3f}s", c->service, c->peer, ran.count());
    auto on_close = std::move(c->on_close);
    live_.erase(c);
    on_close();
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
    const KindRow& kind = row_of(config.builtin.value_or(Builtin::kDiscard));
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
        auto reply = kind.datagram(std::string_view(data.data(), static_cast<size_t>(n)), random_);
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

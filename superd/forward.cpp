#include "superd/forward.h"

#include "superd/log.h"
#include "superd/proxy_header.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace superd {

namespace {

// At most what a pipe holds; the kernel moves less when it has less.
constexpr size_t kSpliceMax = 1 << 20;
// A direction that has moved this much is a bulk transfer: its pipe grows
// from the default 64 KiB to kBulkPipe, and each splice moves up to that
// much. Short exchanges never pay for the larger pipe.
constexpr uint64_t kBulk = 1 << 20;
constexpr int kBulkPipe = 1 << 20;
// Passes of one direction per wakeup: a fast pair of sockets must not keep
// the loop from everyone else. Level-triggered events bring it back.
constexpr int kPasses = 16;
// A read shorter than this is taken as all the socket had.
constexpr size_t kShortRead = 16 * 1024;

std::string error_text(const char* what, int error) { return std::string(what) + ": " + std::strerror(error); }

void no_delay(int fd)
{
    int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

} // namespace

ForwardRelay::ForwardRelay(const ServiceConfig& config, Connection& connection, PipePool& pipes)
    : backend_(config.forward_to), connect_timeout_(config.connect_timeout), send_proxy_(config.send_proxy),
      peer_(connection.peer), local_(connection.local), pipes_(pipes), client_(std::move(connection.fd))
{
}

// Events first, then the fds they watch: the members' order does it.
ForwardRelay::~ForwardRelay() = default;

void ForwardRelay::start(event_base* base, Closed closed)
{
    closed_ = std::move(closed);
    server_ = UniqueFd(::socket(backend_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!server_) {
        int e = errno;
        refuse(e == EMFILE || e == ENFILE ? "fds" : "backend", error_text("socket", e));
        return;
    }
    if (backend_.family() != AF_UNIX) {
        no_delay(server_.get());
        no_delay(client_.get());
    }
    if (::connect(server_.get(), backend_.get(), backend_.length) != 0 && errno != EINPROGRESS) {
        // A unix socket says EAGAIN when its backlog is full: it refuses.
        int e = errno;
        refuse("backend", e == EAGAIN ? "connect: the backend's backlog is full" : error_text("connect", e));
        return;
    }
    // Connected or not, the answer comes as writability (at once when the
    // connect is done already), or the timeout.
    connecting_.reset(event_new(base, server_.get(), EV_WRITE, on_connect, this));
    client_read_.ev.reset(event_new(base, client_.get(), EV_READ | EV_PERSIST, on_io, this));
    client_write_.ev.reset(event_new(base, client_.get(), EV_WRITE | EV_PERSIST, on_io, this));
    server_read_.ev.reset(event_new(base, server_.get(), EV_READ | EV_PERSIST, on_io, this));
    server_write_.ev.reset(event_new(base, server_.get(), EV_WRITE | EV_PERSIST, on_io, this));
    timeval limit = to_timeval(connect_timeout_);
    bool made = connecting_ && client_read_.ev && client_write_.ev && server_read_.ev && server_write_.ev;
    if (!made || event_add(connecting_.get(), &limit) != 0) {
        refuse("backend", "cannot watch the connect");
        return;
    }
}

void ForwardRelay::on_connect(evutil_socket_t, short what, void* self)
{
    auto* relay = static_cast<ForwardRelay*>(self);
    if (what & EV_TIMEOUT) {
        relay->refuse("backend", "connect timed out after " + std::to_string(relay->connect_timeout_.count()) + "ms");
        return;
    }
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(relay->server_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0)
        error = errno;
    if (error != 0) {
        relay->refuse("backend", error_text("connect", error));
        return;
    }
    relay->connected();
}

void ForwardRelay::connected()
{
    connecting_.reset();
    for (Direction* d : {&up_, &down_}) {
        auto pipe = pipes_.take();
        if (!pipe) {
            int e = errno;
            refuse(e == EMFILE || e == ENFILE ? "fds" : "backend", error_text("pipe", e));
            return;
        }
        d->pipe = std::move(*pipe);
    }
    up_.from = client_.get();
    up_.to = server_.get();
    down_.from = server_.get();
    down_.to = client_.get();
    if (send_proxy_ != ProxyVersion::kNone)
        header_length_ = write_header();
    pump(true, true);
}

// Only the direction the event is for: the other's socket has not said it
// is ready, and a splice there would only meet EAGAIN.
void ForwardRelay::on_io(evutil_socket_t fd, short what, void* self)
{
    auto* relay = static_cast<ForwardRelay*>(self);
    bool client = fd == relay->client_.get();
    bool up = client ? (what & EV_READ) : (what & EV_WRITE);
    bool down = client ? (what & EV_WRITE) : (what & EV_READ);
    relay->pump(up, down);
}

void ForwardRelay::pump(bool up, bool down)
{
    std::optional<std::string> failure = send_header();
    if (!failure && up)
        failure = pump(up_, down_, header_at_ == header_length_);
    if (!failure && down)
        failure = pump(down_, up_, true);
    if (failure) {
        abort(*failure);
        return;
    }
    if (up_.shut && down_.shut) {
        finish(RelayEnd{nullptr, moved()});
        return;
    }
    client_read_.want(!up_.ended && up_.queued == 0);
    server_write_.want(up_.queued > 0 || header_at_ < header_length_);
    server_read_.want(!down_.ended && down_.queued == 0);
    client_write_.want(down_.queued > 0);
}

std::optional<std::string> ForwardRelay::pump(Direction& d, const Direction& other, bool may_write)
{
    for (int pass = 0; pass < kPasses; ++pass) {
        size_t read = 0;
        // Only into an empty pipe: EAGAIN then means the socket is empty,
        // never that the pipe has no slot left.
        if (!d.ended && d.queued == 0) {
            ssize_t n =
                ::splice(d.from, nullptr, d.pipe.write.get(), nullptr, kSpliceMax, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0)
                read = static_cast<size_t>(n);
            else if (n == 0)
                d.ended = true;
            else if (errno != EAGAIN && errno != EINTR)
                return error_text(d.from_name, errno);
            d.queued += read;
        }
        if (d.queued > 0 && may_write) {
            ssize_t n =
                ::splice(d.pipe.read.get(), nullptr, d.to, nullptr, d.queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d.queued -= static_cast<size_t>(n);
                d.moved += static_cast<uint64_t>(n);
                if (d.moved >= kBulk && !d.grown) {
                    // Past /proc/sys/fs/pipe-max-size, or the user's pipe
                    // pages, the kernel refuses: the pipe stays as it is.
                    ::fcntl(d.pipe.write.get(), F_SETPIPE_SZ, kBulkPipe);
                    d.grown = true;
                }
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return error_text(d.to_name, errno);
            }
        }
        // The source's EOF, carried across once all it sent (and the PROXY
        // header before it) has gone. When the other way is over too, the
        // relay closes both sockets now, and the close says it.
        if (d.ended && d.queued == 0 && !d.shut && may_write) {
            d.shut = true;
            if (!other.shut && ::shutdown(d.to, SHUT_WR) != 0 && errno != ENOTCONN)
                return error_text(d.to_name, errno);
        }
        // Again only after a full read that has all gone: a short read was
        // likely all there was, and the loop says when more comes.
        if (d.ended || d.queued > 0 || read < kShortRead)
            break;
    }
    return std::nullopt;
}

size_t ForwardRelay::write_header()
{
    if (send_proxy_ == ProxyVersion::kV1) {
        std::array<char, 108> line;
        std::string_view text = write_proxy_v1(peer_, local_, line);
        std::memcpy(header_.data(), text.data(), text.size());
        return text.size();
    }
    std::span<const uint8_t> bytes = write_proxy_v2(peer_, local_, header_);
    return bytes.size();
}

// The PROXY header goes before any byte of the client's. A new
// connection's buffer takes it whole (it is smaller than a segment), but a
// short write is carried on with the next writability all the same.
std::optional<std::string> ForwardRelay::send_header()
{
    while (header_at_ < header_length_) {
        ssize_t n = ::send(server_.get(), header_.data() + header_at_, header_length_ - header_at_,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            header_at_ += static_cast<size_t>(n);
        } else if (errno == EAGAIN || errno == EINTR) {
            return std::nullopt;
        } else {
            return error_text("backend", errno);
        }
    }
    return std::nullopt;
}

void ForwardRelay::refuse(const char* reason, const std::string& error)
{
    std::string detail = fmt::format("backend={} error=\"{}\"", backend_, error);
    finish(RelayEnd{reason, std::move(detail)});
}

void ForwardRelay::abort(const std::string& error)
{
    reset_on_close(client_.get());
    reset_on_close(server_.get());
    finish(RelayEnd{nullptr, fmt::format("{} error=\"{}\"", moved(), error)});
}

std::string ForwardRelay::moved() const { return fmt::format("up={} down={}", up_.moved, down_.moved); }

void ForwardRelay::finish(RelayEnd end)
{
    connecting_.reset();
    for (Interest* interest : {&client_read_, &client_write_, &server_read_, &server_write_})
        interest->ev.reset();
    client_.reset();
    server_.reset();
    // An empty pipe of the default size serves the next connection.
    for (Direction* d : {&up_, &down_})
        if (d->pipe.read && d->queued == 0 && !d->grown)
            pipes_.give(std::move(d->pipe));
    up_ = Direction{};
    down_ = Direction{};
    Closed closed = std::move(closed_);
    closed(end); // may destroy `this`
}

std::unique_ptr<Relay> make_forward_relay(const ServiceConfig& config, Connection& connection, PipePool& pipes)
{
    return std::make_unique<ForwardRelay>(config, connection, pipes);
}

} // namespace superd

#include "superd/tls_stage.h"

#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

namespace superd {

namespace {

// A TLS record's plaintext is at most 16 KiB: a buffer takes one whole.
constexpr size_t kBuffer = 16 * 1024;
// Rounds of both ways per wakeup, so that one bulk transfer cannot keep the
// loop from everything else; what is left is taken up on the next turn.
constexpr int kRounds = 16;

std::string call_error(const char* what, int error) { return std::string(what) + ": " + std::strerror(error); }

// One connection's handshake. The connection stays in the pipeline's
// flight until `done`, so holding a reference to it is safe.
class Handshake final : public Stage::Run {
public:
    Handshake(event_base* base, Connection& connection, std::shared_ptr<const TlsContext> context, UniqueSsl ssl,
              Stage::Done done)
        : connection_(connection), context_(std::move(context)), ssl_(std::move(ssl)), done_(std::move(done)),
          readable_(event_new(base, connection.fd.get(), EV_READ, on_ready, this)),
          writable_(event_new(base, connection.fd.get(), EV_WRITE, on_ready, this))
    {
    }

    // Takes the handshake as far as it goes now; the rest from the loop.
    void step()
    {
        ERR_clear_error();
        int result = SSL_accept(ssl_.get());
        if (result == 1) {
            handed_on();
            return;
        }
        switch (SSL_get_error(ssl_.get(), result)) {
        case SSL_ERROR_WANT_READ:
            event_add(readable_.get(), nullptr);
            return;
        case SSL_ERROR_WANT_WRITE:
            event_add(writable_.get(), nullptr);
            return;
        default:
            fail(tls_failure(ssl_.get(), result));
        }
    }

private:
    static void on_ready(evutil_socket_t, short, void* self) { static_cast<Handshake*>(self)->step(); }

    // The service gets one end of a socketpair, the relay the other and
    // the client's socket with its session.
    void handed_on()
    {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
            fail(call_error("socketpair", errno));
            return;
        }
        UniqueFd service(pair[0]), relay(pair[1]);
        // The service's end blocks, as an accepted socket does for a
        // program (a builtin sets its own non-blocking); the relay's not.
        set_nonblocking(relay.get(), true);
        for (std::string& var : tls_environment(ssl_.get()))
            connection_.environment.push_back(std::move(var));
        connection_.relay =
            std::make_unique<TlsRelay>(std::move(connection_.fd), std::move(ssl_), context_, std::move(relay));
        connection_.fd = std::move(service);
        Stage::finish(done_, std::nullopt); // may destroy `this`
    }

    void fail(std::string reason) { Stage::finish(done_, std::move(reason)); }

    Connection& connection_;
    std::shared_ptr<const TlsContext> context_;
    UniqueSsl ssl_;
    Stage::Done done_;
    Event readable_, writable_;
};

} // namespace

std::unique_ptr<Stage::Run> TlsStage::start(event_base* base, Connection& connection, Done done)
{
    UniqueSsl ssl = context_->new_session();
    if (!ssl || SSL_set_fd(ssl.get(), connection.fd.get()) != 1) {
        ERR_clear_error();
        done("cannot make a TLS session (out of memory)");
        return nullptr;
    }
    SSL_set_accept_state(ssl.get());
    auto run = std::make_unique<Handshake>(base, connection, context_, std::move(ssl), std::move(done));
    run->step(); // a done() from here is taken up by the pipeline when start() returns
    return run;
}

TlsRelay::TlsRelay(UniqueFd client, UniqueSsl ssl, std::shared_ptr<const TlsContext> context, UniqueFd service)
    : client_(std::move(client)), ssl_(std::move(ssl)), context_(std::move(context)), service_(std::move(service))
{
}

TlsRelay::~TlsRelay() = default;

void TlsRelay::start(event_base* base, Closed closed)
{
    closed_ = std::move(closed);
    buffers_ = std::make_unique<char[]>(2 * kBuffer);
    up_.data = buffers_.get();
    down_.data = buffers_.get() + kBuffer;
    client_read_.ev.reset(event_new(base, client_.get(), EV_READ | EV_PERSIST, on_io, this));
    client_write_.ev.reset(event_new(base, client_.get(), EV_WRITE | EV_PERSIST, on_io, this));
    service_read_.ev.reset(event_new(base, service_.get(), EV_READ | EV_PERSIST, on_io, this));
    service_write_.ev.reset(event_new(base, service_.get(), EV_WRITE | EV_PERSIST, on_io, this));
    resume_.reset(event_new(base, -1, 0, on_io, this));
    pump();
}

void TlsRelay::service_ended()
{
    if (!client_)
        return; // over already
    service_gone();
    pump();
}

void TlsRelay::service_gone()
{
    up_.start = up_.end = 0;
    up_.ended = up_.shut = progress_ = true;
}

void TlsRelay::on_io(evutil_socket_t, short, void* self) { static_cast<TlsRelay*>(self)->pump(); }

void TlsRelay::pump()
{
    int pass = 0;
    for (; pass < kRounds; ++pass) {
        progress_ = false;
        std::optional<std::string> failure = up();
        if (!failure)
            failure = down();
        if (failure) {
            finish(std::move(failure));
            return;
        }
        if (up_.shut && down_.shut) {
            finish(std::nullopt);
            return;
        }
        if (!progress_)
            break;
    }
    // Still moving after every pass: the next turn of the loop goes on. An
    // event of its own, which no change of interest below can cancel.
    if (pass == kRounds)
        event_active(resume_.get(), 0, 0);
    client_read_.want(read_waits_ == Wait::kRead || write_waits_ == Wait::kRead);
    client_write_.want(read_waits_ == Wait::kWrite || write_waits_ == Wait::kWrite);
    service_read_.want(!down_.ended && down_.empty());
    service_write_.want(service_full_ && !up_.empty());
}

std::optional<std::string> TlsRelay::up()
{
    read_waits_ = Wait::kNothing;
    if (!up_.ended && up_.empty()) {
        ERR_clear_error();
        int n = SSL_read(ssl_.get(), up_.data, static_cast<int>(kBuffer));
        if (n > 0) {
            up_.start = 0;
            up_.end = static_cast<size_t>(n);
            progress_ = true;
        } else if (SSL_get_error(ssl_.get(), n) == SSL_ERROR_ZERO_RETURN) {
            up_.ended = progress_ = true; // close_notify, or a FIN (SSL_OP_IGNORE_UNEXPECTED_EOF)
        } else if (auto failure = blocked(n, read_waits_)) {
            return failure;
        }
    }
    if (!up_.empty()) {
        ssize_t n = ::send(service_.get(), up_.data + up_.start, up_.end - up_.start, MSG_NOSIGNAL | MSG_DONTWAIT);
        service_full_ = false;
        if (n > 0) {
            progress_ = true;
            up_.sent(static_cast<size_t>(n));
        } else if (errno == EAGAIN) {
            service_full_ = true;
        } else if (errno != EINTR) {
            // The service reads no more (it closed, or exited): what the
            // client sends is dropped, as the kernel would drop it.
            service_gone();
        }
    }
    if (up_.ended && up_.empty() && !up_.shut) {
        up_.shut = progress_ = true;
        if (!down_.shut && ::shutdown(service_.get(), SHUT_WR) != 0 && errno != ENOTCONN)
            return call_error("service", errno);
    }
    return std::nullopt;
}

std::optional<std::string> TlsRelay::down()
{
    write_waits_ = Wait::kNothing;
    if (!down_.ended && down_.empty()) {
        ssize_t n = ::recv(service_.get(), down_.data, kBuffer, MSG_DONTWAIT);
        if (n > 0) {
            down_.start = 0;
            down_.end = static_cast<size_t>(n);
            progress_ = true;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            down_.ended = progress_ = true; // its end, or a reset
            // Closed entirely (HUP), not only its output shut: as a TCP
            // connection closed by its program, the client is done with too.
            pollfd hup{service_.get(), 0, 0};
            if (!up_.shut && ::poll(&hup, 1, 0) == 1 && (hup.revents & POLLHUP))
                service_gone();
        }
    }
    if (!down_.empty()) {
        ERR_clear_error();
        int n = SSL_write(ssl_.get(), down_.data + down_.start, static_cast<int>(down_.end - down_.start));
        if (n > 0) {
            progress_ = true;
            down_.sent(static_cast<size_t>(n));
        } else if (auto failure = blocked(n, write_waits_)) {
            return failure;
        }
    }
    // The service's end of input: close_notify, then a FIN, to the client.
    if (down_.ended && down_.empty() && !down_.shut) {
        ERR_clear_error();
        int result = SSL_shutdown(ssl_.get());
        if (result >= 0) {
            down_.shut = progress_ = true;
            if (!up_.shut && ::shutdown(client_.get(), SHUT_WR) != 0 && errno != ENOTCONN)
                return call_error("client", errno);
        } else if (auto failure = blocked(result, write_waits_)) {
            return failure;
        }
    }
    return std::nullopt;
}

std::optional<std::string> TlsRelay::blocked(int result, Wait& waits)
{
    int saved = errno;
    switch (SSL_get_error(ssl_.get(), result)) {
    case SSL_ERROR_WANT_READ:
        waits = Wait::kRead;
        return std::nullopt;
    case SSL_ERROR_WANT_WRITE:
        waits = Wait::kWrite;
        return std::nullopt;
    default:
        errno = saved;
        return "client: " + tls_failure(ssl_.get(), result);
    }
}

void TlsRelay::finish(std::optional<std::string> error)
{
    if (error)
        reset_on_close(client_.get());
    for (Interest* interest : {&client_read_, &client_write_, &service_read_, &service_write_})
        interest->ev.reset();
    resume_.reset();
    ssl_.reset();
    client_.reset();
    service_.reset();
    buffers_.reset();
    std::string detail = fmt::format("up={} down={}", up_.moved, down_.moved);
    if (error)
        detail += fmt::format(" error=\"{}\"", *error);
    Closed closed = std::move(closed_);
    closed(RelayEnd{nullptr, std::move(detail)}); // may destroy `this`
}

} // namespace superd

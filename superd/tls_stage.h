// TLS on the connection path: the stage that runs a connection's handshake
// on superd's loop, and the relay that carries the plaintext afterwards.
//
// The handshake comes after admission and before anything serves the
// connection: a client that never finishes one costs a few kilobytes and
// a descriptor until the stage's deadline (handshake_timeout), never a
// process. Its failures are the stage's reasons, in OpenSSL's words.
//
// Once it is done, the stage makes a socketpair. The service gets one end
// in place of the client's socket, whatever it is: a program's fds 0, 1
// and 2, a builtin's stream, a forward's client side. So every kind of
// service works behind TLS unchanged, and a program's getpeername(0) names
// the socketpair, not the client: the client is in its environment
// (REMOTE_ADDR, ...), with the handshake's facts (tls_environment()). The
// TlsRelay keeps the client's socket and its SSL, and the other end.
//
// TlsRelay: SSL_read from the client into a buffer, then send() to the
// service; recv() from the service into another, then SSL_write to the
// client. A direction reads only into its empty buffer and writes until it
// is empty, so a side that does not read stops the other (backpressure
// both ways), and at most two 16 KiB buffers are held per connection.
// Half-close is carried across: the client's close_notify (or FIN) becomes
// shutdown(SHUT_WR) towards the service once its buffer has drained, and
// the service's end of input a close_notify and a FIN to the client. The
// relay is over when both ways have ended; a reset or a TLS error on
// either side ends it at once, resetting the client (SO_LINGER 0) and
// closing the service's end, which then reads EOF or gets EPIPE. A service
// that is gone entirely (its end closed by all who held it, or its
// program's session over, as the daemon tells service_ended()) ends the
// way from the client too: as with a TCP connection its program closed, a
// client that neither sends nor closes cannot keep the connection. Every
// descriptor it holds is closed when it reports that it has closed.
//
// The relay keeps the TlsContext its connection started with: a reload
// that loads a new certificate leaves established connections alone.
#pragma once

#include "superd/connection.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/tls.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace superd {

class TlsStage final : public Stage {
public:
    explicit TlsStage(std::shared_ptr<const TlsContext> context) : context_(std::move(context)) {}

    const char* name() const override { return "tls"; }
    const char* awaiting() const override { return "handshake"; }
    std::chrono::milliseconds deadline() const override { return context_->settings().handshake_timeout; }
    std::unique_ptr<Run> start(event_base* base, Connection& connection, Done done) override;

private:
    std::shared_ptr<const TlsContext> context_;
};

class TlsRelay final : public Relay {
public:
    // `client` is the TCP connection, non-blocking, with `ssl` on it past
    // its handshake; `service` is the relay's end of the socketpair.
    TlsRelay(UniqueFd client, UniqueSsl ssl, std::shared_ptr<const TlsContext> context, UniqueFd service);
    ~TlsRelay() override;

    void start(event_base* base, Closed closed) override;
    void service_ended() override;

private:
    // One way through the relay and the bytes waiting in it.
    struct Way {
        char* data = nullptr;
        size_t start = 0, end = 0;
        bool ended = false; // its source has no more
        bool shut = false;  // ...and its destination has been told
        uint64_t moved = 0;
        bool empty() const { return start == end; }
        // `n` bytes of it have been passed on.
        void sent(size_t n)
        {
            start += n;
            moved += n;
            if (empty())
                start = end = 0;
        }
    };
    // What the last SSL_read, SSL_write or SSL_shutdown waits for.
    enum class Wait { kNothing, kRead, kWrite };

    static void on_io(evutil_socket_t, short, void* self);
    // Moves what can be moved both ways, then watches what it waits for;
    // ends the relay (and `this`) when both ways are over or one failed.
    void pump();
    // Nothing will read what the client sends: it is dropped from now on.
    void service_gone();
    std::optional<std::string> up();   // client to service
    std::optional<std::string> down(); // service to client
    // After an SSL call that returned `result` (not a success): what it
    // waits for, into `waits`, or why it failed.
    std::optional<std::string> blocked(int result, Wait& waits);
    void finish(std::optional<std::string> error);

    UniqueFd client_;
    UniqueSsl ssl_;
    std::shared_ptr<const TlsContext> context_;
    UniqueFd service_;
    std::unique_ptr<char[]> buffers_;
    Way up_, down_;
    Wait read_waits_ = Wait::kNothing;  // SSL_read, for up
    Wait write_waits_ = Wait::kNothing; // SSL_write or SSL_shutdown, for down
    bool service_full_ = false;         // send() to the service would block
    bool progress_ = false;             // this pass of pump() has moved something
    Interest client_read_, client_write_, service_read_, service_write_;
    Event resume_; // a pump() that stopped with work left goes on from the loop
    Closed closed_;
};

} // namespace superd

// fetch: a bulk-transfer client, single-threaded on epoll, for throughput
// (MB/s) where loadgen measures connections per second. A round opens
// CONNECTIONS connections at once; each optionally sends BYTES and then
// half-closes, and reads to EOF, counting and dropping what it reads. The
// next round starts when every connection of this one has ended. Prints one
// machine-readable line on stdout (MB = 10^6 bytes; seconds is the sum of
// the rounds' wall time, from the first connect to the last EOF):
//   bytes=... seconds=... mb_per_s=... connections=... errors=...
// Exit status: 0 no errors, 1 errors (a refused, reset or timed-out
// connection, or one that read nothing), 2 bad command line.
//
//   g++ -std=c++20 -O2 -I. -o fetch bench/fetch.cpp
//   fetch --port P [--host 127.0.0.1] [--connections 4] [--repeat 1]
//         [--send 0] [--timeout 60] [--tls CAFILE]
//
// --timeout bounds each round; what has not ended by then counts as an error.
//
// With --tls CAFILE each connection is a TLS client (bench/tls_client.h):
// a full handshake verified against CAFILE, then the same sending and
// reading through TLS, written and read at once (with --send, through an
// echo: BYTES each way), the half-close being the client's close_notify
// and the end the server's. A server that ends without a close_notify
// counts as an error.
#include "bench/tls_client.h"
#include "bench/tools.h"

#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    int connections = 4;
    int repeat = 1;
    long long send = 0;
    double timeout = 60.0;
    std::string tls_ca; // empty: plain TCP
};

const bench::CommandLine kCommandLine{"fetch",
                                      "usage: fetch --port P [--host 127.0.0.1] [--connections 4] [--repeat 1]\n"
                                      "             [--send 0] [--timeout 60] [--tls CAFILE]\n"};

Options parse_args(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        std::string_view value = kCommandLine.value_of(argc, argv, i);
        if (flag == "--port")
            o.port = kCommandLine.number<int>(flag, value, 1, 65535);
        else if (flag == "--host")
            o.host = value;
        else if (flag == "--connections")
            o.connections = kCommandLine.number<int>(flag, value, 1, 100'000);
        else if (flag == "--repeat")
            o.repeat = kCommandLine.number<int>(flag, value, 1, 1'000'000);
        else if (flag == "--send")
            o.send = kCommandLine.number<long long>(flag, value, 0, 1LL << 50);
        else if (flag == "--timeout")
            o.timeout = kCommandLine.number<double>(flag, value, 0.001, 1e7);
        else if (flag == "--tls")
            o.tls_ca = value;
        else
            kCommandLine.fail("unknown option " + std::string(flag));
    }
    if (o.port == 0)
        kCommandLine.fail("--port is required");
    return o;
}

struct Conn {
    int fd = -1;
    bool connected = false;
    long long to_send = 0; // bytes still to send before the half-close
    bool half_closed = false;
    long long received = 0;
    bench::UniqueSsl ssl; // with --tls only
    bool handshaken = false;
};

class Fetch {
public:
    // `tls` (not owned) is the client context of --tls; null for plain TCP.
    Fetch(const Options& o, const bench::Address& to, SSL_CTX* tls)
        : opt_(o), to_(to), tls_(tls), conns_(static_cast<size_t>(o.connections)), in_(256 * 1024), out_(64 * 1024, 'x')
    {
        epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) {
            std::perror("fetch: epoll_create1");
            std::exit(1);
        }
    }

    int run()
    {
        int64_t elapsed_ns = 0;
        for (int r = 0; r < opt_.repeat; ++r) {
            const int64_t t0 = bench::now_ns();
            round();
            elapsed_ns += bench::now_ns() - t0;
        }
        const double seconds = static_cast<double>(elapsed_ns) / 1e9;
        std::printf("bytes=%lld seconds=%.3f mb_per_s=%.1f connections=%lld errors=%lld\n", bytes_, seconds,
                    seconds > 0 ? static_cast<double>(bytes_) / 1e6 / seconds : 0.0,
                    static_cast<long long>(opt_.connections) * opt_.repeat, errors_);
        std::fflush(stdout);
        return errors_ == 0 ? 0 : 1;
    }

private:
    // One round: every connection at once, until all have ended or the timeout.
    void round()
    {
        size_t active = 0;
        for (size_t i = 0; i < conns_.size(); ++i) {
            if (begin(i))
                ++active;
            else
                fail(i, "connect");
        }
        const int64_t deadline = bench::now_ns() + static_cast<int64_t>(opt_.timeout * 1e9);
        std::vector<epoll_event> events(conns_.size());
        while (active > 0) {
            int n = bench::wait_until(epfd_, events, deadline, "fetch");
            if (n < 0)
                break;
            for (int i = 0; i < n; ++i) {
                size_t idx = events[i].data.u64;
                if (conns_[idx].fd >= 0 && !(tls_ ? drive_tls(idx, events[i].events) : drive(idx, events[i].events)))
                    --active;
            }
        }
        for (size_t i = 0; i < conns_.size(); ++i)
            if (conns_[i].fd >= 0) {
                errno = ETIMEDOUT;
                fail(i, "timeout");
            }
    }

    bool begin(size_t idx)
    {
        Conn& c = conns_[idx];
        c = Conn{};
        c.to_send = opt_.send;
        if (!bench::start_connect(to_, epfd_, idx, c.fd))
            return false;
        return !tls_ || (c.ssl = bench::tls_client_session(tls_, c.fd));
    }

    // Counts a failed connection and ends it; says why for the first. The
    // reason is `detail`, else OpenSSL's, else errno's.
    void fail(size_t idx, const char* why, const char* detail = nullptr)
    {
        Conn& c = conns_[idx];
        if (errors_ == 0) {
            std::string reason = detail             ? detail
                                 : ERR_peek_error() ? bench::tls_reason("")
                                 : errno            ? std::strerror(errno)
                                                    : "no data";
            std::fprintf(stderr, "fetch: %s: %s\n", why, reason.c_str());
        }
        ++errors_;
        close(c);
    }

    static void close(Conn& c)
    {
        c.ssl.reset();
        if (c.fd >= 0)
            ::close(c.fd);
        c.fd = -1;
    }

    // Whether the connect of `idx` has finished; `failed` (and counted) when it failed.
    bool connect_finished(size_t idx, uint32_t events, bool& failed)
    {
        Conn& c = conns_[idx];
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & EPOLLERR)) {
            errno = err;
            fail(idx, "connect");
            failed = true;
            return false;
        }
        if (!(events & (EPOLLOUT | EPOLLIN)))
            return false;
        c.connected = true;
        return true;
    }

    // The server has ended the connection; one that sent nothing is an error.
    void ended(size_t idx)
    {
        Conn& c = conns_[idx];
        close(c);
        if (c.received == 0) {
            errno = 0;
            fail(idx, "read");
        }
    }

    // Advances one connection as far as the socket allows; false once it has ended.
    bool drive(size_t idx, uint32_t events)
    {
        Conn& c = conns_[idx];
        if (bool failed = false; !c.connected && !connect_finished(idx, events, failed))
            return !failed;
        if (!send_some(c)) {
            fail(idx, "send");
            return false;
        }
        for (;;) {
            ssize_t n = ::recv(c.fd, in_.data(), in_.size(), 0);
            if (n > 0) {
                c.received += n;
                bytes_ += n;
            } else if (n == 0) {
                ended(idx);
                return false;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            } else if (errno != EINTR) {
                fail(idx, "recv");
                return false;
            }
        }
    }

    // drive() through TLS: the handshake first, then writing and reading
    // at once, each until the socket would block.
    bool drive_tls(size_t idx, uint32_t events)
    {
        Conn& c = conns_[idx];
        if (bool failed = false; !c.connected && !connect_finished(idx, events, failed))
            return !failed;
        SSL* ssl = c.ssl.get();
        if (!c.handshaken) {
            int ret = SSL_do_handshake(ssl);
            if (ret != 1)
                return stalled(idx, ret, "handshake");
            c.handshaken = true;
        }
        while (c.to_send > 0) {
            int chunk = static_cast<int>(std::min<long long>(c.to_send, static_cast<long long>(out_.size())));
            int ret = SSL_write(ssl, out_.data(), chunk);
            if (ret <= 0) {
                if (bench::tls_io(ssl, ret) == bench::TlsIo::Again)
                    break;
                return stalled(idx, ret, "send");
            }
            c.to_send -= ret;
        }
        if (opt_.send > 0 && c.to_send == 0 && !c.half_closed) {
            int ret = SSL_shutdown(ssl); // the client's close_notify
            if (ret < 0 && bench::tls_io(ssl, ret) != bench::TlsIo::Again)
                return stalled(idx, ret, "send");
            c.half_closed = ret >= 0;
        }
        for (;;) {
            int ret = SSL_read(ssl, in_.data(), static_cast<int>(in_.size()));
            if (ret <= 0)
                return stalled(idx, ret, "recv");
            c.received += ret;
            bytes_ += ret;
        }
    }

    // What a TLS call of `idx` that did not do its work means: true until
    // the socket's next event; false once the connection has ended (the
    // server's close_notify) or failed (counted, with `why`).
    bool stalled(size_t idx, int ret, const char* why)
    {
        switch (bench::tls_io(conns_[idx].ssl.get(), ret)) {
        case bench::TlsIo::Again:
            return true;
        case bench::TlsIo::Closed:
            ended(idx);
            return false;
        case bench::TlsIo::Eof:
            fail(idx, "recv", "the server ended without a close_notify");
            return false;
        case bench::TlsIo::Done:
        case bench::TlsIo::Failed:
            break;
        }
        fail(idx, why);
        return false;
    }

    // Sends what --send asks for and then half-closes; false on an error.
    bool send_some(Conn& c)
    {
        while (c.to_send > 0) {
            size_t chunk = static_cast<size_t>(std::min<long long>(c.to_send, static_cast<long long>(out_.size())));
            ssize_t n = ::send(c.fd, out_.data(), chunk, MSG_NOSIGNAL);
            if (n > 0)
                c.to_send -= n;
            else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return true;
            else if (n < 0 && errno != EINTR)
                return false;
        }
        if (opt_.send > 0 && !c.half_closed) {
            c.half_closed = true;
            return ::shutdown(c.fd, SHUT_WR) == 0;
        }
        return true;
    }

    const Options& opt_;
    bench::Address to_;
    SSL_CTX* tls_;
    int epfd_ = -1;
    std::vector<Conn> conns_;
    std::vector<char> in_;
    std::string out_;
    long long bytes_ = 0;
    long long errors_ = 0;
};

} // namespace

int main(int argc, char** argv)
{
    Options opt = parse_args(argc, argv);
    bench::raise_nofile();
    std::signal(SIGPIPE, SIG_IGN); // send() uses MSG_NOSIGNAL; a backstop

    std::optional<bench::Address> address = bench::resolve(opt.host, opt.port, "fetch");
    if (!address)
        return 2;

    bench::UniqueSslCtx tls;
    if (!opt.tls_ca.empty() && !(tls = bench::tls_client_context(opt.tls_ca, "fetch")))
        return 2;

    Fetch fetch(opt, *address, tls.get());
    return fetch.run();
}

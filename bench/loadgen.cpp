// loadgen: closed-loop TCP load generator, single-threaded on epoll. Keeps
// CONCURRENCY connections in flight; each connects, optionally reads a
// greeting of N bytes, sends MESSAGE, half-closes, reads to EOF and checks
// the reply equals EXPECT. With --no-shutdown it does not half-close: it
// reads exactly as many bytes as EXPECT has, checks them and closes, for
// forwarders that end a connection at its first EOF either way (as
// systemd-socket-proxyd does), which would drop the reply.
//
// With --tls CAFILE each connection is a TLS client (bench/tls_client.h):
// a full handshake (no resumption) verified against CAFILE, then the same
// exchange through TLS, where the half-close is the client's close_notify
// and the end of the reply is the server's; with --no-shutdown the client
// sends its close_notify after the reply and closes. A server that ends a
// connection without a close_notify counts as an error (unclean_eof). The
// --hold connections stay plain TCP connects. The plain path does no TLS
// work at all: the two paths are separate functions.
//
// With --proxy v1 or v2 each connection starts with a PROXY protocol header
// (as HAProxy's send-proxy and send-proxy-v2 write it) naming a made-up
// client, 192.0.2.1:40000 to 198.51.100.1:80, sent with the message in one
// write; the reply expected is the message's alone. For a server that reads
// the header itself (superd's proxy_protocol), without a balancer in front.
//
// Prints one machine-readable line on stdout:
//   conn_per_s=... completed=... errors=... p50_us=... p99_us=... max_us=... held=... seconds=...
// Exit status: 0 no errors, 1 errors, 2 bad command line.
//
//   g++ -std=c++20 -O2 -I. -o loadgen bench/loadgen.cpp
//   loadgen --port P [--host 127.0.0.1] [--concurrency 16] [--duration 10]
//           [--max-connections 0] [--greeting 0] [--message "hello\n"]
//           [--expect STRING] [--hold 0] [--timeout 5] [--no-shutdown]
//           [--tls CAFILE] [--proxy v1|v2]
//
// --concurrency 0 with --hold N only holds the N connections for --duration.
//
// --message and --expect understand \n \r \t \\ \0 and \xHH so that a shell
// argument like "hello\n" means what it looks like.
#include "bench/tls_client.h"
#include "bench/tools.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    int concurrency = 16;
    double duration = 10.0;
    long long max_connections = 0;
    long long greeting = 0;
    std::string message = "hello\n";
    std::string expect;
    bool expect_set = false;
    long long hold = 0;
    double timeout = 5.0;
    bool no_shutdown = false;
    std::string tls_ca; // empty: plain TCP
    std::string proxy;  // empty: no PROXY header
};

const bench::CommandLine kCommandLine{"loadgen",
                                      "usage: loadgen --port P [--host 127.0.0.1] [--concurrency 16] [--duration 10]\n"
                                      "               [--max-connections 0] [--greeting 0] [--message \"hello\\n\"]\n"
                                      "               [--expect STRING] [--hold 0] [--timeout 5] [--no-shutdown]\n"
                                      "               [--tls CAFILE] [--proxy v1|v2]\n"};

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

std::string unescape(std::string_view in)
{
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '\\' || i + 1 == in.size()) {
            out += in[i];
            continue;
        }
        char c = in[++i];
        switch (c) {
        case 'n':
            out += '\n';
            break;
        case 'r':
            out += '\r';
            break;
        case 't':
            out += '\t';
            break;
        case '0':
            out += '\0';
            break;
        case '\\':
            out += '\\';
            break;
        case 'x':
            if (i + 2 < in.size() && hex_digit(in[i + 1]) >= 0 && hex_digit(in[i + 2]) >= 0) {
                out += static_cast<char>(hex_digit(in[i + 1]) * 16 + hex_digit(in[i + 2]));
                i += 2;
                break;
            }
            [[fallthrough]];
        default:
            // Unknown escapes stay literal rather than silently changing the payload.
            out += '\\';
            out += c;
        }
    }
    return out;
}

// The header of --proxy: TCP over IPv4 from 192.0.2.1:40000 to
// 198.51.100.1:80 (documentation addresses), a PROXY command.
std::string proxy_header(std::string_view version)
{
    if (version == "v1")
        return "PROXY TCP4 192.0.2.1 198.51.100.1 40000 80\r\n";
    std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
    h += "\x21\x11";                 // version 2, PROXY; TCP over IPv4
    h += std::string("\x00\x0c", 2); // 12 bytes of addresses follow
    h += std::string("\xc0\x00\x02\x01\xc6\x33\x64\x01", 8);
    h += std::string("\x9c\x40\x00\x50", 4); // ports 40000 and 80
    return h;
}

Options parse_args(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        if (flag == "--no-shutdown") {
            o.no_shutdown = true;
            continue;
        }
        std::string_view value = kCommandLine.value_of(argc, argv, i);
        if (flag == "--port")
            o.port = kCommandLine.number<int>(flag, value, 1, 65535);
        else if (flag == "--host")
            o.host = value;
        else if (flag == "--concurrency")
            o.concurrency = kCommandLine.number<int>(flag, value, 0, 1'000'000);
        else if (flag == "--duration")
            o.duration = kCommandLine.number<double>(flag, value, 0.001, 1e7);
        else if (flag == "--max-connections")
            o.max_connections = kCommandLine.number<long long>(flag, value, 0, 1LL << 50);
        else if (flag == "--greeting")
            o.greeting = kCommandLine.number<long long>(flag, value, 0, 1LL << 40);
        else if (flag == "--message")
            o.message = unescape(value);
        else if (flag == "--expect") {
            o.expect = unescape(value);
            o.expect_set = true;
        } else if (flag == "--hold")
            o.hold = kCommandLine.number<long long>(flag, value, 0, 10'000'000);
        else if (flag == "--timeout")
            o.timeout = kCommandLine.number<double>(flag, value, 0.001, 1e7);
        else if (flag == "--tls")
            o.tls_ca = value;
        else if (flag == "--proxy")
            o.proxy = value;
        else
            kCommandLine.fail("unknown option " + std::string(flag));
    }
    if (o.port == 0)
        kCommandLine.fail("--port is required");
    if (o.concurrency == 0 && o.hold == 0)
        kCommandLine.fail("--concurrency 0 needs --hold");
    if (!o.expect_set)
        o.expect = o.message;
    if (!o.proxy.empty()) {
        if (!o.tls_ca.empty())
            kCommandLine.fail("--proxy goes without --tls");
        if (o.proxy != "v1" && o.proxy != "v2")
            kCommandLine.fail("--proxy is v1 or v2");
        o.message = proxy_header(o.proxy) + o.message;
    }
    return o;
}

enum class Phase { Idle, Connecting, Handshake, Greeting, Sending, Reading, HeldConnecting, Held };

// Error kinds are only for the stderr breakdown; stdout carries the total.
enum ErrorKind { Refused, Reset, Timeout, Mismatch, EarlyEof, Tls, UncleanEof, Other, ErrorKinds };
constexpr std::array<const char*, ErrorKinds> error_names{"refused",   "reset", "timeout",     "mismatch",
                                                          "early_eof", "tls",   "unclean_eof", "other"};

ErrorKind classify(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return Refused;
    case ECONNRESET:
    case EPIPE:
        return Reset;
    case ETIMEDOUT:
        return Timeout;
    default:
        return Other;
    }
}

struct Conn {
    int fd = -1;
    uint32_t gen = 0; // distinguishes a reused slot from events meant for its previous connection
    Phase phase = Phase::Idle;
    long long greeting_left = 0;
    size_t sent = 0;
    std::string got;
    int64_t start_ns = 0;
    bench::UniqueSsl ssl; // with --tls only
};

struct Deadline {
    int64_t at_ns;
    uint32_t idx;
    uint32_t gen;
};

enum class Step { Pending, Ok, Failed };

class LoadGen {
public:
    // `tls` (not owned) is the client context of --tls; null for plain TCP.
    LoadGen(const Options& o, const bench::Address& to, SSL_CTX* tls)
        : opt_(o), to_(to), tls_(tls), timeout_ns_(static_cast<int64_t>(o.timeout * 1e9)),
          conns_(static_cast<size_t>(o.concurrency) + static_cast<size_t>(o.hold))
    {
        epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) {
            std::perror("loadgen: epoll_create1");
            std::exit(1);
        }
    }

    int run()
    {
        size_t held = open_held();

        const int64_t t0 = bench::now_ns();
        const int64_t end = t0 + static_cast<int64_t>(opt_.duration * 1e9);
        for (uint32_t i = static_cast<uint32_t>(opt_.concurrency); i-- > 0;)
            free_.push_back(i);

        std::vector<epoll_event> events(static_cast<size_t>(std::clamp(opt_.concurrency, 1, 4096)));
        for (;;) {
            int64_t now = bench::now_ns();
            while (!free_.empty() && can_start(now, end)) {
                uint32_t idx = free_.back();
                free_.pop_back();
                start(idx);
                now = bench::now_ns();
            }
            if (active_ == 0 && !can_start(now, end))
                break;

            int64_t wake = deadlines_.empty() ? end + timeout_ns_ : deadlines_.front().at_ns;
            if (can_start(now, end))
                wake = std::min(wake, end);
            int wait_ms = static_cast<int>(std::clamp<int64_t>((wake - now + 999'999) / 1'000'000, 0, 1000));

            int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                std::perror("loadgen: epoll_wait");
                return 1;
            }
            for (int i = 0; i < n; ++i) {
                uint32_t idx = static_cast<uint32_t>(events[i].data.u64);
                uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
                Conn& c = conns_[idx];
                if (c.gen != gen || c.phase == Phase::Idle)
                    continue; // stale: this slot's connection already finished in this batch
                ErrorKind kind = Other;
                Step s = tls_ ? drive_tls(c, events[i].events, kind) : drive(c, events[i].events, kind);
                if (s != Step::Pending)
                    finish(idx, s == Step::Ok, kind);
            }
            expire(bench::now_ns());
        }
        const double seconds = static_cast<double>(bench::now_ns() - t0) / 1e9;

        std::sort(latencies_us_.begin(), latencies_us_.end());
        auto pct = [&](double p) -> long long {
            if (latencies_us_.empty())
                return 0;
            // Nearest-rank percentile: the smallest sample with at least p of the data at or below it.
            size_t rank = static_cast<size_t>(p * static_cast<double>(latencies_us_.size()) + 0.999999);
            rank = std::clamp<size_t>(rank, 1, latencies_us_.size());
            return latencies_us_[rank - 1];
        };
        unsigned long long errors = 0;
        for (auto e : error_counts_)
            errors += e;
        if (errors > 0) {
            std::fprintf(stderr, "loadgen: errors:");
            for (size_t k = 0; k < error_counts_.size(); ++k)
                if (error_counts_[k] > 0)
                    std::fprintf(stderr, " %s=%llu", error_names[k], error_counts_[k]);
            std::fprintf(stderr, "\n");
        }
        std::printf(
            "conn_per_s=%.1f completed=%zu errors=%llu p50_us=%lld p99_us=%lld max_us=%lld held=%zu seconds=%.2f\n",
            seconds > 0 ? static_cast<double>(latencies_us_.size()) / seconds : 0.0, latencies_us_.size(), errors,
            pct(0.50), pct(0.99), latencies_us_.empty() ? 0LL : latencies_us_.back(), held, seconds);
        std::fflush(stdout);
        return errors == 0 ? 0 : 1;
    }

private:
    bool can_start(int64_t now, int64_t end) const
    {
        return now < end && (opt_.max_connections == 0 || started_ < opt_.max_connections);
    }

    // Creates a non-blocking socket and starts connecting; -1 with errno on failure.
    int begin_connect(uint32_t idx)
    {
        Conn& c = conns_[idx];
        c.start_ns = bench::now_ns();
        return bench::start_connect(to_, epfd_, (static_cast<uint64_t>(c.gen) << 32) | idx, c.fd) ? 0 : -1;
    }

    void start(uint32_t idx)
    {
        Conn& c = conns_[idx];
        ++c.gen;
        ++started_;
        ++active_;
        c.phase = Phase::Connecting;
        c.greeting_left = opt_.greeting;
        c.sent = 0;
        c.got.clear();
        if (begin_connect(idx) < 0) {
            finish(idx, false, classify(errno));
            return;
        }
        if (tls_ && !(c.ssl = bench::tls_client_session(tls_, c.fd))) {
            finish(idx, false, Tls);
            return;
        }
        // The timeout is the same for every connection, so deadlines arrive in order.
        deadlines_.push_back({c.start_ns + timeout_ns_, idx, c.gen});
    }

    void finish(uint32_t idx, bool ok, ErrorKind kind)
    {
        Conn& c = conns_[idx];
        if (ok)
            latencies_us_.push_back((bench::now_ns() - c.start_ns + 500) / 1000);
        else
            ++error_counts_[kind];
        if (c.ssl) {
            if (ok && opt_.no_shutdown) {
                SSL_shutdown(c.ssl.get()); // the client's close_notify; the server's is not waited for
                ERR_clear_error();         // whatever it met is no later connection's error
            }
            c.ssl.reset();
        }
        if (c.fd >= 0)
            ::close(c.fd);
        c.fd = -1;
        c.phase = Phase::Idle;
        --active_;
        free_.push_back(idx);
    }

    void expire(int64_t now)
    {
        while (!deadlines_.empty()) {
            const Deadline& d = deadlines_.front();
            Conn& c = conns_[d.idx];
            if (c.gen == d.gen && c.phase != Phase::Idle) {
                if (d.at_ns > now)
                    break;
                finish(d.idx, false, Timeout);
            }
            deadlines_.pop_front();
        }
    }

    static int socket_error(int fd)
    {
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return errno;
        return err;
    }

    // Whether a connect has finished: Ok once it has, Pending while it has not.
    static Step connected(const Conn& c, uint32_t events, ErrorKind& kind)
    {
        if (int err = socket_error(c.fd); err != 0) {
            kind = classify(err);
            return Step::Failed;
        }
        if (events & (EPOLLERR | EPOLLHUP))
            return Step::Failed;
        return (events & EPOLLOUT) ? Step::Ok : Step::Pending;
    }

    // Takes `n` bytes of the reply: Pending while more is to be read, Ok or
    // Failed once a --no-shutdown client has as much as it expects.
    Step take(Conn& c, const char* data, size_t n, ErrorKind& kind) const
    {
        // Keep at most one byte beyond the expectation: enough to know it is wrong.
        size_t room = opt_.expect.size() + 1 - std::min(c.got.size(), opt_.expect.size() + 1);
        c.got.append(data, std::min(room, n));
        if (!opt_.no_shutdown || c.got.size() < opt_.expect.size())
            return Step::Pending;
        if (c.got == opt_.expect)
            return Step::Ok;
        kind = Mismatch;
        return Step::Failed;
    }

    // The server has ended the reply.
    Step ended(const Conn& c, ErrorKind& kind) const
    {
        if (opt_.no_shutdown) {
            kind = EarlyEof;
            return Step::Failed;
        }
        if (c.got == opt_.expect)
            return Step::Ok;
        kind = Mismatch;
        return Step::Failed;
    }

    // Advances one client as far as the socket allows.
    Step drive(Conn& c, uint32_t events, ErrorKind& kind)
    {
        char buffer[16384];
        for (;;) {
            switch (c.phase) {
            case Phase::Connecting: {
                if (Step s = connected(c, events, kind); s != Step::Ok)
                    return s;
                c.phase = c.greeting_left > 0 ? Phase::Greeting : Phase::Sending;
                break;
            }
            case Phase::Greeting: {
                // Read no further than the greeting so the reply is checked from its first byte.
                size_t want = static_cast<size_t>(std::min<long long>(c.greeting_left, sizeof buffer));
                ssize_t n = ::recv(c.fd, buffer, want, 0);
                if (n > 0) {
                    c.greeting_left -= n;
                    if (c.greeting_left == 0)
                        c.phase = Phase::Sending;
                } else if (n == 0) {
                    kind = EarlyEof;
                    return Step::Failed;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return Step::Pending;
                } else if (errno != EINTR) {
                    kind = classify(errno);
                    return Step::Failed;
                }
                break;
            }
            case Phase::Sending: {
                if (c.sent < opt_.message.size()) {
                    ssize_t n = ::send(c.fd, opt_.message.data() + c.sent, opt_.message.size() - c.sent, MSG_NOSIGNAL);
                    if (n >= 0) {
                        c.sent += static_cast<size_t>(n);
                    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        return Step::Pending;
                    } else if (errno != EINTR) {
                        kind = classify(errno);
                        return Step::Failed;
                    }
                    break;
                }
                if (!opt_.no_shutdown && ::shutdown(c.fd, SHUT_WR) < 0) {
                    kind = classify(errno);
                    return Step::Failed;
                }
                c.phase = Phase::Reading;
                if (opt_.no_shutdown && opt_.expect.empty())
                    return Step::Ok;
                break;
            }
            case Phase::Reading: {
                ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
                if (n > 0) {
                    if (Step s = take(c, buffer, static_cast<size_t>(n), kind); s != Step::Pending)
                        return s;
                } else if (n == 0) {
                    return ended(c, kind);
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return Step::Pending;
                } else if (errno != EINTR) {
                    kind = classify(errno);
                    return Step::Failed;
                }
                break;
            }
            default:
                return Step::Failed;
            }
        }
    }

    // drive() through TLS: the same steps, with the handshake after the
    // connect and the close_notify as the half-close.
    Step drive_tls(Conn& c, uint32_t events, ErrorKind& kind)
    {
        char buffer[16384];
        SSL* ssl = c.ssl.get();
        for (;;) {
            switch (c.phase) {
            case Phase::Connecting: {
                if (Step s = connected(c, events, kind); s != Step::Ok)
                    return s;
                c.phase = Phase::Handshake;
                break;
            }
            case Phase::Handshake: {
                if (int ret = SSL_do_handshake(ssl); ret != 1)
                    return tls_stalled(ssl, ret, kind);
                c.phase = c.greeting_left > 0 ? Phase::Greeting : Phase::Sending;
                break;
            }
            case Phase::Greeting: {
                int want = static_cast<int>(std::min<long long>(c.greeting_left, sizeof buffer));
                int ret = SSL_read(ssl, buffer, want);
                if (ret <= 0)
                    return tls_stalled(ssl, ret, kind);
                c.greeting_left -= ret;
                if (c.greeting_left == 0)
                    c.phase = Phase::Sending;
                break;
            }
            case Phase::Sending: {
                if (c.sent < opt_.message.size()) {
                    int ret =
                        SSL_write(ssl, opt_.message.data() + c.sent, static_cast<int>(opt_.message.size() - c.sent));
                    if (ret <= 0)
                        return tls_stalled(ssl, ret, kind);
                    c.sent += static_cast<size_t>(ret);
                    break;
                }
                // Sends the close_notify (0: the server's is still to come).
                if (int ret = opt_.no_shutdown ? 0 : SSL_shutdown(ssl); ret < 0)
                    return tls_stalled(ssl, ret, kind);
                c.phase = Phase::Reading;
                if (opt_.no_shutdown && opt_.expect.empty())
                    return Step::Ok;
                break;
            }
            case Phase::Reading: {
                int ret = SSL_read(ssl, buffer, sizeof buffer);
                if (ret > 0) {
                    if (Step s = take(c, buffer, static_cast<size_t>(ret), kind); s != Step::Pending)
                        return s;
                    break;
                }
                if (SSL_get_error(ssl, ret) == SSL_ERROR_ZERO_RETURN)
                    return ended(c, kind);
                return tls_stalled(ssl, ret, kind);
            }
            default:
                return Step::Failed;
            }
        }
    }

    // What a TLS call that did not do its work means: Pending until the
    // socket's next event, or Failed with why (an end here is early). The
    // first TLS error's reason goes to stderr.
    Step tls_stalled(SSL* ssl, int ret, ErrorKind& kind)
    {
        switch (bench::tls_io(ssl, ret)) {
        case bench::TlsIo::Again:
            return Step::Pending;
        case bench::TlsIo::Done:
        case bench::TlsIo::Closed:
            kind = EarlyEof;
            return Step::Failed;
        case bench::TlsIo::Eof:
            kind = UncleanEof;
            return Step::Failed;
        case bench::TlsIo::Failed:
            break;
        }
        if (ERR_peek_error() == 0) {
            kind = classify(errno); // the socket's own error
            return Step::Failed;
        }
        kind = Tls;
        std::string why = bench::tls_reason("");
        if (!tls_error_said_)
            std::fprintf(stderr, "loadgen: tls: %s\n", why.c_str());
        tls_error_said_ = true;
        return Step::Failed;
    }

    // Opens the --hold connections and waits (up to --timeout) for them to be
    // established. They stay open, idle, until the process exits.
    size_t open_held()
    {
        if (opt_.hold == 0)
            return 0;
        const uint32_t first = static_cast<uint32_t>(opt_.concurrency);
        const uint32_t last = first + static_cast<uint32_t>(opt_.hold);
        size_t pending = 0;
        for (uint32_t idx = first; idx < last; ++idx) {
            Conn& c = conns_[idx];
            if (begin_connect(idx) < 0) {
                if (c.fd >= 0)
                    ::close(c.fd);
                c.fd = -1;
                continue;
            }
            c.phase = Phase::HeldConnecting;
            ++pending;
        }

        size_t held = 0;
        const int64_t deadline = bench::now_ns() + timeout_ns_;
        std::vector<epoll_event> events(1024);
        while (pending > 0) {
            int n = bench::wait_until(epfd_, events, deadline, "loadgen");
            if (n < 0)
                break;
            for (int i = 0; i < n; ++i) {
                Conn& c = conns_[static_cast<uint32_t>(events[i].data.u64)];
                if (c.phase != Phase::HeldConnecting)
                    continue;
                --pending;
                if (socket_error(c.fd) == 0 && (events[i].events & EPOLLOUT)
                    && !(events[i].events & (EPOLLERR | EPOLLHUP))) {
                    // Established; no further interest, so it cannot disturb the measured loop.
                    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
                    c.phase = Phase::Held;
                    ++held;
                } else {
                    ::close(c.fd);
                    c.fd = -1;
                    c.phase = Phase::Idle;
                }
            }
        }
        // Whatever did not connect in time is given up on, not counted as held.
        for (uint32_t idx = first; idx < last; ++idx) {
            Conn& c = conns_[idx];
            if (c.phase == Phase::HeldConnecting) {
                ::close(c.fd);
                c.fd = -1;
                c.phase = Phase::Idle;
            }
        }
        return held;
    }

    const Options& opt_;
    bench::Address to_;
    SSL_CTX* tls_;
    bool tls_error_said_ = false;
    int64_t timeout_ns_;
    int epfd_ = -1;
    std::vector<Conn> conns_; // [0, concurrency) clients, then the held connections
    std::vector<uint32_t> free_;
    std::deque<Deadline> deadlines_;
    std::vector<long long> latencies_us_;
    std::array<unsigned long long, ErrorKinds> error_counts_{};
    long long started_ = 0;
    long long active_ = 0;
};

} // namespace

int main(int argc, char** argv)
{
    Options opt = parse_args(argc, argv);

    bench::raise_nofile(); // clients plus --hold
    // send() uses MSG_NOSIGNAL; this is only a backstop so a reset peer can never kill us.
    std::signal(SIGPIPE, SIG_IGN);

    std::optional<bench::Address> address = bench::resolve(opt.host, opt.port, "loadgen");
    if (!address)
        return 2;

    bench::UniqueSslCtx tls;
    if (!opt.tls_ca.empty() && !(tls = bench::tls_client_context(opt.tls_ca, "loadgen")))
        return 2;

    LoadGen gen(opt, *address, tls.get());
    return gen.run();
}

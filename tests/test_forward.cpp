// builtin = "forward", end to end: a real superd relays real connections to
// a backend over loopback (its own services, programs, test listeners,
// HAProxy), carrying half-close, refusing what fails to connect, leaking no
// descriptor, and writing PROXY headers a real parser accepts.
#include "tests/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <regex>
#include <thread>

using namespace harness;
using Clock = std::chrono::steady_clock;

namespace {

// A [service.NAME] on `listen` ("127.0.0.1:P", "[::1]:P") served by `builtin`.
std::string builtin_toml(const std::string& name, const std::string& listen, const std::string& builtin,
                         const std::string& extra = "")
{
    return "[service." + name + "]\nlisten = [\"" + listen + "\"]\nbuiltin = \"" + builtin + "\"\n" + extra + "\n";
}

// A forward from `listen` to `to` ("127.0.0.1:B", "[::1]:B", "unix:PATH").
std::string forward_toml(const std::string& name, const std::string& listen, const std::string& to,
                         const std::string& extra = "")
{
    return builtin_toml(name, listen, "forward", "forward_to = \"" + to + "\"\n" + extra);
}

std::string v6(uint16_t port) { return "[::1]:" + std::to_string(port); }

// Large strings compared without Catch printing them whole; the sizes are
// reported with the next assertion.
bool same_bytes(const std::string& got, const std::string& wanted)
{
    UNSCOPED_INFO("got " << got.size() << " bytes, wanted " << wanted.size());
    return got == wanted;
}

// Accepts one connection on `listener` within 5 s.
UniqueFd accept_one(int listener)
{
    pollfd p{listener, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(fd);
    return fd;
}

// Closes `fd` with a reset rather than a FIN.
void reset(UniqueFd& fd)
{
    linger hard{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    fd.reset();
}

// SIGPIPE ignored while it lives, as superd has it: a test writing into a
// socket its peer may reset must see EPIPE, not die.
struct SigpipeIgnored {
    void (*old)(int) = ::signal(SIGPIPE, SIG_IGN);
    ~SigpipeIgnored() { ::signal(SIGPIPE, old); }
};

// Sends `data` from another thread, then half-closes; what went wrong, if
// anything, is in `error` after join().
struct Sender {
    std::string error;
    std::thread thread;
    Sender(int fd, const std::string& data)
        : thread([this, fd, &data] {
              try {
                  send_all(fd, data);
                  ::shutdown(fd, SHUT_WR);
              } catch (const std::exception& e) {
                  error = e.what();
              }
          })
    {
    }
    ~Sender()
    {
        if (thread.joinable())
            thread.join();
    }
};

// The log's closed line of `service` that has "up=UP down=DOWN".
bool closed_with(const Superd& superd, const std::string& service, size_t up, size_t down)
{
    std::regex line("closed service=" + service + " peer=\\S+ ran=\\S+s up=" + std::to_string(up)
                    + " down=" + std::to_string(down) + "\\b");
    return eventually([&] { return std::regex_search(superd.log(), line); }, 5s);
}

// The sample of `name` on superd's metrics page at `port`; -1 when absent.
double metric(uint16_t port, const std::string& name)
{
    std::string page = round_trip(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    size_t at = page.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::strtod(page.c_str() + at + name.size() + 2, nullptr);
}

} // namespace

TEST_CASE("forward relays to superd's own echo over IPv4, IPv6 and a unix socket", "[forward][integration]")
{
    uint16_t echo = free_port(), echo6 = free_port(AF_INET6);
    uint16_t to_v4 = free_port(), to_v6 = free_port(), to_unix = free_port();
    TempDir dir;
    std::string sock = (dir.path() / "cat.sock").string();
    Superd superd(builtin_toml("echo", loopback(echo), "echo") + builtin_toml("echo6", v6(echo6), "echo")
                  + "[service.cat]\nprotocol = \"unix\"\nlisten = [\"unix:" + sock + "\"]\nprogram = \"/bin/cat\"\n\n"
                  + forward_toml("fwd", loopback(to_v4), loopback(echo))
                  + forward_toml("fwd6", loopback(to_v6), v6(echo6))
                  + forward_toml("fwdunix", loopback(to_unix), "unix:" + sock));

    CHECK(round_trip(to_v4, "hello\n") == "hello\n");
    CHECK(round_trip(to_v6, "over IPv6\n") == "over IPv6\n");
    CHECK(round_trip(to_unix, "to a unix socket\n") == "to a unix socket\n");
    CHECK(closed_with(superd, "fwd", 6, 6));
    CHECK(closed_with(superd, "fwd6", 10, 10));
    CHECK(closed_with(superd, "fwdunix", 17, 17));
    CHECK(counter(superd.counters("fwd"), "accepted") == 1);
    CHECK(counter(superd.counters("echo"), "accepted") == 1);
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);
}

TEST_CASE("forward carries 50 MB and the client's half-close to a program that answers at EOF",
          "[forward][integration]")
{
    SigpipeIgnored no_sigpipe;
    uint16_t hash = free_port(), fwd = free_port();
    Superd superd(service_toml("hash", {loopback(hash)}, "/usr/bin/sha256sum")
                  + forward_toml("fwd", loopback(fwd), loopback(hash)));
    std::string data = random_bytes(50 << 20, 11);
    TempDir dir;
    auto wanted = run_command({"/usr/bin/sha256sum", dir.write("data", data)});
    REQUIRE(wanted.status == 0);

    UniqueFd fd = connect_tcp(fwd);
    send_all(fd.get(), data);
    ::shutdown(fd.get(), SHUT_WR); // sha256sum answers only after its stdin's EOF
    std::string answer = read_to_eof(fd.get(), 60s);
    CHECK(answer == wanted.output.substr(0, 64) + "  -\n");
    CHECK(closed_with(superd, "fwd", data.size(), answer.size()));
}

TEST_CASE("forward carries 50 MB both ways at once through cat, and each side's FIN", "[forward][integration]")
{
    SigpipeIgnored no_sigpipe;
    uint16_t cat = free_port(), fwd = free_port();
    Superd superd(service_toml("cat", {loopback(cat)}, "/bin/cat") + forward_toml("fwd", loopback(fwd), loopback(cat)));
    std::string data = random_bytes(50 << 20, 12);

    UniqueFd fd = connect_tcp(fwd);
    std::string back;
    {
        Sender sender(fd.get(), data);
        back = read_to_eof(fd.get(), 60s); // EOF: cat's exit, carried back
        sender.thread.join();
        CHECK(sender.error == "");
    }
    CHECK(same_bytes(back, data));
    CHECK(closed_with(superd, "fwd", data.size(), data.size()));
}

TEST_CASE("forward closes the client at once when the backend refuses, and counts it", "[forward][integration]")
{
    uint16_t backend = free_port(), fwd = free_port(), metrics = free_port();
    Superd superd(forward_toml("fwd", loopback(fwd), loopback(backend))
                  + builtin_toml("metrics", loopback(metrics), "metrics"));

    UniqueFd fd = connect_tcp(fwd);
    CHECK(read_to_eof(fd.get(), 3s) == ""); // the default connect_timeout is 5 s: not waited for
    REQUIRE(superd.wait_for_log("refused service=fwd peer=127.0.0.1:"));
    CHECK_THAT(superd.log(), Catch::Contains("reason=backend backend=" + loopback(backend)
                                             + " error=\"connect: Connection refused\""));
    std::string counters = superd.counters("fwd");
    CHECK(counter(counters, "refused_backend") == 1);
    CHECK(counter(counters, "accepted") == 1);
    CHECK(metric(metrics, "superd_connections_refused_total{service=\"fwd\",reason=\"backend\"}") == 1);
    CHECK(metric(metrics, "superd_connections_refused_total{service=\"metrics\",reason=\"backend\"}") == 0);
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);

    // Once the backend is there, the same service forwards.
    UniqueFd listener = listen_tcp(backend);
    UniqueFd client = connect_tcp(fwd);
    UniqueFd server = accept_one(listener.get());
    send_all(server.get(), "up now\n");
    CHECK(read_n(client.get(), 7) == "up now\n");
}

TEST_CASE("forward to a unix socket that is missing or no socket is refused_backend", "[forward][integration]")
{
    TempDir dir;
    std::string plain = dir.write("plain", "not a socket\n");
    uint16_t missing = free_port(), not_socket = free_port();
    Superd superd(forward_toml("missing", loopback(missing), "unix:/nonexistent/superd-test.sock")
                  + forward_toml("plain", loopback(not_socket), "unix:" + plain));

    for (uint16_t port : {missing, not_socket}) {
        UniqueFd fd = connect_tcp(port);
        CHECK(read_to_eof(fd.get(), 3s) == "");
    }
    CHECK(counter(superd.counters("missing"), "refused_backend") == 1);
    CHECK(counter(superd.counters("plain"), "refused_backend") == 1);
    CHECK_THAT(superd.log(), Catch::Contains("refused service=missing peer=127.0.0.1:")
                                 && Catch::Contains("No such file or directory")
                                 && Catch::Contains("refused service=plain peer=127.0.0.1:"));
}

TEST_CASE("forward gives up a backend that does not answer after connect_timeout", "[forward][integration]")
{
    uint16_t backend = free_port(), fwd = free_port();
    FullListener silent = listen_tcp_full(backend); // drops superd's SYN
    Superd superd(forward_toml("fwd", loopback(fwd), loopback(backend), "connect_timeout = \"300ms\"\n"));

    auto start = Clock::now();
    UniqueFd fd = connect_tcp(fwd);
    CHECK(read_to_eof(fd.get(), 3s) == "");
    CHECK(Clock::now() - start >= 300ms); // never before the timeout
    REQUIRE(superd.wait_for_log("refused service=fwd peer=127.0.0.1:"));
    CHECK_THAT(superd.log(), Catch::Contains("reason=backend backend=" + loopback(backend)
                                             + " error=\"connect timed out after 300ms\""));
    CHECK(counter(superd.counters("fwd"), "refused_backend") == 1);
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);
}

TEST_CASE("forward applies allow and deny before it connects to the backend", "[forward][integration]")
{
    uint16_t backend = free_port(), guarded = free_port(), open = free_port();
    UniqueFd listener = listen_tcp(backend);
    Superd superd(forward_toml("guarded", loopback(guarded), loopback(backend), "allow = [\"10.0.0.0/8\"]\n")
                  + forward_toml("open", loopback(open), loopback(backend)));

    UniqueFd refused_client = connect_tcp(guarded);
    CHECK(read_to_eof(refused_client.get(), 3s) == "");
    std::string counters = superd.counters("guarded");
    CHECK(counter(counters, "refused_acl") == 1);
    CHECK(counter(counters, "refused_backend") == 0);
    superd.settle();
    CHECK(quiet_for(listener.get(), 0ms)); // no connection came to the backend

    UniqueFd allowed = connect_tcp(open); // the same backend, without the list
    CHECK_FALSE(quiet_for(listener.get(), 5s));
}

TEST_CASE("Resets in the middle of a forward leave no descriptor behind", "[forward][integration]")
{
    SigpipeIgnored no_sigpipe;
    uint16_t chargen = free_port(), to_chargen = free_port(), resetting = free_port(), to_resetting = free_port();
    UniqueFd backend = listen_tcp(resetting);
    Superd superd(builtin_toml("chargen", loopback(chargen), "chargen")
                  + forward_toml("fwd", loopback(to_chargen), loopback(chargen))
                  + forward_toml("fwdreset", loopback(to_resetting), loopback(resetting)));
    {
        UniqueFd warm = connect_tcp(to_chargen); // whatever superd opens once, on first use
        CHECK(read_n(warm.get(), 100).size() == 100);
    }
    REQUIRE(eventually([&] { return counter(superd.daemon_counters(), "builtin_connections") == 0; }, 5s));
    // superd keeps some empty pipes for the next forward (pooled_pipes, two
    // fds each): those are not leaks.
    auto held = [&] {
        auto pooled = counter(superd.daemon_counters(), "pooled_pipes");
        return fd_count(superd.pid()) - 2 * pooled;
    };
    size_t baseline = held();

    // The client resets while chargen's bytes stream to it.
    for (int i = 0; i < 20; ++i) {
        UniqueFd fd = connect_tcp(to_chargen);
        CHECK(read_n(fd.get(), 4096).size() == 4096);
        reset(fd);
    }
    // The backend resets while the client sends.
    std::thread backend_side([&] {
        for (int i = 0; i < 10; ++i) {
            pollfd p{backend.get(), POLLIN, 0};
            if (::poll(&p, 1, 5000) != 1)
                return;
            UniqueFd fd(::accept4(backend.get(), nullptr, nullptr, SOCK_CLOEXEC));
            try {
                read_n(fd.get(), 1000, 5s);
            } catch (const std::exception&) {
                // reset all the same
            }
            reset(fd);
        }
    });
    const size_t most = 64 << 20; // far beyond what loopback's buffers and a pipe hold
    std::string chunk(64 << 10, 'x');
    for (int i = 0; i < 10; ++i) {
        UniqueFd fd = connect_tcp(to_resetting);
        size_t sent = 0;
        while (sent < most) {
            ssize_t n = ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent += static_cast<size_t>(n);
        }
        CHECK(sent < most); // the backend's reset ended the client's connection too
        try {
            read_to_eof(fd.get(), 5s);
        } catch (const std::exception&) {
            // a reset may also surface here; the fds below are what counts
        }
    }
    backend_side.join();

    CHECK(eventually([&] { return held() == baseline; }, 10s));
    INFO("superd holds " << held() << " fds beside its pooled pipes, " << baseline << " before");
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);
}

TEST_CASE("A reload that changes forward_to leaves live forwards on their old backend", "[forward][integration]")
{
    uint16_t echo = free_port(), daytime = free_port(), fwd = free_port();
    std::string backends =
        builtin_toml("echo", loopback(echo), "echo") + builtin_toml("daytime", loopback(daytime), "daytime");
    Superd superd(backends + forward_toml("fwd", loopback(fwd), loopback(echo)));

    UniqueFd live = connect_tcp(fwd);
    send_all(live.get(), "one\n");
    CHECK(read_n(live.get(), 4) == "one\n");
    superd.rewrite_config(backends + forward_toml("fwd", loopback(fwd), loopback(daytime)));
    REQUIRE(superd.reload());

    send_all(live.get(), "two\n"); // still the echo it was forwarded to
    CHECK(read_n(live.get(), 4) == "two\n");
    std::string line = read_to_eof(connect_tcp(fwd).get());
    INFO(line);
    CHECK(std::regex_match(line, std::regex(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n)")));
    ::shutdown(live.get(), SHUT_WR);
    CHECK(read_to_eof(live.get()) == "");
    CHECK(closed_with(superd, "fwd", 8, 8));
}

namespace {

// The v2 header's twelve-byte signature (it holds a NUL).
const std::string kProxySignature("\r\n\r\n\0\r\nQUIT\n", 12);

std::string be16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string ipv4_bytes(const std::string& host)
{
    in_addr a{};
    REQUIRE(::inet_pton(AF_INET, host.c_str(), &a) == 1);
    return std::string(reinterpret_cast<const char*>(&a), 4);
}

} // namespace

TEST_CASE("forward's PROXY header reaches the backend whole, before the client's first byte", "[forward][integration]")
{
    uint16_t backend = free_port(), v1 = free_port(), v2 = free_port();
    UniqueFd listener = listen_tcp(backend);
    Superd superd(forward_toml("v1", loopback(v1), loopback(backend), "send_proxy = \"v1\"\n")
                  + forward_toml("v2", loopback(v2), loopback(backend), "send_proxy = \"v2\"\n"));

    for (uint16_t port : {v1, v2}) {
        UniqueFd client = connect_tcp(port, "127.0.0.1", "127.0.0.2");
        send_all(client.get(), "X"); // sent at once: it may wait in superd's socket, never overtake the header
        uint16_t client_port = local_port(client.get());
        std::string header = port == v1 ? "PROXY TCP4 127.0.0.2 127.0.0.1 " + std::to_string(client_port) + " "
                                              + std::to_string(port) + "\r\n"
                                        : kProxySignature + "\x21\x11" + be16(12) + ipv4_bytes("127.0.0.2")
                                              + ipv4_bytes("127.0.0.1") + be16(client_port) + be16(port);
        UniqueFd server = accept_one(listener.get());
        CHECK(read_n(server.get(), header.size() + 1, 5s) == header + "X");
        send_all(server.get(), "Y");
        CHECK(read_n(client.get(), 1) == "Y");
    }
}

TEST_CASE("A PROXY header in and send_proxy out: the backend learns the client the balancer named",
          "[forward][proxy][integration]")
{
    uint16_t backend = free_port(), port = free_port();
    UniqueFd listener = listen_tcp(backend);
    Superd superd(forward_toml("chain", loopback(port), loopback(backend),
                               "send_proxy = \"v1\"\nproxy_protocol = \"v2\"\nproxy_from = [\"127.0.0.1\"]\n"));
    UniqueFd client = connect_tcp(port);
    // 10.1.2.3:51000 -> 10.9.9.9:443, then the payload in the same write.
    send_all(client.get(), kProxySignature + "\x21\x11" + be16(12) + ipv4_bytes("10.1.2.3") + ipv4_bytes("10.9.9.9")
                               + be16(51000) + be16(443) + "X");
    UniqueFd server = accept_one(listener.get());
    std::string header = "PROXY TCP4 10.1.2.3 10.9.9.9 51000 443\r\n";
    CHECK(read_n(server.get(), header.size() + 1, 5s) == header + "X");
    send_all(server.get(), "Y");
    CHECK(read_n(client.get(), 1) == "Y");
}

TEST_CASE("HAProxy 2.6 reads forward's PROXY v1 and v2 headers: the client's and superd's addresses",
          "[forward][integration]")
{
    const std::string haproxy = "/usr/sbin/haproxy";
    INFO("haproxy (Debian's package; scripts/install-deps installs it) is not at " << haproxy);
    REQUIRE(::access(haproxy.c_str(), X_OK) == 0);
    uint16_t hport = free_port();
    TempDir dir;
    std::string cfg =
        dir.write("haproxy.cfg", "global\n    maxconn 100\n"
                                 "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n"
                                 "    timeout server 5s\n"
                                 "frontend proxied\n    bind "
                                     + loopback(hport)
                                     + " accept-proxy\n"
                                       "    http-request return status 200 content-type text/plain lf-string "
                                       "\"%[src] %[src_port] %[dst] %[dst_port]\"\n");
    auto check = run_command({haproxy, "-c", "-f", cfg});
    INFO(check.output);
    REQUIRE(check.status == 0);
    Process server({haproxy, "-db", "-f", cfg});
    REQUIRE(eventually([&] { return server.exited() || !refused(hport); }));
    REQUIRE_FALSE(server.exited());

    uint16_t v1 = free_port(), v2 = free_port(), v1_6 = free_port(AF_INET6), v2_6 = free_port(AF_INET6);
    Superd superd(forward_toml("v1", loopback(v1), loopback(hport), "send_proxy = \"v1\"\n")
                  + forward_toml("v2", loopback(v2), loopback(hport), "send_proxy = \"v2\"\n")
                  + forward_toml("v1six", v6(v1_6), loopback(hport), "send_proxy = \"v1\"\n")
                  + forward_toml("v2six", v6(v2_6), loopback(hport), "send_proxy = \"v2\"\n"));

    struct Case {
        uint16_t port;
        std::string host, source;
    };
    for (const Case& c : {Case{v1, "127.0.0.1", "127.0.0.2"}, Case{v2, "127.0.0.1", "127.0.0.2"},
                          Case{v1_6, "::1", "::1"}, Case{v2_6, "::1", "::1"}}) {
        UniqueFd fd = connect_tcp(c.port, c.host, c.source);
        std::string wanted =
            c.source + " " + std::to_string(local_port(fd.get())) + " " + c.host + " " + std::to_string(c.port);
        send_all(fd.get(), "GET / HTTP/1.0\r\n\r\n");
        std::string response = read_to_eof(fd.get());
        INFO("port " << c.port << ": " << response << "\nhaproxy: " << server.output());
        REQUIRE_THAT(response, Catch::StartsWith("HTTP/1.") && Catch::Contains(" 200 "));
        CHECK(response.substr(response.find("\r\n\r\n") + 4) == wanted);
    }
}

// The PROXY header stage on a real event loop: a socketpair stands for the
// balancer's connection, the test writes the header (whole, split, with
// payload behind it, wrong) and the stage must take exactly the header.
#include "superd/proxy_stage.h"

#include "superd/clock.h"
#include "superd/event.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using superd::Connection;
using superd::ProxyAccept;
using superd::Stage;
using superd::UniqueFd;

namespace {

struct StageOutcome {
    bool served = false;
    std::optional<std::string> failure;
    Connection connection; // as the handler got it
};

// Runs the stage on one connection from the balancer 192.0.2.1:4000 to
// 127.0.0.1:7007, feeding it `pieces` one loop turn apart.
class Harness {
public:
    explicit Harness(ProxyAccept accept, std::chrono::milliseconds timeout = 5s)
        : base_(event_base_new()), timers_(base_.get()),
          pipeline_(base_.get(), timers_), stages_{std::make_shared<superd::ProxyStage>(accept, timeout)}
    {
    }

    StageOutcome run(const std::vector<std::string>& pieces, bool close_after = false)
    {
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) == 0);
        client_ = UniqueFd(pair[0]);
        Connection c;
        c.fd = UniqueFd(pair[1]);
        c.peer = harness::socket_address("192.0.2.1", 4000);
        c.local = harness::socket_address("127.0.0.1", 7007);
        c.shown = c.peer;
        StageOutcome result;
        pipeline_.run(
            std::move(c), stages_,
            [&result](Connection& done) {
                result.served = true;
                result.connection = std::move(done);
            },
            [&result](Connection&, const Stage&, const std::string& reason) { result.failure = reason; });
        for (const std::string& piece : pieces) {
            REQUIRE(::write(client_.get(), piece.data(), piece.size()) == static_cast<ssize_t>(piece.size()));
            event_base_loop(base_.get(), EVLOOP_NONBLOCK);
        }
        if (close_after)
            ::shutdown(client_.get(), SHUT_WR);
        auto until = std::chrono::steady_clock::now() + 5s;
        while (pipeline_.in_progress() > 0 && std::chrono::steady_clock::now() < until)
            event_base_loop(base_.get(), EVLOOP_ONCE);
        return result;
    }

private:
    superd::EventBase base_;
    superd::EventTimers timers_;
    superd::Pipeline pipeline_;
    std::vector<std::shared_ptr<Stage>> stages_;
    UniqueFd client_;
};

// What is left on the connection for the service: the payload, exactly.
std::string rest(const Connection& c)
{
    ::shutdown(c.fd.get(), SHUT_RD); // nothing more will come
    std::string data(4096, '\0');
    ssize_t n = ::recv(c.fd.get(), data.data(), data.size(), MSG_DONTWAIT);
    data.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return data;
}

std::string env(const Connection& c, const std::string& name)
{
    for (const std::string& var : c.environment)
        if (var.rfind(name + "=", 0) == 0)
            return var.substr(name.size() + 1);
    return "(unset)";
}

// A v2 header for TCP over IPv4, 10.1.2.3:51000 -> 10.9.9.9:443, with TLVs.
std::string v2_header(const std::string& tlvs = "", uint8_t command = 0x21)
{
    std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
    h += static_cast<char>(command);
    h += '\x11'; // TCP over IPv4
    size_t length = command == 0x20 ? tlvs.size() : 12 + tlvs.size();
    h += static_cast<char>(length >> 8);
    h += static_cast<char>(length & 0xff);
    if (command != 0x20)
        h += std::string("\x0a\x01\x02\x03\x0a\x09\x09\x09\xc7\x38\x01\xbb", 12);
    return h + tlvs;
}

std::string tlv(uint8_t type, const std::string& value)
{
    return std::string(1, static_cast<char>(type)) + static_cast<char>(value.size() >> 8)
           + static_cast<char>(value.size() & 0xff) + value;
}

} // namespace

TEST_CASE("A v1 header names the client, and the payload behind it is left whole", "[proxy]")
{
    Harness h(ProxyAccept::kV1);
    StageOutcome r = h.run({"PROXY TCP4 198.51.100.7 127.0.0.1 40001 7007\r\nHELLO"});
    REQUIRE(r.served);
    CHECK(r.connection.peer.to_string() == "198.51.100.7:40001");
    CHECK(r.connection.shown.to_string() == "198.51.100.7:40001");
    CHECK(r.connection.local.to_string() == "127.0.0.1:7007");
    CHECK(env(r.connection, "PROXY_ADDR") == "192.0.2.1");
    CHECK(env(r.connection, "PROXY_PORT") == "4000");
    CHECK(rest(r.connection) == "HELLO");
}

TEST_CASE("A header split across reads is put together, and only it is taken", "[proxy]")
{
    std::string header = v2_header(tlv(0x02, "example.com") + tlv(0x05, std::string("id\x01", 3)));
    for (ProxyAccept accept : {ProxyAccept::kV2, ProxyAccept::kAny}) {
        std::vector<std::string> pieces;
        for (char c : header)
            pieces.emplace_back(1, c); // a byte a read
        pieces.back() += "GET /";
        Harness h(accept);
        StageOutcome r = h.run(pieces);
        INFO(r.failure.value_or(""));
        REQUIRE(r.served);
        CHECK(r.connection.peer.to_string() == "10.1.2.3:51000");
        CHECK(r.connection.local.to_string() == "10.9.9.9:443");
        CHECK(env(r.connection, "PROXY_AUTHORITY") == "example.com");
        CHECK(env(r.connection, "PROXY_UNIQUE_ID") == "id\\x01"); // one printable line
        CHECK(rest(r.connection) == "GET /");
    }
    // v1 line by line, for "any".
    Harness h(ProxyAccept::kAny);
    StageOutcome r = h.run({"PROXY TCP6 2001:db8::1 ", "::1 5", "000 7007\r", "\nX"});
    REQUIRE(r.served);
    CHECK(r.connection.peer.to_string() == "[2001:db8::1]:5000");
    CHECK(rest(r.connection) == "X");
}

TEST_CASE("A v2 LOCAL header (a health check) keeps the balancer as the peer", "[proxy]")
{
    Harness h(ProxyAccept::kV2);
    StageOutcome r = h.run({v2_header("", 0x20)});
    REQUIRE(r.served);
    CHECK(r.connection.peer.to_string() == "192.0.2.1:4000");
    CHECK(env(r.connection, "PROXY_ADDR") == "192.0.2.1");
}

TEST_CASE("Garbage, the other version, a cut header and a slow one are refused with what was wrong", "[proxy]")
{
    {
        Harness h(ProxyAccept::kV1);
        StageOutcome r = h.run({"GET / HTTP/1.1\r\n\r\n"});
        CHECK_FALSE(r.served);
        CHECK(r.failure.has_value());
    }
    {
        Harness h(ProxyAccept::kV1);
        StageOutcome r = h.run({v2_header()});
        CHECK_FALSE(r.served);
        CHECK(r.failure.has_value());
    }
    {
        Harness h(ProxyAccept::kV2);
        StageOutcome r = h.run({v2_header().substr(0, 20)}, true);
        CHECK_FALSE(r.served);
        CHECK(r.failure == "the connection closed before the header ended");
    }
    {
        Harness h(ProxyAccept::kAny, 200ms);
        StageOutcome r = h.run({"PROXY TCP4 198.51.100.7"});
        CHECK_FALSE(r.served);
        CHECK(r.failure == "header timed out after 200ms");
    }
}

TEST_CASE("Behind HAProxy's send-proxy and send-proxy-v2 a program sees the real client", "[proxy][integration]")
{
    const std::string haproxy = "/usr/sbin/haproxy";
    INFO("haproxy (Debian's package; scripts/install-deps installs it) is not at " << haproxy);
    REQUIRE(::access(haproxy.c_str(), X_OK) == 0);
    uint16_t h1 = harness::free_port(), h2 = harness::free_port(), p1 = harness::free_port(), p2 = harness::free_port(),
             fenced = harness::free_port();
    harness::TempDir dir;
    std::string cfg =
        dir.write("haproxy.cfg", "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                                 "    timeout client 5s\n    timeout server 5s\n"
                                 "frontend f1\n    bind "
                                     + harness::loopback(h1)
                                     + "\n    default_backend b1\n"
                                       "backend b1\n    server s "
                                     + harness::loopback(p1)
                                     + " send-proxy\n"
                                       "frontend f2\n    bind "
                                     + harness::loopback(h2)
                                     + "\n    default_backend b2\n"
                                       "backend b2\n    server s "
                                     + harness::loopback(p2) + " send-proxy-v2\n");
    auto check = harness::run_command({haproxy, "-c", "-f", cfg});
    INFO(check.output);
    REQUIRE(check.status == 0);
    harness::Process server({haproxy, "-db", "-f", cfg});
    REQUIRE(harness::eventually([&] { return server.exited() || !harness::refused(h1); }));
    REQUIRE_FALSE(server.exited());

    auto service = [](const std::string& name, uint16_t port, const std::string& version, const std::string& more) {
        return "[service." + name + "]\nlisten = [\"" + harness::loopback(port)
               + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"echo $REMOTE_ADDR $REMOTE_PORT $PROXY_ADDR\"]\n"
                 "proxy_protocol = \""
               + version + "\"\nproxy_from = [\"127.0.0.1\"]\n" + more;
    };
    harness::Superd superd(service("one", p1, "v1", "") + service("two", p2, "v2", "")
                           + service("fenced", fenced, "any", "allow = [\"127.0.0.9\"]\n"));

    for (uint16_t port : {h1, h2}) {
        UniqueFd client = harness::connect_tcp(port, "127.0.0.1", "127.0.0.2");
        std::string wanted = "127.0.0.2 " + std::to_string(harness::local_port(client.get())) + " 127.0.0.1\n";
        INFO("through port " << port << "; superd: " << superd.log());
        CHECK(harness::read_to_eof(client.get()) == wanted);
    }
    // Straight to superd from outside proxy_from: refused before anything runs.
    UniqueFd stranger = harness::connect_tcp(p1, "127.0.0.1", "127.0.0.2");
    CHECK(harness::read_to_eof(stranger.get()).empty());
    CHECK(harness::counter(superd.counters("one"), "refused_proxy") == 1);
    CHECK(harness::counter(superd.counters("one"), "spawned") == 1);
    CHECK(superd.wait_for_log("reason=proxy error=\"not in proxy_from\""));
    // Admission judges the client the header names: allow lets in only
    // 127.0.0.9, and HAProxy itself (127.0.0.1) would not be judged at all.
    UniqueFd header_only = harness::connect_tcp(fenced);
    harness::send_all(header_only.get(), "PROXY TCP4 127.0.0.2 127.0.0.1 5555 80\r\n");
    CHECK(harness::read_to_eof(header_only.get()).empty());
    UniqueFd allowed = harness::connect_tcp(fenced);
    harness::send_all(allowed.get(), "PROXY TCP4 127.0.0.9 127.0.0.1 5555 80\r\n");
    CHECK(harness::read_to_eof(allowed.get()) == "127.0.0.9 5555 127.0.0.1\n");
    std::string fenced_counters = superd.counters("fenced");
    CHECK(harness::counter(fenced_counters, "refused_acl") == 1);
    CHECK(harness::counter(fenced_counters, "spawned") == 1);
}

TEST_CASE("A builtin logs the balancer's own connections (v2 LOCAL) at debug and a client's at info",
          "[proxy][integration]")
{
    uint16_t port = harness::free_port();
    harness::Superd superd("[service.hc]\nlisten = [\"" + harness::loopback(port)
                           + "\"]\nbuiltin = \"echo\"\nproxy_protocol = \"v2\"\nproxy_from = [\"127.0.0.1\"]\n");
    auto exchange = [port](const std::string& header) {
        UniqueFd client = harness::connect_tcp(port);
        harness::send_all(client.get(), header + "ping\n");
        ::shutdown(client.get(), SHUT_WR);
        return harness::read_to_eof(client.get());
    };
    const std::string local = v2_header("", 0x20);
    // Served all the same, the health check before the client: a builtin
    // logs its close before closing, so the check's line would be in the
    // log once the client's is.
    CHECK(exchange(local) == "ping\n");
    CHECK(exchange(v2_header()) == "ping\n");
    INFO(superd.log());
    CHECK(superd.wait_for_log(" info closed service=hc peer=10.1.2.3:51000 "));
    CHECK(superd.count_in_log("peer=127.0.0.1:") == 0);

    auto debug = harness::run_command({SUPERCTL_BINARY, "-s", superd.control_path(), "log-level", "debug"});
    REQUIRE(debug.status == 0);
    CHECK(exchange(local) == "ping\n");
    CHECK(superd.wait_for_log(" debug closed service=hc peer=127.0.0.1:"));
}

TEST_CASE("A program behind a PROXY header gets its socket blocking, as inetd gives it", "[proxy][integration]")
{
    uint16_t port = harness::free_port();
    // The flags of fd 0's open socket, which grep shares with sh.
    harness::Superd superd("[service.flags]\nlisten = [\"" + harness::loopback(port)
                           + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"grep flags /proc/self/fdinfo/0\"]\n"
                             "proxy_protocol = \"v2\"\nproxy_from = [\"127.0.0.1\"]\n");
    UniqueFd client = harness::connect_tcp(port);
    harness::send_all(client.get(), v2_header());
    std::string line = harness::read_to_eof(client.get());
    INFO(line << superd.log());
    REQUIRE(line.rfind("flags:", 0) == 0);
    unsigned long flags = std::stoul(line.substr(6), nullptr, 8);
    CHECK((flags & O_NONBLOCK) == 0);
}

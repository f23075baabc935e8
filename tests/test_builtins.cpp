#include "superd/builtins.h"

#include "superd/builtin_rfc.h"
#include "superd/listener.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <thread>

using namespace superd;

TEST_CASE("time counts seconds since 1900 in 32 bits (RFC 868)", "[builtins]")
{
    // RFC 868's own examples.
    CHECK(rfc::time_since_1900(-2208988800) == 0u);                       // 1900-01-01
    CHECK(rfc::time_since_1900(-2208988800 + 2629584000) == 2629584000u); // 1983-05-01
    CHECK(rfc::time_since_1900(0) == 2208988800u);                        // 1970-01-01
    // 2036-02-07 06:28:16 UTC wraps to 0.
    CHECK(rfc::time_since_1900(2085978496) == 0u);
}

TEST_CASE("chargen rotates 72 of the 95 printable characters a line (RFC 864)", "[builtins]")
{
    CHECK(rfc::chargen_line(0) == " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n");
    CHECK(rfc::chargen_line(1) == "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n");
    CHECK(rfc::chargen_line(94).substr(0, 3) == "~ !");
    CHECK(rfc::chargen_line(95) == rfc::chargen_line(0));
    std::set<std::string_view> distinct;
    for (uint64_t i = 0; i < 95; ++i) {
        CHECK(rfc::chargen_line(i).size() == 74);
        distinct.insert(rfc::chargen_line(i));
    }
    CHECK(distinct.size() == 95);
}

TEST_CASE("daytime is one human-readable line (RFC 867)", "[builtins]")
{
    std::regex shape(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n)");
    CHECK(std::regex_match(rfc::daytime(0), shape));
    CHECK(std::regex_match(rfc::daytime(1795000000), shape));
}

namespace {

SocketAddress address_of(const std::string& host, uint16_t port) { return harness::socket_address(host, port); }

// Hands Builtins an accepted TCP connection from 127.0.0.1:1.
void serve(Builtins& builtins, const ServiceConfig& service, UniqueFd fd, Admission::Ticket ticket)
{
    SocketAddress peer = address_of("127.0.0.1", 1);
    Connection connection{std::move(fd),     peer,   address_of("127.0.0.1", 2), peer, std::nullopt,
                          std::move(ticket), nullptr, {}};
    builtins.serve(service, connection);
}

// A datagram's fate: refused (the reason) or answered (nullptr).
std::string fate(const std::string& from, uint16_t from_port, const std::string& to, std::vector<uint16_t> ours,
                 std::vector<in_addr_t> broadcasts = {})
{
    const char* why = datagram_refusal(address_of(from, from_port), address_of(to, 7007), ours, broadcasts);
    return why ? why : "answered";
}

// A UDP socket served as a builtin would be, and a client on loopback.
struct UdpPair {
    std::unique_ptr<Listener> server;
    UniqueFd client;
    uint16_t port = 0;

    UdpPair()
    {
        port = harness::free_port();
        SocketSpec spec;
        spec.protocol = Protocol::kUdp;
        spec.address = address_of("127.0.0.1", port);
        auto opened = Listener::open(spec);
        REQUIRE(opened.ok());
        server = std::move(*opened);
        client = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        SocketAddress to = address_of("127.0.0.1", port);
        REQUIRE(::connect(client.get(), to.get(), to.length) == 0);
    }

    // Sends `request`, lets `builtins` answer as `service`; the reply, if any.
    std::optional<std::string> exchange(Builtins& builtins, const ServiceConfig& service, const std::string& request)
    {
        REQUIRE(::send(client.get(), request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
        pollfd ready{server->fd(), POLLIN, 0};
        REQUIRE(::poll(&ready, 1, 5000) == 1);
        builtins.answer(service, server->fd(), [](const SocketAddress&) { return true; });
        pollfd reply{client.get(), POLLIN, 0};
        if (::poll(&reply, 1, 300) != 1)
            return std::nullopt;
        std::string data(65536, '\0');
        ssize_t n = ::recv(client.get(), data.data(), data.size(), 0);
        REQUIRE(n >= 0);
        data.resize(static_cast<size_t>(n));
        return data;
    }
};

ServiceConfig builtin_service(std::string_view name, Protocol protocol = Protocol::kUdp)
{
    ServiceConfig config;
    config.name = "test";
    config.protocol = protocol;
    config.builtin = find_builtin(name);
    REQUIRE(config.builtin);
    return config;
}

} // namespace

TEST_CASE("UDP builtins refuse datagrams that would loop or reflect", "[builtins]")
{
    std::vector<uint16_t> ours{7007, 7013}; // sorted, as set_udp_ports keeps them
    CHECK(fate("127.0.0.1", 40000, "127.0.0.1", ours) == "answered");
    CHECK(fate("::1", 40000, "::1", ours) == "answered");
    // Our own UDP ports, whatever the address: superd answering itself, or
    // the same service elsewhere.
    CHECK(fate("127.0.0.1", 7007, "127.0.0.1", ours) == "loop");
    CHECK(fate("127.0.0.1", 7013, "127.0.0.1", ours) == "loop");
    CHECK(fate("192.0.2.1", 7013, "127.0.0.1", ours) == "loop");
    CHECK(fate("::1", 7007, "::1", ours) == "loop");
    // The well-known services that answer anything, and every other port
    // below 1024.
    for (uint16_t port : {0, 7, 9, 13, 17, 19, 37, 53, 123, 1023})
        CHECK(fate("127.0.0.1", port, "127.0.0.1", ours) == "low_port");
    CHECK(fate("127.0.0.1", 1024, "127.0.0.1", ours) == "answered");
    // Broadcast and multicast, either way.
    in_addr_t subnet_broadcast = ::inet_addr("192.0.2.255");
    CHECK(fate("192.0.2.255", 40000, "127.0.0.1", ours, {subnet_broadcast}) == "broadcast");
    CHECK(fate("127.0.0.1", 40000, "192.0.2.255", ours, {subnet_broadcast}) == "broadcast");
    CHECK(fate("127.0.0.1", 40000, "255.255.255.255", ours) == "broadcast");
    CHECK(fate("127.0.0.1", 40000, "224.0.0.1", ours) == "broadcast");
    CHECK(fate("::1", 40000, "ff02::1", ours) == "broadcast");
}

TEST_CASE("chargen over UDP answers only with allow_amplification, echo never exceeds the request", "[builtins]")
{
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    UdpPair pair;

    ServiceConfig chargen = builtin_service("chargen");
    CHECK_FALSE(pair.exchange(builtins, chargen, "").has_value());
    chargen.allow_amplification = true;
    // A random length from 0 to 512: an empty reply is a reply too.
    auto reply = pair.exchange(builtins, chargen, "");
    REQUIRE(reply.has_value());
    CHECK(reply->size() <= 512);

    ServiceConfig echo = builtin_service("echo");
    for (size_t size : {0, 1, 1000, 60000}) {
        auto echoed = pair.exchange(builtins, echo, std::string(size, 'x'));
        REQUIRE(echoed.has_value());
        CHECK(echoed->size() == size);
    }
    // daytime and time answer an empty datagram, with a small fixed reply.
    auto daytime = pair.exchange(builtins, builtin_service("daytime"), "");
    REQUIRE(daytime.has_value());
    CHECK(daytime->size() < 64);
}

TEST_CASE("UDP builtins stay silent to superd's own UDP ports", "[builtins]")
{
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    UdpPair pair;
    SocketAddress mine;
    mine.length = sizeof mine.storage;
    REQUIRE(::getsockname(pair.client.get(), mine.get(), &mine.length) == 0);
    ServiceConfig echo = builtin_service("echo");
    CHECK(pair.exchange(builtins, echo, "hello") == std::optional<std::string>("hello"));
    builtins.set_udp_ports({pair.port, mine.port()});
    CHECK_FALSE(pair.exchange(builtins, echo, "hello").has_value());
    builtins.set_udp_ports({pair.port});
    CHECK(pair.exchange(builtins, echo, "hello") == std::optional<std::string>("hello"));
}

TEST_CASE("A chargen client that never reads holds a small, fixed send buffer", "[builtins]")
{
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    uint16_t port = harness::free_port();
    SocketSpec spec;
    spec.address = address_of("127.0.0.1", port);
    auto listener = Listener::open(spec);
    REQUIRE(listener.ok());
    UniqueFd client = harness::connect_tcp(port);
    UniqueFd server(::accept4((*listener)->fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    REQUIRE(server);
    int fd = server.get();
    serve(builtins, builtin_service("chargen", Protocol::kTcp), std::move(server), Admission::Ticket{});

    // Left to itself, the kernel grows a fast connection's send buffer to
    // megabytes while the client does not read.
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (std::chrono::steady_clock::now() < until)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    REQUIRE(builtins.connections() == 1);
    int size = 0;
    socklen_t length = sizeof size;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &length) == 0);
    int queued = 0;
    REQUIRE(::ioctl(fd, SIOCOUTQ, &queued) == 0);
    INFO("SO_SNDBUF " << size << ", queued " << queued);
    CHECK(size <= 32 * 1024); // Linux doubles what is asked for
    CHECK(queued <= 64 * 1024);
}

TEST_CASE("The builtin table is the one list of builtins, each row complete", "[builtins]")
{
    std::set<std::string_view> names;
    for (const BuiltinKind& kind : builtin_kinds()) {
        INFO(kind.name);
        CHECK(names.insert(kind.name).second);
        CHECK(find_builtin(kind.name) == &kind);
        // A protocol it serves has the functions that serve it: a stream's,
        // or a relay.
        CHECK(kind.tcp == (kind.on_input != nullptr || kind.relay != nullptr));
        CHECK_FALSE((kind.on_input && kind.relay));
        CHECK(kind.udp == (kind.datagram != nullptr));
        CHECK((kind.tcp || kind.udp));
        CHECK_FALSE(protocol_problem(kind, Protocol::kTcp).has_value() != !kind.tcp);
        CHECK_FALSE(protocol_problem(kind, Protocol::kUdp).has_value() != !kind.udp);
        CHECK(protocol_problem(kind, Protocol::kUnix).has_value());
    }
    CHECK(names
          == std::set<std::string_view>{"echo", "discard", "chargen", "daytime", "time", "metrics", "file", "forward"});
    CHECK(find_builtin("qotd") == nullptr);
    CHECK(find_builtin("") == nullptr);
    CHECK(inetd_internal_names() == "echo, discard, chargen, daytime and time");
    CHECK(protocol_problem(*find_builtin("echo"), Protocol::kUnix) == "builtins serve TCP and UDP, not unix sockets");
}

namespace {

// Both ends of a TCP connection on loopback; `server` is for a builtin.
struct TcpPair {
    UniqueFd client;
    UniqueFd server;

    TcpPair()
    {
        uint16_t port = harness::free_port();
        SocketSpec spec;
        spec.address = address_of("127.0.0.1", port);
        auto listener = Listener::open(spec);
        REQUIRE(listener.ok());
        client = harness::connect_tcp(port);
        server = UniqueFd(::accept4((*listener)->fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        REQUIRE(server);
        timeval limit{5, 0};
        ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    }
};

// Runs `base` until `done` or five seconds pass.
void run_until(event_base* base, const std::function<bool()>& done)
{
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < until)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

// Reads what the server sends until it closes and `builtins` has no
// connection left, serving meanwhile.
std::string read_until_closed(event_base* base, int fd, const Builtins& builtins)
{
    std::string got;
    std::array<char, 4096> buffer;
    run_until(base, [&] {
        ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n > 0)
            got.append(buffer.data(), static_cast<size_t>(n));
        return n == 0 && builtins.connections() == 0;
    });
    return got;
}

} // namespace

TEST_CASE("A builtin connection outlives the ServiceConfig it was served from", "[builtins]")
{
    // A reload frees the old ServiceConfig while its connections go on: the
    // connection must hold nothing of it (ASan would see the read after free).
    // Its ticket comes back when it closes, with the service's name.
    EventBase base(event_base_new());
    const std::string name = "a-service-name-too-long-for-the-small-string-buffer";
    std::vector<std::string> closed;
    Builtins builtins(base.get(),
                      [&](const std::string& service, Admission::Ticket ticket, const SocketAddress&, const RelayEnd&) {
                          closed.push_back(service);
                          ticket.end();
                      });
    Admission admission;
    TcpPair pair;
    {
        auto config = std::make_unique<ServiceConfig>(builtin_service("echo", Protocol::kTcp));
        config->name = name;
        admission.configure(*config, Clock::now());
        Admission::Ticket ticket;
        REQUIRE_FALSE(admission.admit(address_of("127.0.0.1", 1), Clock::now(), ticket));
        serve(builtins, *config, std::move(pair.server), std::move(ticket));
    }
    CHECK(builtins.connections() == 1);
    CHECK(admission.running() == 1);
    harness::send_all(pair.client.get(), "after the reload\n");
    ::shutdown(pair.client.get(), SHUT_WR);
    CHECK(read_until_closed(base.get(), pair.client.get(), builtins) == "after the reload\n");
    CHECK(builtins.connections() == 0);
    CHECK(closed == std::vector<std::string>{name});
    CHECK(admission.running() == 0);
}

TEST_CASE("Each stream builtin is served by its row over a real connection", "[builtins]")
{
    EventBase base(event_base_new());
    Builtins builtins(base.get());

    SECTION("echo returns what came, then FIN after the client's")
    {
        TcpPair pair;
        serve(builtins, builtin_service("echo", Protocol::kTcp), std::move(pair.server), Admission::Ticket{});
        std::string big(200 * 1024, 'e'); // over the 64 KiB bound: reading stops and resumes
        std::thread writer([&] {
            harness::send_all(pair.client.get(), big);
            ::shutdown(pair.client.get(), SHUT_WR);
        });
        std::string echoed = read_until_closed(base.get(), pair.client.get(), builtins);
        writer.join();
        CHECK(echoed == big);
    }
    SECTION("discard answers nothing and closes at the client's EOF")
    {
        TcpPair pair;
        serve(builtins, builtin_service("discard", Protocol::kTcp), std::move(pair.server), Admission::Ticket{});
        harness::send_all(pair.client.get(), "into the void\n");
        ::shutdown(pair.client.get(), SHUT_WR);
        CHECK(read_until_closed(base.get(), pair.client.get(), builtins).empty());
    }
    SECTION("chargen streams its lines in order until the client goes")
    {
        TcpPair pair;
        serve(builtins, builtin_service("chargen", Protocol::kTcp), std::move(pair.server), Admission::Ticket{});
        std::string expected;
        for (uint64_t i = 0; i < 1000; ++i)
            expected += rfc::chargen_line(i);
        std::string got;
        std::array<char, 4096> buffer;
        run_until(base.get(), [&] {
            ssize_t n = ::recv(pair.client.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (n > 0)
                got.append(buffer.data(), static_cast<size_t>(n));
            return got.size() >= expected.size();
        });
        REQUIRE(got.size() >= expected.size());
        CHECK(got.substr(0, expected.size()) == expected);
        pair.client.reset();
        run_until(base.get(), [&] { return builtins.connections() == 0; });
        CHECK(builtins.connections() == 0);
    }
    SECTION("daytime and time speak first, take the client's line, then FIN")
    {
        for (const char* name : {"daytime", "time"}) {
            TcpPair pair;
            harness::send_all(pair.client.get(), "what time is it?\n");
            serve(builtins, builtin_service(name, Protocol::kTcp), std::move(pair.server), Admission::Ticket{});
            std::string reply = read_until_closed(base.get(), pair.client.get(), builtins);
            INFO(name);
            CHECK(builtins.connections() == 0);
            if (std::string_view(name) == "time")
                CHECK(reply.size() == 4);
            else
                CHECK_THAT(reply, Catch::EndsWith("\r\n"));
        }
    }
    CHECK(builtins.connections() == 0);
}

TEST_CASE("Builtins frees the connections still open when it is destroyed", "[builtins]")
{
    EventBase base(event_base_new());
    TcpPair echo, chargen;
    int closed = 0;
    {
        Builtins builtins(base.get(), [&](const std::string&, Admission::Ticket, const SocketAddress&,
                                          const RelayEnd&) { ++closed; });
        serve(builtins, builtin_service("echo", Protocol::kTcp), std::move(echo.server), Admission::Ticket{});
        serve(builtins, builtin_service("chargen", Protocol::kTcp), std::move(chargen.server), Admission::Ticket{});
        CHECK(builtins.connections() == 2);
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    // The sockets are closed (the client sees the end) and on_close is not
    // called: the daemon is going away with them. libevent closes a freed
    // bufferevent's socket from its loop (or when the base is freed, as the
    // daemon's is next), so the test runs the loop once more. A socket left
    // open would make recv wait out SO_RCVTIMEO and fail with EAGAIN.
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    CHECK(closed == 0);
    std::array<char, 65536> buffer;
    auto sees_end = [&](int fd) {
        ssize_t n;
        while ((n = ::recv(fd, buffer.data(), buffer.size(), 0)) > 0) {
        }
        INFO("recv: " << (n == 0 ? "end" : std::strerror(errno)));
        CHECK((n == 0 || errno == ECONNRESET));
    };
    sees_end(chargen.client.get());
    sees_end(echo.client.get());
}

namespace {

// The file builtin's service for the file at `path`, with its row copied
// into `row` so that a test may shorten a timeout.
ServiceConfig file_service(const std::string& path, BuiltinKind& row)
{
    ServiceConfig config = builtin_service("file", Protocol::kTcp);
    row = *config.builtin;
    config.builtin = &row;
    config.file_path = path;
    return config;
}

std::string random_contents(size_t size)
{
    std::mt19937 random(42);
    std::string bytes(size, '\0');
    for (char& c : bytes)
        c = static_cast<char>(random());
    return bytes;
}

} // namespace

TEST_CASE("file sends the whole file, then a FIN, and an empty one nothing", "[builtins]")
{
    harness::TempDir dir;
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    BuiltinKind row = *find_builtin("file");
    const std::string contents = random_contents(3 * 1024 * 1024 + 17);
    for (const std::string& text : {contents, std::string()}) {
        TcpPair pair;
        serve(builtins, file_service(dir.write("f", text), row), std::move(pair.server), {});
        std::string got = read_until_closed(base.get(), pair.client.get(), builtins);
        CHECK(got.size() == text.size());
        CHECK(got == text);
        CHECK(builtins.connections() == 0);
    }
}

TEST_CASE("file fails a connection at once when its file has gone or is not a regular file", "[builtins]")
{
    harness::TempDir dir;
    EventBase base(event_base_new());
    std::vector<std::string> closed;
    Builtins builtins(base.get(), [&](const std::string& service, Admission::Ticket, const SocketAddress&,
                                      const RelayEnd&) { closed.push_back(service); });
    BuiltinKind row = *find_builtin("file");
    for (const std::string& path : {(dir.path() / "gone").string(), dir.path().string()}) {
        TcpPair pair;
        serve(builtins, file_service(path, row), std::move(pair.server), {});
        // Closed within serve(): nothing was queued.
        CHECK(builtins.connections() == 0);
        CHECK(read_until_closed(base.get(), pair.client.get(), builtins).empty());
    }
    CHECK(closed.size() == 2);
}

TEST_CASE("A file that shrinks under a transfer ends it, where libevent would leave it stuck", "[builtins]")
{
    // libevent reports a sendfile(2) that sends nothing (past the end of a
    // shrunk file) as an EOF while writing, and stops writing.
    harness::TempDir dir;
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    BuiltinKind row = *find_builtin("file");
    std::string path = dir.write("sparse", "");
    REQUIRE(::truncate(path.c_str(), 256 * 1024 * 1024) == 0);
    TcpPair pair;
    serve(builtins, file_service(path, row), std::move(pair.server), {});
    // The kernel's buffers fill while the client reads nothing.
    for (int i = 0; i < 200; ++i)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    REQUIRE(builtins.connections() == 1);
    REQUIRE(::truncate(path.c_str(), 4096) == 0);
    std::string got = read_until_closed(base.get(), pair.client.get(), builtins);
    CHECK(builtins.connections() == 0);
    CHECK(got.size() > 4096);
    CHECK(got.size() < 256u * 1024 * 1024);
}

TEST_CASE("A file client that stops reading is dropped after the stall timeout", "[builtins]")
{
    harness::TempDir dir;
    EventBase base(event_base_new());
    Builtins builtins(base.get());
    BuiltinKind row;
    std::string path = dir.write("sparse", "");
    REQUIRE(::truncate(path.c_str(), 256 * 1024 * 1024) == 0);
    ServiceConfig service = file_service(path, row);
    row.stall_timeout = std::chrono::milliseconds(200);
    TcpPair pair;
    serve(builtins, service, std::move(pair.server), {});
    run_until(base.get(), [&] { return builtins.connections() == 0; });
    CHECK(builtins.connections() == 0);
}

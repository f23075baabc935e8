// Socket activation: reading LISTEN_*, describing inherited fds, matching
// them to the config; and superd started with inherited sockets, by the
// harness and by systemd's own systemd-socket-activate.
#include "superd/activation.h"

#include "tests/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace harness;
using superd::InheritedSockets;
using superd::Protocol;
using superd::SocketSpec;

namespace {

constexpr pid_t kSelf = 4242;

superd::ListenEnv parsed(const char* pid, const char* fds, const char* names)
{
    auto env = superd::parse_listen_env(pid, fds, names, kSelf, 100);
    INFO((env.ok() ? std::string() : env.error()));
    REQUIRE(env.ok());
    return *env;
}

// A socket of `type` bound to `address` (listening, for a stream socket
// when `listen` says so).
UniqueFd bound(int type, const superd::SocketAddress& address, bool listen = true)
{
    UniqueFd fd(::socket(address.family(), type | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    REQUIRE(::bind(fd.get(), address.get(), address.length) == 0);
    if (type == SOCK_STREAM && listen)
        REQUIRE(::listen(fd.get(), 8) == 0);
    return fd;
}

SocketSpec spec(Protocol protocol, const superd::SocketAddress& address)
{
    SocketSpec s;
    s.protocol = protocol;
    s.address = address;
    return s;
}

ino_t inode(int fd)
{
    struct stat st;
    REQUIRE(::fstat(fd, &st) == 0);
    return st.st_ino;
}

// Whether process `pid` holds the socket with inode `ino`.
bool holds(pid_t pid, ino_t ino)
{
    std::string wanted = "socket:[" + std::to_string(ino) + "]";
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ignored))
        if (std::filesystem::read_symlink(entry.path(), ignored) == wanted)
            return true;
    return false;
}

InheritedSockets::Socket inherited(UniqueFd fd, int number)
{
    InheritedSockets::Socket socket;
    auto info = superd::describe_socket(fd.get());
    REQUIRE(info.ok());
    socket.info = *info;
    socket.fd = std::move(fd);
    socket.number = number;
    return socket;
}

std::string echo_service(const std::string& name, const std::string& listen)
{
    return service_toml(name, {listen}, service_binary("echo"));
}

} // namespace

TEST_CASE("LISTEN_* for superd give the count and names of its fds", "[activation]")
{
    auto env = parsed("4242", "2", "web:admin");
    CHECK(env.count == 2);
    CHECK(env.names == std::vector<std::string>{"web", "admin"});
    CHECK(env.warnings.empty());

    env = parsed("4242", "1", nullptr);
    CHECK(env.count == 1);
    CHECK(env.names.empty());

    // A name per fd, or none at all.
    env = parsed("4242", "2", "web");
    CHECK(env.count == 2);
    CHECK(env.names.empty());
    REQUIRE(env.warnings.size() == 1);
    CHECK_THAT(env.warnings[0], Catch::Contains("1 names for 2 fds"));

    env = parsed("4242", "3", "a::");
    CHECK(env.names == std::vector<std::string>{"a", "", ""});
    CHECK(parsed("4242", "0", "").warnings.empty());

    CHECK(parsed(nullptr, nullptr, nullptr).count == 0);
    CHECK(parsed(nullptr, nullptr, nullptr).warnings.empty());
}

TEST_CASE("LISTEN_* for another process, or incomplete, are ignored with a warning", "[activation]")
{
    auto env = parsed("1", "2", nullptr);
    CHECK(env.count == 0);
    REQUIRE(env.warnings.size() == 1);
    CHECK_THAT(env.warnings[0], Catch::Contains("LISTEN_PID=\"1\" is not superd's pid 4242"));

    CHECK(parsed("4242x", "2", nullptr).count == 0);
    CHECK(parsed(nullptr, "2", nullptr).count == 0);
    CHECK_THAT(parsed(nullptr, "2", nullptr).warnings.at(0), Catch::Contains("without LISTEN_PID"));
    CHECK_THAT(parsed("4242", nullptr, nullptr).warnings.at(0), Catch::Contains("LISTEN_PID without LISTEN_FDS"));
}

TEST_CASE("A LISTEN_FDS for superd that is not a count of fds is an error", "[activation]")
{
    for (const char* fds : {"", "x", "-1", "2x", "101", "99999999999"}) {
        auto env = superd::parse_listen_env("4242", fds, nullptr, kSelf, 100);
        INFO(fds);
        REQUIRE_FALSE(env.ok());
        CHECK_THAT(env.error(), Catch::StartsWith("LISTEN_FDS=\"") && Catch::Contains("from 0 to 100"));
    }
}

TEST_CASE("Reading LISTEN_* unsets them, so that no child sees them", "[activation]")
{
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDS", "0", 1);
    ::setenv("LISTEN_FDNAMES", "", 1);
    auto sockets = superd::take_inherited_sockets();
    REQUIRE(sockets.ok());
    CHECK(sockets->size() == 0);
    CHECK(std::getenv("LISTEN_PID") == nullptr);
    CHECK(std::getenv("LISTEN_FDS") == nullptr);
    CHECK(std::getenv("LISTEN_FDNAMES") == nullptr);
}

TEST_CASE("An inherited fd is described as the kernel sees it", "[activation]")
{
    auto v4 = socket_address("127.0.0.1", free_port());
    auto info = superd::describe_socket(bound(SOCK_STREAM, v4).get());
    REQUIRE(info.ok());
    CHECK(info->kind() == Protocol::kTcp);
    CHECK(info->listening);
    CHECK(info->address == v4);

    info = superd::describe_socket(bound(SOCK_STREAM, v4, false).get());
    REQUIRE(info.ok());
    CHECK(info->kind() == Protocol::kTcp);
    CHECK_FALSE(info->listening);

    auto v6 = socket_address("::1", free_port(AF_INET6));
    info = superd::describe_socket(bound(SOCK_DGRAM, v6).get());
    REQUIRE(info.ok());
    CHECK(info->kind() == Protocol::kUdp);
    CHECK(info->address == v6);

    TempDir dir;
    auto path = superd::SocketAddress::unix_path((dir.path() / "s").string());
    info = superd::describe_socket(bound(SOCK_STREAM, path).get());
    REQUIRE(info.ok());
    CHECK(info->kind() == Protocol::kUnix);
    CHECK(info->address == path);

    auto datagram_path = superd::SocketAddress::unix_path((dir.path() / "d").string());
    info = superd::describe_socket(bound(SOCK_DGRAM, datagram_path).get());
    REQUIRE(info.ok());
    CHECK_FALSE(info->kind());
    CHECK(info->kind_name() == "unix datagram");
}

TEST_CASE("An inherited fd that is no socket superd could serve says why", "[activation]")
{
    int pipe[2];
    REQUIRE(::pipe2(pipe, O_CLOEXEC) == 0);
    UniqueFd read_end(pipe[0]), write_end(pipe[1]);
    auto info = superd::describe_socket(read_end.get());
    REQUIRE_FALSE(info.ok());
    CHECK(info.error() == "not a socket");

    int closed = read_end.release();
    ::close(closed);
    info = superd::describe_socket(closed);
    REQUIRE_FALSE(info.ok());
    CHECK(info.error() == "not open");

    UniqueFd netlink(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (netlink) {
        info = superd::describe_socket(netlink.get());
        REQUIRE_FALSE(info.ok());
        CHECK_THAT(info.error(), Catch::Contains("not ipv4, ipv6 or unix"));
    }
}

TEST_CASE("Collecting inherited fds keeps the sockets and closes the rest", "[activation]")
{
    // Three fds in a row, far above what this process uses.
    int first = 900;
    for (int fd = first; fd < first + 3; ++fd)
        REQUIRE(::fcntl(fd, F_GETFD) < 0);
    auto address = socket_address("127.0.0.1", free_port());
    UniqueFd socket = bound(SOCK_STREAM, address);
    int pipe[2];
    REQUIRE(::pipe2(pipe, O_CLOEXEC) == 0);
    REQUIRE(::dup2(socket.get(), first) == first); // not close-on-exec, as a manager hands it
    REQUIRE(::dup2(pipe[0], first + 1) == first + 1);
    ::close(pipe[0]);
    ::close(pipe[1]);
    // first + 2 is not open at all: it stays so.

    superd::ListenEnv env;
    env.count = 3;
    env.names = {"web", "pipe", "none"};
    InheritedSockets sockets = InheritedSockets::collect(first, env);
    CHECK(sockets.size() == 1);
    CHECK(::fcntl(first + 1, F_GETFD) < 0); // the pipe: closed
    CHECK(::fcntl(first, F_GETFD) == FD_CLOEXEC);

    UniqueFd taken = sockets.take(spec(Protocol::kTcp, address));
    REQUIRE(taken.get() == first);
    CHECK(inode(taken.get()) == inode(socket.get()));
    CHECK(sockets.size() == 0);
}

TEST_CASE("An inherited socket is taken for its own kind and address only", "[activation]")
{
    auto address = socket_address("127.0.0.1", free_port());
    auto other = socket_address("127.0.0.1", free_port());
    std::vector<InheritedSockets::Socket> list;
    list.push_back(inherited(bound(SOCK_DGRAM, address), 3));
    list.push_back(inherited(bound(SOCK_STREAM, other), 4));
    InheritedSockets sockets(std::move(list));

    CHECK_FALSE(sockets.take(spec(Protocol::kTcp, address)));
    CHECK_FALSE(sockets.take(spec(Protocol::kUdp, other)));
    CHECK(sockets.take(spec(Protocol::kUdp, address)));
    CHECK_FALSE(sockets.take(spec(Protocol::kUdp, address))); // taken once
    CHECK(sockets.size() == 1);
    sockets.close_rest();
    CHECK(sockets.size() == 0);
}

TEST_CASE("An inherited socket of another kind at a configured address is a mismatch", "[activation]")
{
    auto address = socket_address("127.0.0.1", free_port());
    std::string text = "127.0.0.1:" + std::to_string(address.port());
    std::vector<InheritedSockets::Socket> list;
    list.push_back(inherited(bound(SOCK_DGRAM, address), 3));
    InheritedSockets udp(std::move(list));

    auto error = udp.mismatch({spec(Protocol::kTcp, address)});
    REQUIRE(error);
    CHECK(error->message == "inherited fd 3 is a udp socket at " + text + ", where the config listens with tcp");
    // A udp service there takes it, a tcp one beside it binds its own.
    CHECK_FALSE(udp.mismatch({spec(Protocol::kTcp, address), spec(Protocol::kUdp, address)}));
    // Elsewhere, it is merely unused.
    CHECK_FALSE(udp.mismatch({spec(Protocol::kTcp, socket_address("127.0.0.1", free_port()))}));

    list.clear();
    list.push_back(inherited(bound(SOCK_STREAM, address, false), 5));
    InheritedSockets silent(std::move(list));
    error = silent.mismatch({spec(Protocol::kTcp, address)});
    REQUIRE(error);
    CHECK_THAT(error->message, Catch::Contains("fd 5 is a tcp socket that does not listen at " + text));
    CHECK_FALSE(silent.take(spec(Protocol::kTcp, address)));
}

TEST_CASE("superd serves an inherited TCP socket, connections queued before it started included",
          "[activation][integration]")
{
    uint16_t port = free_port();
    UniqueFd socket = listen_tcp(port);
    ino_t ino = inode(socket.get());
    // A client that came while no superd ran: the kernel queued it.
    UniqueFd queued = connect_tcp(port);
    send_all(queued.get(), "queued\n");
    ::shutdown(queued.get(), SHUT_WR);

    StartOptions options;
    options.inherit_fds = {socket.get()};
    Superd superd(echo_service("echo", loopback(port)), options);
    CHECK(read_to_eof(queued.get()) == "queued\n");

    // No second socket: superd serves the one the test bound.
    CHECK(superd.count_in_log("adopted fd=3 listen=" + loopback(port) + " kind=tcp") == 1);
    CHECK(listening_inode(port) == ino);
    CHECK(holds(superd.pid(), ino));
    socket.reset();
    CHECK(round_trip(port, "after\n") == "after\n");
}

TEST_CASE("An inherited socket no service listens on is logged and closed, and so is an fd that is no socket",
          "[activation][integration]")
{
    uint16_t port = free_port(), unused_port = free_port();
    UniqueFd socket = listen_tcp(port);
    UniqueFd unused = listen_tcp(unused_port);
    ino_t unused_ino = inode(unused.get());
    int pipe[2];
    REQUIRE(::pipe2(pipe, O_CLOEXEC) == 0);
    UniqueFd read_end(pipe[0]), write_end(pipe[1]);

    StartOptions options;
    options.inherit_fds = {socket.get(), unused.get(), read_end.get()};
    options.env = {"LISTEN_FDNAMES=echo:spare:junk"};
    Superd superd(echo_service("echo", loopback(port)), options);
    CHECK(superd.count_in_log("adopted fd=3 name=\"echo\" listen=" + loopback(port)) == 1);
    CHECK(superd.count_in_log("unused fd=4 name=\"spare\" listen=" + loopback(unused_port)
                              + " kind=tcp reason=\"no service listens there: closed\"")
          == 1);
    CHECK(superd.count_in_log("unused fd=5 name=\"junk\" reason=\"not a socket: closed\"") == 1);
    CHECK_FALSE(holds(superd.pid(), unused_ino));
    // With the test's copy gone too, nobody listens there.
    unused.reset();
    CHECK(refused(unused_port));
    CHECK(round_trip(port, "still\n") == "still\n");
}

TEST_CASE("An inherited socket of the wrong kind at a configured address stops the start", "[activation][integration]")
{
    uint16_t port = free_port();
    SECTION("datagram where the config says tcp")
    {
        UniqueFd udp = bound(SOCK_DGRAM, socket_address("127.0.0.1", port));
        StartOptions options;
        options.inherit_fds = {udp.get()};
        CHECK_THROWS_WITH(Superd(echo_service("echo", loopback(port)), options),
                          Catch::Contains("exited with status 1 ")
                              && Catch::Contains("cannot start: inherited fd 3 is a udp socket at " + loopback(port)
                                                 + ", where the config listens with tcp"));
    }
    SECTION("stream where the config says udp")
    {
        UniqueFd tcp = listen_tcp(port);
        StartOptions options;
        options.inherit_fds = {tcp.get()};
        std::string config =
            "[service.echo]\nprotocol = \"udp\"\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"echo\"\n";
        CHECK_THROWS_WITH(Superd(config, options),
                          Catch::Contains("exited with status 1 ")
                              && Catch::Contains("inherited fd 3 is a tcp socket at " + loopback(port)
                                                 + ", where the config listens with udp"));
    }
}

TEST_CASE("A reload keeps an adopted socket and one that removes its service closes it", "[activation][integration]")
{
    uint16_t port = free_port(), other = free_port();
    UniqueFd socket = listen_tcp(port);
    ino_t ino = inode(socket.get());
    StartOptions options;
    options.inherit_fds = {socket.get()};
    Superd superd(echo_service("echo", loopback(port)), options);
    socket.reset();

    superd.rewrite_config(echo_service("echo", loopback(port)) + echo_service("other", loopback(other)));
    REQUIRE(superd.reload());
    CHECK(superd.count_in_log("reloaded services=2 listeners=2 kept=1 opened=1 closed=0") == 1);
    CHECK(listening_inode(port) == ino);
    CHECK(round_trip(port, "kept\n") == "kept\n");

    superd.rewrite_config(echo_service("other", loopback(other)));
    REQUIRE(superd.reload());
    CHECK_FALSE(holds(superd.pid(), ino));
    CHECK(refused(port));
    CHECK(round_trip(other, "other\n") == "other\n");
}

TEST_CASE("superd adopts inherited IPv6, UDP and unix sockets, and leaves the unix socket's file",
          "[activation][integration]")
{
    TempDir dir;
    std::string path = (dir.path() / "echo.sock").string();
    uint16_t v6_port = free_port(AF_INET6), udp_port = free_port();
    auto v6 = socket_address("::1", v6_port);
    UniqueFd tcp6 = bound(SOCK_STREAM, v6);
    UniqueFd udp = bound(SOCK_DGRAM, socket_address("127.0.0.1", udp_port));
    UniqueFd unix_socket = bound(SOCK_STREAM, superd::SocketAddress::unix_path(path));

    StartOptions options;
    options.inherit_fds = {tcp6.get(), udp.get(), unix_socket.get()};
    std::string config = echo_service("v6", "[::1]:" + std::to_string(v6_port))
                         + "[service.udp]\nprotocol = \"udp\"\nlisten = [\"" + loopback(udp_port)
                         + "\"]\nbuiltin = \"echo\"\n" + "[service.unix]\nprotocol = \"unix\"\nlisten = [\"unix:" + path
                         + "\"]\nprogram = \"" + service_binary("echo") + "\"\n";
    Superd superd(config, options);
    CHECK(superd.count_in_log("adopted fd=3 listen=[::1]:" + std::to_string(v6_port) + " kind=tcp") == 1);
    CHECK(superd.count_in_log("adopted fd=4 listen=" + loopback(udp_port) + " kind=udp") == 1);
    CHECK(superd.count_in_log("adopted fd=5 listen=unix:" + path + " kind=unix") == 1);
    CHECK(superd.count_in_log("unused fd=") == 0);
    tcp6.reset();
    udp.reset();
    unix_socket.reset();

    CHECK(round_trip(v6_port, "six\n", "::1") == "six\n");
    CHECK(udp_exchange(udp_port, "datagram") == "datagram");
    UniqueFd client = connect_unix(path);
    send_all(client.get(), "unix\n");
    ::shutdown(client.get(), SHUT_WR);
    CHECK(read_to_eof(client.get()) == "unix\n");

    // The socket file is its maker's: superd leaves it when it stops.
    CHECK(superd.stop() == 0);
    CHECK(std::filesystem::is_socket(path));
}

TEST_CASE("Sockets inherited for another process are left alone", "[activation][integration]")
{
    uint16_t taken = free_port(), port = free_port();
    UniqueFd socket = listen_tcp(taken);
    StartOptions options;
    options.inherit_fds = {socket.get()};
    options.env = {"LISTEN_PID=1"};
    Superd superd(echo_service("echo", loopback(port)), options);
    CHECK(superd.count_in_log("socket activation: LISTEN_PID=\"1\" is not superd's pid") == 1);
    CHECK(superd.count_in_log("adopted") == 0);
    CHECK(round_trip(port, "own\n") == "own\n");
}

TEST_CASE("superd runs under systemd-socket-activate", "[activation][integration]")
{
    std::string tool;
    for (const char* candidate : {"/usr/bin/systemd-socket-activate", "/usr/lib/systemd/systemd-socket-activate"})
        if (::access(candidate, X_OK) == 0)
            tool = candidate;
    if (tool.empty()) {
        WARN("skipped: systemd-socket-activate is not installed (Debian package systemd, see scripts/install-deps)");
        return;
    }
    uint16_t port = free_port();
    // It binds, then waits for a first client before it sets LISTEN_FDS,
    // LISTEN_PID and LISTEN_FDNAMES and execs superd in its own place
    // (keeping the pid): that client waits in the backlog meanwhile.
    std::string reply;
    std::jthread first_client([&] {
        try {
            UniqueFd fd;
            eventually([&] {
                try {
                    fd = connect_tcp(port);
                    return true;
                } catch (const std::exception&) {
                    return false; // not listening yet
                }
            });
            send_all(fd.get(), "first\n");
            ::shutdown(fd.get(), SHUT_WR);
            reply = read_to_eof(fd.get());
        } catch (const std::exception& e) {
            reply = e.what();
        }
    });
    StartOptions options;
    options.wrapper = {tool, "--listen=" + loopback(port), "--fdname=echo"};
    Superd superd(echo_service("echo", loopback(port)), options);
    first_client.join();
    CHECK(reply == "first\n");
    CHECK(superd.count_in_log("adopted fd=3 name=\"echo\" listen=" + loopback(port) + " kind=tcp") == 1);
    CHECK(round_trip(port, "activated\n") == "activated\n");
    CHECK(superd.stop() == 0);
}

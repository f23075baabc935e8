#include "superd/listener.h"

#include "tests/fake_timers.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>

using superd::Listener;
using superd::SocketAddress;
using superd::UniqueFd;

namespace {

SocketAddress address_of(const std::string& text)
{
    auto parsed = superd::parse_listen_address(text);
    REQUIRE(parsed.ok());
    return parsed->front();
}

superd::SocketSpec tcp(const SocketAddress& address)
{
    superd::SocketSpec spec;
    spec.address = address;
    return spec;
}

} // namespace

TEST_CASE("A taken address is refused with the address and the reason", "[listener]")
{
    std::string address = "127.0.0.1:" + std::to_string(harness::free_port());
    auto first = Listener::open(tcp(address_of(address)));
    REQUIRE(first.ok());
    auto second = Listener::open(tcp(address_of(address)));
    REQUIRE_FALSE(second.ok());
    CHECK_THAT(second.error(), Catch::Contains(address) && Catch::Contains("Address already in use"));
}

TEST_CASE("reuse_port lets two sockets listen on one address, both asking for it", "[listener]")
{
    std::string address = "127.0.0.1:" + std::to_string(harness::free_port());
    superd::SocketSpec shared = tcp(address_of(address));
    shared.reuse_port = true;
    auto first = Listener::open(shared);
    REQUIRE(first.ok());
    auto second = Listener::open(shared);
    INFO((second.ok() ? std::string() : second.error()));
    REQUIRE(second.ok());
    // One that does not ask cannot join them.
    CHECK_FALSE(Listener::open(tcp(address_of(address))).ok());

    // The kernel decides at bind: a reload that changes it on a kept socket
    // is told so, and the socket keeps it.
    auto changed = (*first)->apply_settings(tcp(address_of(address)));
    REQUIRE(changed);
    CHECK_THAT(changed->message, Catch::Contains("reuse_port = false on " + address));
    CHECK(Listener::open(shared).ok());
}

TEST_CASE("IPv4 and IPv6 wildcards share a port (v6only is set)", "[listener]")
{
    uint16_t port = harness::free_port();
    auto both = superd::parse_listen_address(std::to_string(port));
    REQUIRE(both.ok());
    auto v4 = Listener::open(tcp((*both)[0]));
    auto v6 = Listener::open(tcp((*both)[1]));
    REQUIRE(v4.ok());
    INFO((v6.ok() ? std::string() : v6.error()));
    REQUIRE(v6.ok());
    int v6only = 0;
    socklen_t len = sizeof v6only;
    REQUIRE(::getsockopt((*v6)->fd(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0);
    CHECK(v6only == 1);
}

TEST_CASE("Accepted connections are blocking, close-on-exec, with the peer's address", "[listener]")
{
    superd::EventBase base(event_base_new()); // outlives the listener's events
    fake::FakeTimers timers;
    uint16_t port = harness::free_port();
    auto listener = Listener::open(tcp(address_of("127.0.0.1:" + std::to_string(port))));
    REQUIRE(listener.ok());
    CHECK((::fcntl((*listener)->fd(), F_GETFD) & FD_CLOEXEC) != 0);

    std::vector<std::pair<superd::UniqueFd, SocketAddress>> accepted;
    (*listener)->accept_with(base.get(), timers,
                             Listener::AcceptHooks{[&](superd::UniqueFd fd, const SocketAddress& peer) {
                                                       accepted.emplace_back(std::move(fd), peer);
                                                   },
                                                   nullptr, nullptr});

    std::vector<superd::UniqueFd> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(harness::connect_tcp(port));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (accepted.size() < 3 && std::chrono::steady_clock::now() < deadline)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    REQUIRE(accepted.size() == 3);

    for (size_t i = 0; i < 3; ++i) {
        int fd = accepted[i].first.get();
        CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
        CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
        SocketAddress mine;
        mine.length = sizeof mine.storage;
        REQUIRE(::getsockname(clients[i].get(), mine.get(), &mine.length) == 0);
        CHECK(accepted[i].second == mine);
    }
}

TEST_CASE("Connections for an in-process service are accepted non-blocking", "[listener]")
{
    superd::EventBase base(event_base_new());
    fake::FakeTimers timers;
    uint16_t port = harness::free_port();
    auto listener = Listener::open(tcp(address_of("127.0.0.1:" + std::to_string(port))));
    REQUIRE(listener.ok());
    superd::UniqueFd accepted;
    (*listener)->accept_with(
        base.get(), timers,
        Listener::AcceptHooks{[&](superd::UniqueFd fd, const SocketAddress&) { accepted = std::move(fd); }, nullptr,
                              nullptr, /*nonblocking=*/true});

    superd::UniqueFd client = harness::connect_tcp(port);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!accepted && std::chrono::steady_clock::now() < deadline)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    REQUIRE(accepted);
    CHECK((::fcntl(accepted.get(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(accepted.get(), F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("On a lent socket made blocking in mid-turn, an accept that finds nothing comes back", "[listener]")
{
    superd::EventBase base(event_base_new());
    fake::FakeTimers timers;
    uint16_t port = harness::free_port();
    auto listener = Listener::open(tcp(address_of("127.0.0.1:" + std::to_string(port))));
    REQUIRE(listener.ok());
    (*listener)->lend(); // as for a wait child, now gone
    int fd = (*listener)->fd();
    std::atomic<int> accepted{0};
    (*listener)->accept_with(base.get(), timers,
                             Listener::AcceptHooks{[&](superd::UniqueFd, const SocketAddress&) {
                                                       ++accepted;
                                                       // What a process the child left behind
                                                       // may do at any moment.
                                                       ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                                                   },
                                                   nullptr, nullptr});

    superd::UniqueFd client = harness::connect_tcp(port);
    auto turn = std::async(std::launch::async, [&] {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (accepted == 0 && std::chrono::steady_clock::now() < deadline)
            event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    });
    bool came_back = turn.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    superd::UniqueFd unblock; // a stuck accept takes this one and lets the test end
    if (!came_back)
        unblock = harness::connect_tcp(port);
    turn.wait();
    CHECK(came_back);
    CHECK(accepted == 1);
}

TEST_CASE("A turn of accepting that runs long yields to the rest of the loop", "[listener]")
{
    superd::EventBase base(event_base_new());
    fake::FakeTimers timers;
    uint16_t port = harness::free_port();
    auto listener = Listener::open(tcp(address_of("127.0.0.1:" + std::to_string(port))));
    REQUIRE(listener.ok());
    // Each connection takes longer than a turn may (as a spawn on a loaded
    // machine does): one per turn, the rest stay queued for the next.
    std::vector<superd::UniqueFd> accepted;
    (*listener)->accept_with(base.get(), timers,
                             Listener::AcceptHooks{[&](superd::UniqueFd fd, const SocketAddress&) {
                                                       std::this_thread::sleep_for(std::chrono::milliseconds(10));
                                                       accepted.push_back(std::move(fd));
                                                   },
                                                   nullptr, nullptr});
    std::vector<superd::UniqueFd> clients;
    for (int i = 0; i < 4; ++i)
        clients.push_back(harness::connect_tcp(port));

    event_base_loop(base.get(), EVLOOP_ONCE);
    CHECK(accepted.size() == 1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (accepted.size() < 4 && std::chrono::steady_clock::now() < deadline)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(accepted.size() == 4);
}

namespace {

superd::SocketSpec unix_spec(const std::string& path, mode_t mode)
{
    superd::SocketSpec spec;
    spec.address = address_of("unix:" + path);
    spec.mode = mode;
    return spec;
}

mode_t mode_of(const std::string& path)
{
    struct stat st;
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

} // namespace

TEST_CASE("A unix socket appears with its mode and owner, and no other file stays", "[listener]")
{
    harness::TempDir dir;
    std::string path = (dir.path() / "api.sock").string();
    auto spec = unix_spec(path, 0640);
    if (::geteuid() == 0) {
        spec.uid = 65534;
        spec.gid = 65534;
    }
    auto listener = Listener::open(spec);
    REQUIRE(listener.ok());
    struct stat st;
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0640);
    if (::geteuid() == 0) {
        CHECK(st.st_uid == 65534);
        CHECK(st.st_gid == 65534);
    }
    size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
        INFO(entry.path());
        ++files;
    }
    CHECK(files == 1);
    superd::UniqueFd client = harness::connect_unix(path);
    CHECK(client);

    // A symlink where the socket should go is replaced, never followed.
    std::string target = dir.write("target", "root only");
    ::chmod(target.c_str(), 0600);
    std::string other = (dir.path() / "other.sock").string();
    REQUIRE(::symlink(target.c_str(), other.c_str()) == 0);
    auto replaced = Listener::open(unix_spec(other, 0666));
    CHECK_FALSE(replaced.ok()); // the file exists and is not a socket
    CHECK(mode_of(target) == 0600);
}

namespace {

// The path a unix socket address names, as getsockname/getpeername give it.
std::string unix_name(int fd, int (*get)(int, sockaddr*, socklen_t*))
{
    sockaddr_un address{};
    socklen_t length = sizeof address;
    REQUIRE(get(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    REQUIRE(address.sun_family == AF_UNIX);
    return std::string(address.sun_path, ::strnlen(address.sun_path, length - offsetof(sockaddr_un, sun_path)));
}

} // namespace

// Programs check the path their socket is bound to (sd_is_socket_unix with a
// path, as systemd-style daemons do), and clients see it as their peer: it
// must be the configured path, not a name superd used on the way.
TEST_CASE("A unix socket is bound to its own path, born with its mode and group", "[listener]")
{
    harness::TempDir dir;
    std::string path = (dir.path() / "named.sock").string();
    auto spec = unix_spec(path, 0620);
    bool root = ::geteuid() == 0;
    if (root) {
        spec.uid = 65534;
        spec.gid = 65534;
    }
    mode_t before = ::umask(0022);
    auto listener = Listener::open(spec);
    CHECK(::umask(before) == 0022); // superd's umask is as it was
    REQUIRE(listener.ok());

    CHECK(unix_name((*listener)->fd(), ::getsockname) == path);
    superd::UniqueFd client = harness::connect_unix(path);
    REQUIRE(client);
    CHECK(unix_name(client.get(), ::getpeername) == path);

    struct stat st;
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0620);
    if (root) {
        CHECK(st.st_uid == 65534);
        CHECK(st.st_gid == 65534);
    }
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
        files.push_back(entry.path().filename().string());
    CHECK(files == std::vector<std::string>{"named.sock"});

    listener->reset();
    CHECK(::lstat(path.c_str(), &st) != 0); // removed with its listener
}

TEST_CASE("A reload never changes the mode of what replaced a unix socket", "[listener]")
{
    harness::TempDir dir;
    std::string path = (dir.path() / "api.sock").string();
    auto listener = Listener::open(unix_spec(path, 0660));
    REQUIRE(listener.ok());
    CHECK(mode_of(path) == 0660);
    CHECK_FALSE((*listener)->apply_settings(unix_spec(path, 0600)).has_value());
    CHECK(mode_of(path) == 0600);

    // Whoever can write to the folder swaps the socket for a symlink to a
    // file only root may read.
    std::string target = dir.write("shadow", "secret");
    REQUIRE(::chmod(target.c_str(), 0600) == 0);
    REQUIRE(::unlink(path.c_str()) == 0);
    REQUIRE(::symlink(target.c_str(), path.c_str()) == 0);
    auto error = (*listener)->apply_settings(unix_spec(path, 0666));
    CHECK(mode_of(target) == 0600);
    REQUIRE(error.has_value());
    CHECK_THAT(error->message, Catch::Contains("no longer a socket"));

    // Or for another socket: left alone too.
    REQUIRE(::unlink(path.c_str()) == 0);
    auto impostor = Listener::open(unix_spec(path, 0600));
    REQUIRE(impostor.ok());
    auto again = (*listener)->apply_settings(unix_spec(path, 0666));
    REQUIRE(again.has_value());
    CHECK(mode_of(path) == 0600);
}

TEST_CASE("A timed hold keeps connections in the backlog until its time is up", "[listener]")
{
    superd::EventBase base(event_base_new());
    fake::FakeTimers timers;
    uint16_t port = harness::free_port();
    auto listener = Listener::open(tcp(address_of("127.0.0.1:" + std::to_string(port))));
    REQUIRE(listener.ok());
    Listener& l = **listener;
    size_t accepted = 0;
    std::vector<superd::UniqueFd> kept;
    l.accept_with(base.get(), timers,
                  Listener::AcceptHooks{[&](superd::UniqueFd fd, const SocketAddress&) {
                                            ++accepted;
                                            kept.push_back(std::move(fd));
                                        },
                                        nullptr, nullptr});
    auto turns = [&] {
        for (int i = 0; i < 20; ++i)
            event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    };

    l.hold_for(superd::kHoldPaced, std::chrono::seconds(5));
    superd::UniqueFd client = harness::connect_tcp(port);
    turns();
    CHECK(accepted == 0);
    timers.advance(std::chrono::milliseconds(4999));
    turns();
    CHECK(accepted == 0);
    CHECK(l.held(superd::kHoldPaced));

    // Holding again replaces the deadline; another reason outlasts it.
    l.hold_for(superd::kHoldPaced, std::chrono::seconds(2));
    l.hold(superd::kHoldServiceFull);
    timers.advance(std::chrono::seconds(2));
    CHECK_FALSE(l.held(superd::kHoldPaced));
    turns();
    CHECK(accepted == 0);
    l.release(superd::kHoldServiceFull);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (accepted == 0 && std::chrono::steady_clock::now() < deadline)
        event_base_loop(base.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(accepted == 1);

    // Released by hand before its time, a timed hold does not come back.
    l.hold_for(superd::kHoldShortage, std::chrono::seconds(1));
    l.release(superd::kHoldShortage);
    CHECK(timers.armed() == 0);
}

TEST_CASE("An adopted socket gets what superd gives its own and keeps its maker's file", "[listener]")
{
    // As a service manager hands them: blocking, not close-on-exec, low.
    auto blocking_socket = [](int family, int type) {
        UniqueFd fd(::socket(family, type, 0));
        REQUIRE(fd);
        return fd;
    };
    auto inode = [](int fd) {
        struct stat st;
        REQUIRE(::fstat(fd, &st) == 0);
        return st.st_ino;
    };

    SECTION("tcp: non-blocking, close-on-exec, moved up high, the config's backlog")
    {
        superd::SocketSpec spec = tcp(address_of("127.0.0.1:" + std::to_string(harness::free_port())));
        spec.backlog = 3;
        UniqueFd fd = blocking_socket(AF_INET, SOCK_STREAM);
        REQUIRE(::bind(fd.get(), spec.address.get(), spec.address.length) == 0);
        REQUIRE(::listen(fd.get(), 1) == 0);
        int low = fd.get();
        auto ino = inode(low);
        auto adopted = Listener::adopt(std::move(fd), spec);
        REQUIRE(adopted.ok());
        int at = (*adopted)->fd();
        CHECK(inode(at) == ino);
        CHECK(at > low);
        CHECK(::fcntl(low, F_GETFD) < 0); // moved, not copied
        CHECK((::fcntl(at, F_GETFL) & O_NONBLOCK) != 0);
        CHECK(::fcntl(at, F_GETFD) == FD_CLOEXEC);
    }
    SECTION("udp: asked for each datagram's destination, as builtins answer from it")
    {
        superd::SocketSpec spec = tcp(address_of("127.0.0.1:" + std::to_string(harness::free_port())));
        spec.protocol = superd::Protocol::kUdp;
        UniqueFd fd = blocking_socket(AF_INET, SOCK_DGRAM);
        REQUIRE(::bind(fd.get(), spec.address.get(), spec.address.length) == 0);
        auto adopted = Listener::adopt(std::move(fd), spec);
        REQUIRE(adopted.ok());
        int pktinfo = 0;
        socklen_t length = sizeof pktinfo;
        REQUIRE(::getsockopt((*adopted)->fd(), IPPROTO_IP, IP_PKTINFO, &pktinfo, &length) == 0);
        CHECK(pktinfo == 1);
    }
    SECTION("unix: the file's mode stays, through a reload too, and the file outlives the listener")
    {
        harness::TempDir dir;
        std::string path = (dir.path() / "s").string();
        superd::SocketSpec spec = tcp(SocketAddress::unix_path(path));
        spec.protocol = superd::Protocol::kUnix;
        UniqueFd fd = blocking_socket(AF_UNIX, SOCK_STREAM);
        REQUIRE(::bind(fd.get(), spec.address.get(), spec.address.length) == 0);
        REQUIRE(::listen(fd.get(), 1) == 0);
        REQUIRE(::chmod(path.c_str(), 0600) == 0);
        spec.mode = 0666;
        auto adopted = Listener::adopt(std::move(fd), spec);
        REQUIRE(adopted.ok());
        CHECK_FALSE((*adopted)->apply_settings(spec));
        struct stat st;
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
        adopted->reset();
        CHECK(std::filesystem::is_socket(path));
    }
}

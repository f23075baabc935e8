// Tests for notify.h, the systemd notification protocol: unit tests of the
// Notifier against a unix datagram socket the test owns (a path and an
// abstract name), and the real superd telling such a socket, standing for
// the service manager, what it does.
#include "superd/notify.h"

#include "tests/harness.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <regex>
#include <stdexcept>
#include <string>

using namespace harness;
using superd::Notifier;

namespace {

// A unix datagram socket bound at a path or, for "@name", at an abstract
// name, as a service manager's; what it receives is read back one datagram
// at a time.
class Manager {
public:
    explicit Manager(std::string address) : address_(std::move(address))
    {
        fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        socklen_t length;
        if (address_[0] == '@') { // abstract: a NUL, then the name, no NUL after it
            sun.sun_path[0] = '\0';
            std::memcpy(sun.sun_path + 1, address_.data() + 1, address_.size() - 1);
            length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
        } else {
            std::strncpy(sun.sun_path, address_.c_str(), sizeof sun.sun_path - 1);
            length = sizeof sun;
        }
        if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sun), length) != 0)
            throw std::runtime_error("cannot bind " + address_ + ": " + std::strerror(errno));
    }
    const std::string& address() const { return address_; }
    int fd() const { return fd_.get(); }

    // The next datagram, or "" when none came within `limit`.
    std::string receive(std::chrono::milliseconds limit = 10s) const
    {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0)
            return "";
        char buffer[4096];
        ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
        return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
    }
    // The next datagram that is not WATCHDOG=1.
    std::string receive_not_watchdog(std::chrono::milliseconds limit = 10s) const
    {
        for (;;) {
            std::string message = receive(limit);
            if (message != "WATCHDOG=1")
                return message;
        }
    }

private:
    std::string address_;
    UniqueFd fd_;
};

// An abstract name no other test run uses.
std::string abstract_name()
{
    static std::atomic<int> next{0};
    return "@superd-test-notify-" + std::to_string(::getpid()) + "-" + std::to_string(next++);
}

// The time on CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC is.
unsigned long long monotonic_usec()
{
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<unsigned long long>(now.tv_sec) * 1000000ULL
           + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
}

} // namespace

TEST_CASE("the service manager gets READY with STATUS, RELOADING with the monotonic time, STOPPING", "[notify]")
{
    TempDir dir;
    std::string address = GENERATE(as<std::string>{}, "path", "abstract");
    Manager manager(address == "path" ? (dir.path() / "notify").string() : abstract_name());
    Notifier notifier(manager.address(), std::nullopt);
    REQUIRE(notifier.active());

    notifier.ready("services: 2, listeners: 3, running: 0");
    CHECK(manager.receive() == "READY=1\nSTATUS=services: 2, listeners: 3, running: 0");

    auto before = monotonic_usec();
    notifier.reloading();
    std::string reloading = manager.receive();
    auto after = monotonic_usec();
    std::smatch m;
    REQUIRE(std::regex_match(reloading, m, std::regex("RELOADING=1\nMONOTONIC_USEC=([0-9]+)")));
    auto usec = std::stoull(m[1]);
    CHECK(usec >= before);
    CHECK(usec <= after);

    notifier.status("busy");
    CHECK(manager.receive() == "STATUS=busy");
    notifier.stopping();
    CHECK(manager.receive() == "STOPPING=1");
}

TEST_CASE("a status cannot add an assignment of its own", "[notify]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    Notifier notifier(manager.address(), std::nullopt);
    notifier.ready("refused: a.toml:1: bad\nMAINPID=1\r\x01");
    CHECK(manager.receive() == "READY=1\nSTATUS=refused: a.toml:1: bad\\nMAINPID=1\\r\\x01");
}

TEST_CASE("without a socket, or with one nobody listens on, nothing is sent and nothing fails", "[notify]")
{
    TempDir dir;
    Notifier none;
    CHECK_FALSE(none.active());
    none.ready("x");
    none.reloading();
    none.stopping();
    CHECK_FALSE(none.watchdog_interval());

    for (const char* bad : {"", "@", "relative/path", "vsock:2:1234"}) {
        INFO(bad);
        CHECK_FALSE(Notifier(bad, std::chrono::seconds(1)).active());
    }
    CHECK_FALSE(Notifier("/" + std::string(200, 'x'), std::nullopt).active());

    // Each message finds the socket anew: one that comes later gets what
    // is sent from then on.
    std::string path = (dir.path() / "later").string();
    Notifier notifier(path, std::nullopt);
    CHECK(notifier.active());
    notifier.ready("nobody yet");
    notifier.stopping();
    Manager manager(path);
    notifier.status("now");
    CHECK(manager.receive() == "STATUS=now");
}

TEST_CASE("a service manager that does not read never blocks superd", "[notify]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    Notifier notifier(manager.address(), std::nullopt);
    // A blocking socket would wait here for a reader once the receiver's
    // queue (net.unix.max_dgram_qlen, 10 by default) is full.
    for (int i = 0; i < 1000; ++i)
        notifier.status(std::to_string(i));
    CHECK(manager.receive() == "STATUS=0");
}

TEST_CASE("from the environment: the variables are read, then removed", "[notify]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());

    SECTION("a watchdog for superd")
    {
        ScopedEnv env{{"NOTIFY_SOCKET", manager.address()},
                      {"WATCHDOG_USEC", "200000"},
                      {"WATCHDOG_PID", std::to_string(::getpid())}};
        Notifier notifier = Notifier::from_environment();
        CHECK(notifier.watchdog_interval() == std::chrono::microseconds(100000));
        CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);
        CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
        CHECK(std::getenv("WATCHDOG_PID") == nullptr);
        notifier.ready("up");
        CHECK(manager.receive() == "READY=1\nSTATUS=up");
    }
    SECTION("without WATCHDOG_PID, the watchdog is superd's")
    {
        ScopedEnv env{{"NOTIFY_SOCKET", manager.address()}, {"WATCHDOG_USEC", "3"}};
        CHECK(Notifier::from_environment().watchdog_interval() == std::chrono::microseconds(1));
    }
    SECTION("a watchdog for another process is not superd's to feed")
    {
        ScopedEnv env{{"NOTIFY_SOCKET", manager.address()},
                      {"WATCHDOG_USEC", "200000"},
                      {"WATCHDOG_PID", std::to_string(::getpid() + 1)}};
        Notifier notifier = Notifier::from_environment();
        CHECK(notifier.active());
        CHECK_FALSE(notifier.watchdog_interval());
        CHECK(std::getenv("WATCHDOG_PID") == nullptr);
    }
    SECTION("a period that is not a number of microseconds is no watchdog")
    {
        for (const char* usec : {"", "0", "-5", "12x", "99999999999999999999999"}) {
            INFO(usec);
            ScopedEnv env{{"NOTIFY_SOCKET", manager.address()}, {"WATCHDOG_USEC", usec}};
            CHECK_FALSE(Notifier::from_environment().watchdog_interval());
        }
    }
    SECTION("no NOTIFY_SOCKET: no one to tell, and no watchdog")
    {
        ScopedEnv env{{"WATCHDOG_USEC", "200000"}};
        Notifier notifier = Notifier::from_environment();
        CHECK_FALSE(notifier.active());
        CHECK_FALSE(notifier.watchdog_interval());
        CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
    }
}

TEST_CASE("the watchdog is fed from the event loop, also after the Notifier moved", "[notify]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    superd::EventBase base(event_base_new());
    Notifier first(manager.address(), std::chrono::milliseconds(20));
    REQUIRE(first.start_watchdog(base.get()));
    Notifier notifier = std::move(first);

    int fed = 0;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (fed < 3 && std::chrono::steady_clock::now() < deadline) {
        event_base_loop(base.get(), EVLOOP_ONCE);
        for (std::string message; !(message = manager.receive(0ms)).empty();) {
            CHECK(message == "WATCHDOG=1");
            ++fed;
        }
    }
    CHECK(fed >= 3);
}

// The real superd, end to end.

TEST_CASE("superd tells the service manager READY, RELOADING and READY around each reload, then STOPPING",
          "[notify][integration]")
{
    TempDir dir;
    std::string address = GENERATE(as<std::string>{}, "path", "abstract");
    Manager manager(address == "path" ? (dir.path() / "notify").string() : abstract_name());
    uint16_t port = free_port(), second = free_port();
    StartOptions options;
    options.env = {"NOTIFY_SOCKET=" + manager.address()};
    Superd superd(service_toml("echo", {loopback(port)}, service_binary("echo")), options);

    CHECK(manager.receive() == "READY=1\nSTATUS=services: 1, listeners: 1, running: 0");

    std::regex reloading("RELOADING=1\nMONOTONIC_USEC=[0-9]+");
    superd.rewrite_config(service_toml("echo", {loopback(port)}, service_binary("echo"))
                          + service_toml("peer", {loopback(second)}, service_binary("peer")));
    REQUIRE(superd.reload());
    CHECK(std::regex_match(manager.receive(), reloading));
    CHECK(manager.receive() == "READY=1\nSTATUS=services: 2, listeners: 2, running: 0; last reload applied");

    superd.rewrite_config("[service.echo]\nlisten = [\"" + loopback(port) + "\"]\nprogram = 7\n");
    REQUIRE_FALSE(superd.reload());
    CHECK(std::regex_match(manager.receive(), reloading));
    std::string refused = manager.receive();
    CHECK_THAT(refused, Catch::StartsWith("READY=1\nSTATUS=services: 2, listeners: 2, running: 0; last reload "
                                          "refused: "
                                          + (superd.dir().path() / "superd.toml").string() + ":3: "));
    CHECK(refused.find('\n') == refused.rfind('\n')); // the reason stays on the STATUS line

    CHECK(superd.stop() == 0);
    CHECK(manager.receive() == "STOPPING=1");
    CHECK(manager.receive(100ms).empty());
}

TEST_CASE("superd feeds the watchdog every half period from its loop", "[notify][integration]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    StartOptions options;
    options.env = {"NOTIFY_SOCKET=" + manager.address(), "WATCHDOG_USEC=200000"};
    Superd superd(service_toml("echo", {loopback(free_port())}, service_binary("echo")), options);

    CHECK_THAT(manager.receive(), Catch::StartsWith("READY=1\n"));
    for (int i = 0; i < 3; ++i)
        CHECK(manager.receive() == "WATCHDOG=1");
    // A reload in between changes nothing about it.
    REQUIRE(superd.reload());
    CHECK_THAT(manager.receive_not_watchdog(), Catch::StartsWith("RELOADING=1\n"));
    CHECK_THAT(manager.receive_not_watchdog(), Catch::StartsWith("READY=1\n"));
    CHECK(manager.receive() == "WATCHDOG=1");
    CHECK(superd.stop() == 0);
}

TEST_CASE("superd runs as usual with a NOTIFY_SOCKET nobody listens on", "[notify][integration]")
{
    TempDir dir;
    uint16_t port = free_port();
    StartOptions options;
    options.env = {"NOTIFY_SOCKET=" + (dir.path() / "nobody").string(), "WATCHDOG_USEC=20000"};
    Superd superd(service_toml("echo", {loopback(port)}, service_binary("echo")), options);

    CHECK(round_trip(port, "hello\n") == "hello\n");
    REQUIRE(superd.reload());
    CHECK(round_trip(port, "again\n") == "again\n");
    CHECK(superd.stop() == 0);
    CHECK(superd.count_in_log(" error ") == 0);
}

TEST_CASE("a service never sees the service manager's variables, even asking for them", "[notify][integration]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    uint16_t port = free_port();
    StartOptions options;
    options.env = {"NOTIFY_SOCKET=" + manager.address(), "WATCHDOG_USEC=60000000",
                   "WATCHDOG_PID=" + std::to_string(::getpid()), "SUPERD_TEST_PASSED=yes"};
    // SUPERD_TEST_PASSED shows that pass_env does pass what superd has.
    std::string config = service_toml("probe", {loopback(port)}, probe_binary())
                         + "pass_env = [\"NOTIFY_SOCKET\", \"WATCHDOG_USEC\", \"WATCHDOG_PID\", "
                           "\"SUPERD_TEST_PASSED\"]\n";
    Superd superd(config, options);

    // The variables the probe got of those pass_env names.
    auto passed = [&] {
        std::vector<std::string> found;
        for (const std::string& var : lines_with_prefix(round_trip(port, ""), "env: "))
            if (var.rfind("NOTIFY_SOCKET=", 0) == 0 || var.rfind("WATCHDOG_", 0) == 0
                || var.rfind("SUPERD_TEST_PASSED=", 0) == 0)
                found.push_back(var);
        return found;
    };
    INFO(superd.log());
    CHECK(passed() == std::vector<std::string>{"SUPERD_TEST_PASSED=yes"});
    // A reload reads pass_env again, and finds them gone still.
    REQUIRE(superd.reload());
    CHECK(passed() == std::vector<std::string>{"SUPERD_TEST_PASSED=yes"});
}

TEST_CASE("an upgrade hands the service manager to the new process: its variables, then MAINPID, then silence",
          "[notify]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    Notifier notifier(manager.address(), std::chrono::seconds(30));
    CHECK(notifier.environment()
          == std::vector<std::string>{"NOTIFY_SOCKET=" + manager.address(), "WATCHDOG_USEC=30000000"});
    notifier.hand_over(4242);
    CHECK(manager.receive() == "MAINPID=4242\nSTATUS=handed over to pid 4242");
    CHECK_FALSE(notifier.active());
    notifier.stopping();
    CHECK(manager.receive(100ms).empty());
    CHECK(Notifier().environment().empty());
}

TEST_CASE("under a service manager, an upgraded superd is the main pid, and only it says READY",
          "[notify][integration]")
{
    TempDir dir;
    Manager manager((dir.path() / "notify").string());
    uint16_t port = free_port();
    StartOptions options;
    options.env = {"NOTIFY_SOCKET=" + manager.address()};
    Superd superd(service_toml("echo", {loopback(port)}, service_binary("echo")), options);
    CHECK(manager.receive() == "READY=1\nSTATUS=services: 1, listeners: 1, running: 0");

    ::kill(superd.pid(), SIGUSR2);
    REQUIRE(superd.wait_for_log("upgrade ready pid="));
    std::smatch m;
    std::string log = superd.log();
    REQUIRE(std::regex_search(log, m, std::regex("upgrade ready pid=([0-9]+)")));
    pid_t successor = static_cast<pid_t>(std::stol(m[1]));
    // The new process says nothing until it is the main one.
    CHECK(manager.receive()
          == "MAINPID=" + std::to_string(successor) + "\nSTATUS=handed over to pid " + std::to_string(successor));
    CHECK(superd.wait_exit() == 0);
    // The new process tells the manager about its reloads.
    ::kill(successor, SIGHUP);
    CHECK(std::regex_match(manager.receive(), std::regex("RELOADING=1\nMONOTONIC_USEC=[0-9]+")));
    CHECK_THAT(manager.receive(), Catch::StartsWith("READY=1\n"));
    kill_and_reap(successor);
}

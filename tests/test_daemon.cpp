// superd's own behaviour, end to end: concurrency, what a child inherits,
// reaping, and failures that must not stop the daemon.
#include "tests/harness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>

#include <atomic>
#include <filesystem>
#include <latch>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using namespace harness;

namespace {

// The echo service for the tests that start hundreds of children: these
// prove what superd does with them, and /bin/cat echoes as well as
// services/echo does. A child built with the sanitizers (services/echo in
// the ASan build) costs a tenth of a second of CPU to start and, through
// LeakSanitizer, to end; services/echo has tests of its own.
const std::string kManyChildrenEcho = "/bin/cat";

// Waits until superd has no child left, zombie or running.
bool wait_no_children(const Superd& superd, std::chrono::milliseconds limit = 20s)
{
    return eventually([&] { return superd.children().empty(); }, limit);
}

// Whether `pid` blocks SIGCHLD, from the SigBlk mask in /proc.
bool blocks_sigchld(pid_t pid)
{
    std::string mask = proc_status(pid, "SigBlk");
    return !mask.empty() && ((std::stoull(mask, nullptr, 16) >> (SIGCHLD - 1)) & 1);
}

// Waits until `pid` blocks SIGCHLD, or until it does not.
bool wait_sigchld_blocked(pid_t pid, bool blocked, std::chrono::milliseconds limit = 10s)
{
    return eventually([&] { return blocks_sigchld(pid) == blocked; }, limit);
}

} // namespace

TEST_CASE("200 clients at once are all served correctly", "[daemon][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("echo", {loopback(port)}, kManyChildrenEcho));

    constexpr int kClients = 200;
    std::latch start(kClients);
    std::atomic<int> served{0};
    std::mutex failures_lock;
    std::vector<std::string> failures;
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.emplace_back([&, i] {
            bool arrived = false;
            try {
                UniqueFd fd = connect_tcp(port);
                arrived = true;
                start.arrive_and_wait(); // every client connected before any sends
                std::string message = "client " + std::to_string(i) + " says hello\n";
                send_all(fd.get(), message);
                ::shutdown(fd.get(), SHUT_WR);
                // 200 programs start and end at once: under ASan on two busy
                // cores that takes far longer than one exchange.
                if (read_to_eof(fd.get(), 60s) == message)
                    ++served;
                else
                    throw std::runtime_error("client " + std::to_string(i) + ": wrong reply");
            } catch (const std::exception& e) {
                if (!arrived)
                    start.count_down();
                std::lock_guard lock(failures_lock);
                failures.push_back(e.what());
            }
        });
    }
    for (auto& t : clients)
        t.join();
    INFO((failures.empty() ? std::string() : failures.front()));
    CHECK(served == kClients);
    CHECK(superd.wait_for_log("exited service=echo", kClients, 60s));
}

TEST_CASE("A child holds exactly fds 0-2 and starts with clean signals, even from a hostile parent",
          "[daemon][integration]")
{
    uint16_t port = free_port();
    StartOptions hostile;
    hostile.hostile_signals = true;
    Superd superd(service_toml("probe", {loopback(port)}, probe_binary()), hostile);

    UniqueFd fd = connect_tcp(port);
    sockaddr_storage mine{};
    socklen_t len = sizeof mine;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&mine), &len) == 0);
    ::shutdown(fd.get(), SHUT_WR);
    std::string report = read_to_eof(fd.get());
    INFO(report);

    CHECK(harness::lines_with_prefix(report, "fds: ") == std::vector<std::string>{"0 1 2"});
    CHECK(harness::lines_with_prefix(report, "sigblk: ") == std::vector<std::string>{"0000000000000000"});
    CHECK(harness::lines_with_prefix(report, "sigign: ") == std::vector<std::string>{"0000000000000000"});
    CHECK(harness::lines_with_prefix(report, "session: ") == std::vector<std::string>{"yes"});
    std::string client_port = std::to_string(ntohs(reinterpret_cast<sockaddr_in&>(mine).sin_port));
    auto env = harness::lines_with_prefix(report, "env: ");
    std::sort(env.begin(), env.end());
    CHECK(env
          == std::vector<std::string>{
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "PROTO=TCP",
              "REMOTE_ADDR=127.0.0.1",
              "REMOTE_PORT=" + client_port,
              "TCPLOCALIP=127.0.0.1",
              "TCPLOCALPORT=" + std::to_string(port),
              "TCPREMOTEIP=127.0.0.1",
              "TCPREMOTEPORT=" + client_port,
          });

    // superd itself unblocked SIGINT and handles it, ignored or not.
    ::kill(superd.pid(), SIGINT);
    CHECK(superd.wait_exit() == 0);
    CHECK_THAT(superd.log(), Catch::Contains("stopping signal=SIGINT"));
}

TEST_CASE("A wildcard listener tells the child the local address the client reached", "[daemon][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("probe", {std::to_string(port)}, probe_binary()));
    for (std::string host : {"127.0.0.1", "::1"}) {
        UniqueFd fd = connect_tcp(port, host);
        ::shutdown(fd.get(), SHUT_WR);
        auto env = harness::lines_with_prefix(read_to_eof(fd.get()), "env: ");
        CHECK(std::count(env.begin(), env.end(), "TCPLOCALIP=" + host) == 1);
        CHECK(std::count(env.begin(), env.end(), "REMOTE_ADDR=" + host) == 1);
    }
}

TEST_CASE("No zombie is left after 1,000 connections", "[daemon][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("echo", {loopback(port)}, kManyChildrenEcho));

    constexpr int kThreads = 10, kEach = 100;
    std::atomic<int> served{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < kEach; ++i) {
                try {
                    if (round_trip(port, "ping\n") == "ping\n")
                        ++served;
                } catch (const std::exception&) {
                }
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(served == kThreads * kEach);
    CHECK(superd.wait_for_log("exited service=echo", kThreads * kEach, 30s));
    CHECK(wait_no_children(superd));
    CHECK(superd.count_in_log("spawned service=echo") == kThreads * kEach);
}

TEST_CASE("A service whose program vanished closes the connection and others keep serving", "[daemon][integration]")
{
    TempDir programs;
    auto doomed = programs.path() / "doomed";
    std::filesystem::copy_file(service_binary("echo"), doomed);
    std::filesystem::permissions(doomed, std::filesystem::perms::owner_all);

    uint16_t gone_port = free_port(), echo_port = free_port();
    Superd superd(service_toml("gone", {loopback(gone_port)}, doomed.string())
                  + service_toml("echo", {loopback(echo_port)}, service_binary("echo")));
    std::filesystem::remove(doomed);

    for (int i = 0; i < 3; ++i) {
        UniqueFd fd = connect_tcp(gone_port);
        send_all(fd.get(), "anyone there?\n");
        CHECK(read_to_eof(fd.get()) == "");
    }
    CHECK(superd.wait_for_log("failed service=gone", 3));
    CHECK_THAT(superd.log(), Catch::Contains("No such file or directory"));
    CHECK(round_trip(echo_port, "still here\n") == "still here\n");
    CHECK(superd.stop() == 0);
}

TEST_CASE("Each child's end is logged with its status and duration", "[daemon][integration]")
{
    TempDir programs;
    std::string script = programs.write("fails", "#!/bin/sh\nexit 7\n");
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    uint16_t port = free_port();
    Superd superd(service_toml("fails", {loopback(port)}, script));

    UniqueFd fd = connect_tcp(port);
    CHECK(read_to_eof(fd.get()) == "");
    REQUIRE(superd.wait_for_log("exited service=fails"));
    std::string log = superd.log();
    std::regex line(R"(exited service=fails pid=\d+ peer=127\.0\.0\.1:\d+ status="exit 7" ran=\d+\.\d{3}s)");
    CHECK(std::regex_search(log, line));
}

TEST_CASE("SIGCHLD is blocked while every child has a pidfd, and unblocked to reap one without",
          "[daemon][integration]")
{
    uint16_t port = free_port();
    StartOptions few_fds;
    few_fds.max_fds = 64;
    // /bin/cat holds each connection until its client closes it.
    Superd superd(service_toml("cat", {loopback(port)}, "/bin/cat"), few_fds);
    auto served = [](int fd) {
        send_all(fd, "ping\n");
        return read_n(fd, 5, 5s) == "ping\n";
    };

    std::vector<UniqueFd> clients;
    clients.push_back(connect_tcp(port));
    REQUIRE(served(clients.back().get()));
    CHECK(wait_sigchld_blocked(superd.pid(), true));

    // Each live child's pidfd is one of superd's 64 fds: past about fifty,
    // children are spawned without one and must be reaped on SIGCHLD.
    while (clients.size() < 90) {
        clients.push_back(connect_tcp(port));
        REQUIRE(served(clients.back().get()));
    }
    CHECK(wait_sigchld_blocked(superd.pid(), false));

    size_t spawned = clients.size();
    clients.clear();
    CHECK(superd.wait_for_log("exited service=cat", spawned, 20s));
    CHECK(wait_no_children(superd));
    CHECK(wait_sigchld_blocked(superd.pid(), true));
    CHECK(superd.stop() == 0);
}

TEST_CASE("Two superd with reuse_port on one port both serve it, and one without cannot start", "[daemon][integration]")
{
    uint16_t port = harness::free_port();
    // The program names the superd that spawned it: its parent.
    std::string config = "[service.who]\nlisten = [\"" + harness::loopback(port)
                         + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"echo $PPID\"]\nreuse_port = true\n";
    harness::Superd first(config);
    harness::Superd second(config);
    std::set<std::string> answered;
    // The kernel picks a socket by the connection's addresses and ports: a
    // few dozen source ports reach both (all on one has odds of 2^-39).
    for (int i = 0; i < 40 && answered.size() < 2; ++i)
        answered.insert(harness::round_trip(port, ""));
    CHECK(answered == std::set<std::string>{std::to_string(first.pid()) + "\n", std::to_string(second.pid()) + "\n"});

    std::string plain = "[service.who]\nlisten = [\"" + harness::loopback(port) + "\"]\nprogram = \"/bin/true\"\n";
    harness::TempDir dir;
    auto refused = harness::run_superd({"--config", dir.write("plain.toml", plain), "--control", ""});
    CHECK(refused.status != 0);
    CHECK_THAT(refused.output, Catch::Contains("Address already in use"));
}

#include "superd/launcher.h"

#include "tests/harness.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>

#include <csignal>

using superd::Launcher;

namespace {

superd::SocketAddress parse(const std::string& text)
{
    auto parsed = superd::parse_listen_address(text);
    REQUIRE(parsed.ok());
    return parsed->front();
}

superd::ServiceConfig probe_service()
{
    superd::ServiceConfig config;
    config.name = "probe";
    config.program = harness::probe_binary();
    config.args = {"probe"};
    config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    return config;
}

} // namespace

TEST_CASE("A spawned service gets the connection on 0/1/2, a clean environment and default signals", "[spawn]")
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    superd::UniqueFd ours(pair[0]), theirs(pair[1]);

    // A careless library's fd without close-on-exec, an ignored SIGPIPE and a
    // blocked SIGUSR2 in the parent: none of it may reach the child.
    superd::UniqueFd leaky(::open("/dev/null", O_RDONLY));
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t blocked, previous;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR2);
    ::sigprocmask(SIG_BLOCK, &blocked, &previous);

    auto remote = harness::socket_address("::ffff:192.0.2.7", 4000);
    auto local = parse("127.0.0.1:7007");
    Launcher launcher(probe_service());
    auto result =
        launcher.spawn(superd::SpawnIo{theirs.get(), -1, -1}, superd::Peer{&remote, &local, std::nullopt, {}});

    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    REQUIRE(result.error == 0);
    REQUIRE(result.pid > 0);
    theirs.reset();

    ::shutdown(ours.get(), SHUT_WR);
    std::string report = harness::read_to_eof(ours.get());
    int status = 0;
    REQUIRE(::waitpid(result.pid, &status, 0) == result.pid);
    CHECK(WIFEXITED(status));

    INFO(report);
    CHECK(harness::lines_with_prefix(report, "fds: ") == std::vector<std::string>{"0 1 2"});
    CHECK(harness::lines_with_prefix(report, "sigblk: ") == std::vector<std::string>{"0000000000000000"});
    CHECK(harness::lines_with_prefix(report, "sigign: ") == std::vector<std::string>{"0000000000000000"});
    CHECK(harness::lines_with_prefix(report, "session: ") == std::vector<std::string>{"yes"});
    auto env = harness::lines_with_prefix(report, "env: ");
    std::sort(env.begin(), env.end());
    CHECK(env
          == std::vector<std::string>{
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "PROTO=TCP",
              "REMOTE_ADDR=192.0.2.7",
              "REMOTE_PORT=4000",
              "TCPLOCALIP=127.0.0.1",
              "TCPLOCALPORT=7007",
              "TCPREMOTEIP=192.0.2.7",
              "TCPREMOTEPORT=4000",
          });
}

TEST_CASE("A program that cannot be executed is a spawn error, not a child", "[spawn]")
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    superd::UniqueFd ours(pair[0]), theirs(pair[1]);

    superd::ServiceConfig config = probe_service();
    config.program = "/nonexistent/program";
    Launcher launcher(config);
    auto remote = parse("127.0.0.1:1");
    auto local = parse("127.0.0.1:2");
    auto result =
        launcher.spawn(superd::SpawnIo{theirs.get(), -1, -1}, superd::Peer{&remote, &local, std::nullopt, {}});
    CHECK(result.error == ENOENT);
    CHECK(std::string(result.step) == "exec");
    CHECK(result.pid == -1);
    CHECK(::waitpid(-1, nullptr, WNOHANG) < 0); // nothing to reap
}

TEST_CASE("A connection's own variables (TLS's) follow the service's and the address variables", "[spawn]")
{
    auto remote = parse("127.0.0.1:4000");
    auto local = parse("127.0.0.1:7443");
    Launcher launcher(probe_service());
    std::vector<std::string> tls{"HTTPS=on", "SSL_PROTOCOL=TLSv1.3"};
    for (bool with_tls : {true, false}) {
        superd::Peer peer{&remote, &local, std::nullopt, {}};
        if (with_tls)
            peer.environment = tls;
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        superd::UniqueFd mine(fds[0]), child(fds[1]);
        auto result = launcher.spawn(superd::SpawnIo{child.get(), -1, -1}, peer);
        REQUIRE(result.error == 0);
        child.reset();
        ::shutdown(mine.get(), SHUT_WR);
        std::string report = harness::read_to_eof(mine.get());
        REQUIRE(::waitpid(result.pid, nullptr, 0) == result.pid);
        auto env = harness::lines_with_prefix(report, "env: ");
        INFO(report);
        CHECK(std::count(env.begin(), env.end(), "HTTPS=on") == (with_tls ? 1 : 0));
        CHECK(std::count(env.begin(), env.end(), "SSL_PROTOCOL=TLSv1.3") == (with_tls ? 1 : 0));
        CHECK(std::count(env.begin(), env.end(), "TCPREMOTEPORT=4000") == 1);
    }
}

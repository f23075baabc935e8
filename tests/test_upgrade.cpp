// Tests for the upgrade (upgrade.h): the handover protocol with small shell
// programs standing in for the new superd, then the real superd upgraded
// under load, to a broken configuration, with connections waiting in a
// backlog, and through superctl.
#include "superd/upgrade.h"

#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/wait.h>

#include <csignal>
#include <regex>
#include <thread>

using namespace harness;
using superd::HandedSocket;
using superd::SelfCommand;
using superd::Upgrade;

namespace {

// Runs an Upgrade of `script` (sh -c) on a loop of its own until it is done.
struct UpgradeRun {
    superd::EventBase base{event_base_new()};
    superd::EventTimers timers{base.get()};
    std::optional<Upgrade::Outcome> outcome;
    pid_t pid = -1;

    UpgradeRun(const std::string& script, std::span<const HandedSocket> sockets = {},
               std::chrono::milliseconds deadline = 10s)
    {
        SelfCommand command{"/bin/sh", {"sh", "-c", script, "sh"}};
        auto upgrade = Upgrade::start(
            base.get(), timers, command, sockets, std::vector<std::string>{"PATH=/usr/bin:/bin"}, std::nullopt,
            [this](const Upgrade::Outcome& o) { outcome = o; }, deadline);
        REQUIRE(upgrade);
        pid = (*upgrade)->pid();
        // Bounded: the deadline ends every run that says nothing.
        auto limit = std::chrono::steady_clock::now() + 20s;
        while (!outcome && std::chrono::steady_clock::now() < limit)
            event_base_loop(base.get(), EVLOOP_ONCE);
        int status = 0;
        ::waitpid(pid, &status, 0);
        (*upgrade)->exited(status);
    }
};

pid_t pid_in(const std::string& log, const std::string& prefix)
{
    std::smatch m;
    if (!std::regex_search(log, m, std::regex(prefix + "([0-9]+)")))
        return -1;
    return static_cast<pid_t>(std::stol(m[1]));
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// The new superd of an upgrade, ended by pid even when an assertion ends
// the test first: once the old one has exited, no Superd owns it.
struct NewSuperd {
    pid_t pid = -1;
    ~NewSuperd() { kill_and_reap(pid); }
};

std::string superctl_says(const Superd& superd, const std::vector<std::string>& command)
{
    std::vector<std::string> argv{SUPERCTL_BINARY, "-s", superd.control_path(), "-t", "20"};
    argv.insert(argv.end(), command.begin(), command.end());
    auto run = run_command(argv, 30s);
    return std::to_string(run.status) + " " + run.output;
}

// A service that says which superd spawned it.
std::string parent_service(uint16_t port)
{
    return "[service.parent]\nlisten = [\"127.0.0.1:" + std::to_string(port)
           + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"echo $PPID\"]\n\n";
}

} // namespace

TEST_CASE("An upgrade's new process that says ready is ready", "[upgrade]")
{
    UpgradeRun run("echo ready >&3");
    REQUIRE(run.outcome);
    CHECK(run.outcome->ready);
}

TEST_CASE("An upgrade hands over its sockets on fds 3 and up, named, with LISTEN_PID the new process's", "[upgrade]")
{
    int pair[2][2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair[0]) == 0);
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair[1]) == 0);
    superd::UniqueFd keep[] = {superd::UniqueFd(pair[0][0]), superd::UniqueFd(pair[0][1]), superd::UniqueFd(pair[1][0]),
                               superd::UniqueFd(pair[1][1])};
    std::vector<HandedSocket> sockets{{pair[0][0], "echo"}, {pair[1][0], "control"}};
    // The sockets, the pipe on the next fd, nothing else open above it;
    // what it says is not "ready", so it comes back as the reason.
    UpgradeRun run("test -S /proc/self/fd/3 && test -S /proc/self/fd/4 && test -p /proc/self/fd/5 "
                   "&& ! test -e /proc/self/fd/6 && echo \"$LISTEN_FDS $LISTEN_FDNAMES $LISTEN_PID $$ $*\" >&5",
                   sockets);
    REQUIRE(run.outcome);
    CHECK_FALSE(run.outcome->ready);
    CHECK(run.outcome->reason
          == "2 echo:control " + std::to_string(run.pid) + " " + std::to_string(run.pid) + " --ready-fd 5");
}

TEST_CASE("An upgrade's new process that exits without a word has failed", "[upgrade]")
{
    UpgradeRun run("exit 3");
    REQUIRE(run.outcome);
    CHECK_FALSE(run.outcome->ready);
    CHECK(run.outcome->reason == "exited before it was ready");
}

TEST_CASE("An upgrade's new process that is not ready in time is killed", "[upgrade]")
{
    auto started = std::chrono::steady_clock::now();
    UpgradeRun run("exec sleep 30", {}, 200ms);
    REQUIRE(run.outcome);
    CHECK_FALSE(run.outcome->ready);
    CHECK(run.outcome->reason == "not ready within 200ms");
    // Killed, not waited for: the shell's sleep would take 30 s.
    CHECK(std::chrono::steady_clock::now() - started < 20s);
}

TEST_CASE("An upgrade to a binary that cannot run fails at once", "[upgrade]")
{
    superd::EventBase base(event_base_new());
    superd::EventTimers timers(base.get());
    auto upgrade = Upgrade::start(base.get(), timers, SelfCommand{"/nonexistent/superd", {"superd"}}, {}, {},
                                  std::nullopt, [](const Upgrade::Outcome&) {});
    REQUIRE_FALSE(upgrade);
    CHECK(upgrade.error() == "cannot execute /nonexistent/superd: No such file or directory");
}

TEST_CASE("SelfCommand drops an earlier upgrade's --ready-fd", "[upgrade]")
{
    std::vector<std::string> args{"superd", "--config", "a.toml", "--ready-fd", "7", "--ready-fd=9", "-l", "debug"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    SelfCommand self = SelfCommand::of_this_process(static_cast<int>(argv.size()), argv.data());
    CHECK(self.argv == std::vector<std::string>{"superd", "--config", "a.toml", "-l", "debug"});
    CHECK(self.program.starts_with("/"));
}

TEST_CASE("SIGUSR2 under load: no connection is refused, the new superd serves and the old one exits",
          "[upgrade][integration]")
{
    uint16_t echo = free_port(), builtin = free_port(), parent = free_port();
    Superd superd(service_toml("echo", {loopback(echo)}, service_binary("echo")) + "[service.becho]\nlisten = [\""
                  + loopback(builtin) + "\"]\nbuiltin = \"echo\"\n\n" + parent_service(parent));
    CHECK(round_trip(parent, "") == std::to_string(superd.pid()) + "\n");

    // 16 clients on each of a program and a builtin while the upgrade runs.
    auto load = [](uint16_t port) {
        return std::make_unique<Process>(std::vector<std::string>{
            std::string(BENCH_DIR) + "/loadgen", "--port", std::to_string(port), "--concurrency", "16", "--duration",
            "3", "--message", "upgrade\\n", "--expect", "upgrade\\n"});
    };
    auto programs = load(echo);
    auto builtins = load(builtin);
    REQUIRE(superd.wait_for_log("spawned service=echo", 20));
    ::kill(superd.pid(), SIGUSR2);
    REQUIRE(superd.wait_for_log("upgrade ready pid="));
    pid_t successor = pid_in(superd.log(), "upgrade ready pid=");
    NewSuperd ending{successor};
    REQUIRE(successor > 0);
    CHECK(successor != superd.pid());

    // The new superd spawns what comes now.
    CHECK(round_trip(parent, "") == std::to_string(successor) + "\n");
    for (auto* run : {programs.get(), builtins.get()}) {
        REQUIRE(eventually([&] { return run->exited(); }, 20s));
        INFO(run->output());
        CHECK(std::regex_search(run->output(), std::regex(R"(completed=[1-9]\d* errors=0 )")));
    }
    // The old one is gone once its connections are: with status 0.
    CHECK(superd.wait_exit(10s) == 0);
    CHECK(superd.count_in_log("upgraded: exiting, pid " + std::to_string(successor) + " serves") == 1);
    CHECK(round_trip(echo, "still\n") == "still\n");
    CHECK(alive(successor));
}

TEST_CASE("An upgrade to a configuration with an error is refused and the old superd serves on",
          "[upgrade][integration]")
{
    uint16_t port = free_port();
    std::string config = service_toml("echo", {loopback(port)}, service_binary("echo"));
    Superd superd(config);
    superd.rewrite_config(config + "[service.broken]\nlisten = [\"" + loopback(free_port()) + "\"]\n");
    ::kill(superd.pid(), SIGUSR2);
    REQUIRE(superd.wait_for_log("upgrade failed pid="));
    CHECK(std::regex_search(
        superd.log(),
        std::regex(
            R"(upgrade failed pid=\d+ reason="[^"]*superd\.toml:\d+: service 'broken': [^"]+" \(this superd serves on\))")));
    pid_t failed = pid_in(superd.log(), "upgrade failed pid=");
    // Reaped, whether it exited first or was killed first.
    REQUIRE(superd.wait_for_log("reaped pid=" + std::to_string(failed) + " status="));
    CHECK(superd.count_in_log("reaped pid=" + std::to_string(failed) + " status=") == 1);
    CHECK(std::regex_search(superd.log(), std::regex("reaped pid=" + std::to_string(failed)
                                                     + R"( status="[^"]+" \(an upgrade's new superd\))")));
    CHECK(round_trip(port, "on\n") == "on\n");
    // A second try, the file fixed, goes through.
    superd.rewrite_config(config);
    CHECK(superctl_says(superd, {"upgrade"}).starts_with("0 upgraded: pid "));
    CHECK(superd.wait_exit(10s) == 0);
    NewSuperd ending{pid_in(superd.log(), "upgrade ready pid=")};
    CHECK(round_trip(port, "new\n") == "new\n");
}

TEST_CASE("Connections waiting in the backlog at the upgrade are served by the new superd", "[upgrade][integration]")
{
    uint16_t port = free_port();
    Superd superd(parent_service(port));
    // Paused, the old superd accepts nothing: the backlog holds them.
    CHECK(superctl_says(superd, {"pause", "parent"}).starts_with("0 "));
    std::vector<superd::UniqueFd> waiting;
    for (int i = 0; i < 3; ++i)
        waiting.push_back(connect_tcp(port));
    superd.settle();
    CHECK(superd.count_in_log("spawned service=parent") == 0);

    auto said = superctl_says(superd, {"upgrade"});
    INFO(said);
    REQUIRE(said.starts_with("0 upgraded: pid "));
    pid_t successor = pid_in(said, "upgraded: pid ");
    NewSuperd ending{successor};
    for (auto& fd : waiting)
        CHECK(read_to_eof(fd.get()) == std::to_string(successor) + "\n");
    CHECK(superd.wait_exit(10s) == 0);
}

TEST_CASE("superctl upgrade says why an upgrade failed", "[upgrade][integration]")
{
    uint16_t port = free_port();
    std::string config = service_toml("echo", {loopback(port)}, service_binary("echo"));
    Superd superd(config);
    superd.rewrite_config(config + "bogus = 1\n");
    auto said = superctl_says(superd, {"upgrade"});
    CHECK(std::regex_search(said, std::regex(R"(^1 superctl: upgrade failed: \S*superd\.toml:\d+: )")));
    CHECK(round_trip(port, "on\n") == "on\n");
    CHECK(alive(superd.pid()));
}

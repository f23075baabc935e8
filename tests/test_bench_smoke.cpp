// Smoke runs of the benchmark's tools, so they never rot: a few hundred
// connections each, checked for errors and output format, never for speed
// (bench/compare measures that, side by side).
#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <regex>
#include <thread>

using namespace harness;

namespace {

std::string bench(const std::string& tool) { return std::string(BENCH_DIR) + "/" + tool; }

void check_run(uint16_t port)
{
    auto run = run_command({bench("loadgen"), "--port", std::to_string(port), "--concurrency", "8", "--duration", "20",
                            "--max-connections", "300"},
                           60s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(std::regex_search(
        run.output, std::regex(R"(conn_per_s=[0-9.]+ completed=300 errors=0 p50_us=\d+ p99_us=\d+ max_us=\d+)")));
}

// A reference server started by the test, ended by pid.
struct Reference {
    pid_t pid;
    explicit Reference(std::vector<std::string> argv)
    {
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        pid = ::fork();
        if (pid == 0) {
            ::execv(args[0], args.data());
            ::_exit(127);
        }
    }
    ~Reference() { kill_and_reap(pid); }
};

void wait_listening(uint16_t port)
{
    for (int i = 0; i < 200; ++i) {
        try {
            connect_tcp(port);
            return;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(20ms);
        }
    }
    FAIL("nothing listens on port " << port);
}

} // namespace

TEST_CASE("The load generator drives superd's spawned and builtin services", "[bench][integration]")
{
    uint16_t cat = free_port(), echo = free_port();
    Superd superd(service_toml("cat", {loopback(cat)}, "/bin/cat") + "[service.echo]\nlisten = [\"" + loopback(echo)
                  + "\"]\nbuiltin = \"echo\"\n");
    check_run(cat);
    check_run(echo);
    CHECK(superd.settled_count("spawned service=cat", 300) == 300);
}

TEST_CASE("The reference servers answer the load generator", "[bench][integration]")
{
    uint16_t spawn_port = free_port(), echo_port = free_port();
    Reference spawner({bench("ref_spawn"), std::to_string(spawn_port), "/bin/cat"});
    Reference echoer({bench("ref_echo"), std::to_string(echo_port)});
    wait_listening(spawn_port);
    wait_listening(echo_port);
    check_run(spawn_port);
    check_run(echo_port);
}

TEST_CASE("The load generator counts a refused port as errors and does not hang", "[bench][integration]")
{
    auto run = run_command({bench("loadgen"), "--port", std::to_string(free_port()), "--duration", "1",
                            "--max-connections", "20", "--timeout", "2"},
                           30s);
    CHECK(run.status == 1);
    CHECK_THAT(run.output, Catch::Contains("errors=20"));
}

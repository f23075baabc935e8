#include "superd/children.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("Wait statuses read as exit codes and signals", "[children]")
{
    int exited = 0, killed = 0;
    pid_t a = ::fork();
    if (a == 0)
        ::_exit(3);
    ::waitpid(a, &exited, 0);
    pid_t b = ::fork();
    if (b == 0) {
        ::pause();
        ::_exit(0);
    }
    ::kill(b, SIGKILL);
    ::waitpid(b, &killed, 0);

    CHECK(superd::describe_wait_status(exited) == "exit 3");
    CHECK(superd::describe_wait_status(killed) == "signal 9 (Killed)");
}

TEST_CASE("reap() collects every ended child, known or not", "[children]")
{
    superd::ChildTable table;
    std::vector<pid_t> known;
    for (int i = 0; i < 5; ++i) {
        pid_t pid = ::fork();
        if (pid == 0)
            ::_exit(10 + i);
        table.add(pid, superd::Child{"svc" + std::to_string(i), {}, superd::Clock::now(), "", std::nullopt});
        known.push_back(pid);
    }
    pid_t stranger = ::fork();
    if (stranger == 0)
        ::_exit(0);
    REQUIRE(table.size() == 5);

    std::vector<superd::ChildExit> exits;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (exits.size() < 6 && std::chrono::steady_clock::now() < deadline) {
        table.reap([&](const superd::ChildExit& e) { exits.push_back(e); });
        std::this_thread::sleep_for(5ms);
    }
    REQUIRE(exits.size() == 6);
    CHECK(table.size() == 0);
    for (const auto& e : exits) {
        if (e.pid == stranger) {
            CHECK_FALSE(e.known);
            continue;
        }
        REQUIRE(e.known);
        size_t i = static_cast<size_t>(std::find(known.begin(), known.end(), e.pid) - known.begin());
        REQUIRE(i < known.size());
        CHECK(e.child.service == "svc" + std::to_string(i));
        CHECK(WEXITSTATUS(e.status) == 10 + static_cast<int>(i));
    }
    // Nothing is left to reap: no zombie remains.
    CHECK(::waitpid(-1, nullptr, WNOHANG) < 0);
}

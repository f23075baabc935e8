#include "superd/children.h"

#include "tests/fake_timers.h"

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
        table.add(pid, superd::Child{"svc" + std::to_string(i), {}, superd::Clock::now(), "", 0, {}});
        known.push_back(pid);
    }
    pid_t stranger = ::fork();
    if (stranger == 0)
        ::_exit(0);
    REQUIRE(table.size() == 5);

    std::vector<superd::ChildExit> exits;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (exits.size() < 6 && std::chrono::steady_clock::now() < deadline) {
        table.reap([&](superd::ChildExit& e) { exits.push_back(std::move(e)); });
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

namespace {

// Records what would be signalled.
struct FakeSessions final : superd::Sessions {
    void signal(pid_t sid, int signal) override { sent.emplace_back(sid, signal); }
    bool group_alive(pid_t) override { return true; }
    std::vector<std::pair<pid_t, int>> sent;
};

} // namespace

TEST_CASE("A timeout sends SIGTERM to the session, then SIGKILL after the grace", "[children]")
{
    fake::FakeTimers time;
    FakeSessions sessions;
    int counted = 0;
    superd::Deadline deadline(time, sessions, 4242, "svc", {300ms, 2000ms}, [&] { ++counted; });
    time.advance(299ms);
    CHECK(sessions.sent.empty());
    time.advance(1ms);
    using Sent = std::vector<std::pair<pid_t, int>>;
    CHECK(sessions.sent == Sent{{4242, SIGTERM}});
    CHECK(counted == 1);
    time.advance(1999ms);
    CHECK(sessions.sent.size() == 1);
    time.advance(1ms);
    CHECK(sessions.sent == Sent{{4242, SIGTERM}, {4242, SIGKILL}});
    time.advance(1h);
    CHECK(sessions.sent.size() == 2); // once each
    CHECK(counted == 1);
}

TEST_CASE("A session that ends before its timeout is never signalled", "[children]")
{
    fake::FakeTimers time;
    FakeSessions sessions;
    {
        superd::Deadline deadline(time, sessions, 4242, "svc", {300ms, 300ms}, [] {});
        time.advance(299ms);
    }
    time.advance(1h);
    CHECK(sessions.sent.empty());
    // Ended in its grace: no SIGKILL.
    {
        superd::Deadline deadline(time, sessions, 4243, "svc", {300ms, 300ms}, [] {});
        time.advance(400ms);
    }
    time.advance(1h);
    CHECK(sessions.sent == std::vector<std::pair<pid_t, int>>{{4243, SIGTERM}});
}

namespace {

// A relay that closes when the test says so.
class FakeRelay final : public superd::Relay {
public:
    explicit FakeRelay(int& destroyed) : destroyed_(destroyed) {}
    ~FakeRelay() override { ++destroyed_; }
    void start(event_base*, Closed closed) override { closed_ = std::move(closed); }
    void close() { closed_(superd::RelayEnd{}); }

private:
    int& destroyed_;
    Closed closed_;
};

superd::ServiceConfig limited_service()
{
    superd::ServiceConfig config;
    config.name = "relayed";
    config.max_instances = 1;
    return config;
}

} // namespace

TEST_CASE("Without a relay, a connection is over when its session ends", "[children]")
{
    superd::Admission admission;
    admission.configure(limited_service(), superd::Clock::now());
    superd::Lifetime life(admission.count_unadmitted());
    CHECK(admission.running() == 1);
    CHECK(life.relay() == nullptr);
    CHECK(life.session_ended());
    CHECK_FALSE(life.session_ended()); // once
    CHECK(life.over());
    life.ticket().end();
    CHECK(admission.running() == 0);
    CHECK(admission.has_room());
}

TEST_CASE("A relayed connection is over when its session has ended and its relay has closed, in either order",
          "[children]")
{
    superd::Admission admission;
    admission.configure(limited_service(), superd::Clock::now());
    int destroyed = 0;
    bool exit_first = GENERATE(true, false);
    {
        superd::Lifetime life(admission.count_unadmitted(), std::make_unique<FakeRelay>(destroyed));
        auto* relay = static_cast<FakeRelay*>(life.relay());
        int ends = 0;
        relay->start(nullptr, [&](const superd::RelayEnd&) {
            if (life.relay_closed() && life.ticket().end())
                ++ends;
        });
        CHECK_FALSE(admission.has_room());

        if (exit_first) {
            CHECK_FALSE(life.session_ended());
            CHECK(admission.running() == 1); // still counted: the relay is open
            relay->close();
        } else {
            relay->close();
            CHECK(ends == 0);
            CHECK(admission.running() == 1); // still counted: the session runs
            if (life.session_ended() && life.ticket().end())
                ++ends;
        }
        CHECK(life.over());
        CHECK(ends == 1);
        CHECK(admission.running() == 0);
        CHECK(admission.has_room());
        // A late or repeated report changes nothing.
        CHECK_FALSE(life.session_ended());
        CHECK_FALSE(life.relay_closed());
        CHECK_FALSE(life.ticket().end());
        CHECK(destroyed == 0); // the relay lives as long as its lifetime
    }
    CHECK(destroyed == 1);
    CHECK(admission.running() == 0);
}

TEST_CASE("Dropping a relayed connection before its end frees its relay and its count", "[children]")
{
    superd::Admission admission;
    admission.configure(limited_service(), superd::Clock::now());
    int destroyed = 0;
    {
        superd::Lifetime life(admission.count_unadmitted(), std::make_unique<FakeRelay>(destroyed));
        superd::Lifetime moved = std::move(life); // as a Child moves from table to lingering to relaying
        CHECK(moved.relay() != nullptr);
        CHECK(admission.running() == 1);
    }
    CHECK(destroyed == 1);
    CHECK(admission.running() == 0);
}

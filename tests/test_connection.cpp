// The connection pipeline: stages in simulated time, and one stage that
// reads from its connection on a real event loop, as a PROXY header or a
// TLS handshake will.
#include "superd/connection.h"

#include "superd/event.h"
#include "tests/fake_timers.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace superd;
using namespace std::chrono_literals;

namespace {

// A stage that finishes (or fails) `after` a delay in simulated time, and
// says whether its run was cancelled.
class TimedStage final : public Stage {
public:
    TimedStage(fake::FakeTimers& time, std::chrono::milliseconds after, std::optional<std::string> failure = {},
               std::chrono::milliseconds deadline = 1s)
        : time_(time), after_(after), failure_(std::move(failure)), deadline_(deadline)
    {
    }
    const char* name() const override { return "timed"; }
    std::chrono::milliseconds deadline() const override { return deadline_; }
    std::unique_ptr<Run> start(event_base*, Connection&, Done done) override
    {
        ++started;
        if (after_ == 0ms) {
            done(failure_);
            return nullptr;
        }
        return std::make_unique<TimedRun>(this, time_, after_, std::move(done));
    }

    int started = 0;
    int cancelled = 0;

private:
    struct TimedRun final : Run {
        TimedRun(TimedStage* stage, fake::FakeTimers& time, std::chrono::milliseconds after, Done done)
            : owner(stage), finish(std::move(done)), timer(time.timer([this] {
                  finished = true;
                  finish(owner->failure_);
              }))
        {
            timer->arm(after);
        }
        ~TimedRun() override
        {
            if (!finished)
                ++owner->cancelled;
        }
        TimedStage* owner;
        Done finish;
        bool finished = false;
        std::unique_ptr<Timer> timer;
    };

    fake::FakeTimers& time_;
    std::chrono::milliseconds after_;
    std::optional<std::string> failure_;
    std::chrono::milliseconds deadline_;
};

struct Outcome {
    std::vector<std::string> served;
    std::vector<std::string> failed;
};

Pipeline::Next serve_into(Outcome& outcome)
{
    return [&outcome](Connection& c) { outcome.served.push_back(c.fd ? "fd" : "none"); };
}

Pipeline::Failed fail_into(Outcome& outcome)
{
    return [&outcome](Connection&, const Stage& stage, const std::string& reason) {
        outcome.failed.push_back(std::string(stage.name()) + ":" + reason);
    };
}

Connection with_ticket(Admission& admission)
{
    Connection c;
    c.fd = UniqueFd(::dup(0));
    c.ticket = admission.count_unadmitted();
    return c;
}

} // namespace

TEST_CASE("Without stages the handler runs at once", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    Outcome outcome;
    pipeline.run(Connection{}, {}, serve_into(outcome), fail_into(outcome));
    CHECK(outcome.served.size() == 1);
    CHECK(pipeline.in_progress() == 0);
    CHECK(time.armed() == 0); // no deadline was even set
}

TEST_CASE("Stages run in order, then the handler gets the connection", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    auto now = std::make_shared<TimedStage>(time, 0ms);
    auto soon = std::make_shared<TimedStage>(time, 200ms);
    auto later = std::make_shared<TimedStage>(time, 300ms);
    std::vector<std::shared_ptr<Stage>> stages{now, soon, later};
    Admission admission;
    Outcome outcome;
    pipeline.run(with_ticket(admission), stages, serve_into(outcome), fail_into(outcome));
    CHECK(now->started == 1);
    CHECK(soon->started == 1);
    CHECK(later->started == 0);
    CHECK(pipeline.in_progress() == 1);
    CHECK(admission.running() == 1); // counted while in a stage
    time.advance(200ms);
    CHECK(later->started == 1);
    CHECK(outcome.served.empty());
    time.advance(300ms);
    CHECK(outcome.served == std::vector<std::string>{"fd"});
    CHECK(outcome.failed.empty());
    CHECK(pipeline.in_progress() == 0);
    CHECK(time.armed() == 0);
}

TEST_CASE("A stage that fails refuses the connection with its reason and ends its ticket", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    auto bad_header = std::make_shared<TimedStage>(time, 10ms, "bad-header");
    auto never = std::make_shared<TimedStage>(time, 0ms);
    std::vector<std::shared_ptr<Stage>> stages{bad_header, never};
    Admission admission;
    Outcome outcome;
    pipeline.run(with_ticket(admission), stages, serve_into(outcome), fail_into(outcome));
    time.advance(10ms);
    CHECK(outcome.failed == std::vector<std::string>{"timed:bad-header"});
    CHECK(outcome.served.empty());
    CHECK(never->started == 0);
    CHECK(admission.running() == 0);
    CHECK(pipeline.in_progress() == 0);
}

TEST_CASE("A stage that fails at once is refused at once", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    auto bad = std::make_shared<TimedStage>(time, 0ms, "no");
    std::vector<std::shared_ptr<Stage>> stages{bad};
    Outcome outcome;
    pipeline.run(Connection{}, stages, serve_into(outcome), fail_into(outcome));
    CHECK(outcome.failed == std::vector<std::string>{"timed:no"});
    CHECK(pipeline.in_progress() == 0);
}

TEST_CASE("A stage over its deadline is cancelled and the connection refused", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    auto slow = std::make_shared<TimedStage>(time, 10s, std::nullopt, 500ms);
    std::vector<std::shared_ptr<Stage>> stages{slow};
    Admission admission;
    Outcome outcome;
    pipeline.run(with_ticket(admission), stages, serve_into(outcome), fail_into(outcome));
    time.advance(499ms);
    CHECK(outcome.failed.empty());
    time.advance(1ms);
    CHECK(outcome.failed == std::vector<std::string>{"timed:stage timed out after 500ms"});
    CHECK(slow->cancelled == 1);
    CHECK(admission.running() == 0);
    time.advance(1h);
    CHECK(outcome.served.empty()); // the cancelled run never calls back
}

TEST_CASE("Destroying the pipeline cancels the connections in a stage", "[connection]")
{
    fake::FakeTimers time;
    Admission admission;
    auto slow = std::make_shared<TimedStage>(time, 10s);
    std::vector<std::shared_ptr<Stage>> stages{slow};
    Outcome outcome;
    {
        Pipeline pipeline(nullptr, time);
        pipeline.run(with_ticket(admission), stages, serve_into(outcome), fail_into(outcome));
        CHECK(admission.running() == 1);
    }
    CHECK(slow->cancelled == 1);
    CHECK(admission.running() == 0);
    time.advance(1h);
    CHECK(outcome.served.empty());
    CHECK(outcome.failed.empty());
}

TEST_CASE("A connection in a stage keeps the stage alive when its service lets go of it", "[connection]")
{
    fake::FakeTimers time;
    Pipeline pipeline(nullptr, time);
    auto slow = std::make_shared<TimedStage>(time, 100ms);
    std::weak_ptr<TimedStage> watched = slow;
    std::vector<std::shared_ptr<Stage>> stages{slow};
    Outcome outcome;
    pipeline.run(Connection{}, stages, serve_into(outcome), fail_into(outcome));
    stages.clear(); // a reload replaced the service and its stages
    slow.reset();
    CHECK_FALSE(watched.expired());
    time.advance(100ms);
    CHECK(outcome.served.size() == 1);
    CHECK(watched.expired()); // and freed once the last connection has left it
}

namespace {

// Reads a line from the connection on the event loop, as a PROXY protocol
// header would be read: "OK\n" goes on, anything else fails.
class LineStage final : public Stage {
public:
    const char* name() const override { return "line"; }
    std::chrono::milliseconds deadline() const override { return 5s; }
    std::unique_ptr<Run> start(event_base* base, Connection& connection, Done done) override
    {
        auto run = std::make_unique<LineRun>(connection.fd.get(), std::move(done));
        run->event.reset(event_new(base, connection.fd.get(), EV_READ | EV_PERSIST, LineRun::on_read, run.get()));
        event_add(run->event.get(), nullptr);
        return run;
    }

private:
    struct LineRun final : Run {
        LineRun(int f, Done d) : fd(f), done(std::move(d)) {}
        static void on_read(evutil_socket_t, short, void* self)
        {
            auto* run = static_cast<LineRun*>(self);
            char c = 0;
            while (::read(run->fd, &c, 1) == 1) {
                if (c != '\n') {
                    run->line += c;
                    continue;
                }
                Done done = std::move(run->done); // the run may go within done()
                done(run->line == "OK" ? std::nullopt : std::optional<std::string>("bad-line"));
                return;
            }
        }
        int fd;
        Done done;
        std::string line;
        Event event;
    };
};

} // namespace

TEST_CASE("A stage reads its connection on the event loop before the handler", "[connection]")
{
    EventBase base(event_base_new());
    EventTimers timers(base.get());
    Pipeline pipeline(base.get(), timers);
    std::vector<std::shared_ptr<Stage>> stages{std::make_shared<LineStage>()};
    for (const char* sent : {"OK\n", "NO\n"}) {
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) == 0);
        UniqueFd client(pair[0]);
        Connection c;
        c.fd = UniqueFd(pair[1]);
        Outcome outcome;
        pipeline.run(std::move(c), stages, serve_into(outcome), fail_into(outcome));
        REQUIRE(pipeline.in_progress() == 1);
        REQUIRE(::write(client.get(), sent, 3) == 3);
        while (pipeline.in_progress() > 0)
            event_base_loop(base.get(), EVLOOP_ONCE);
        if (std::string(sent) == "OK\n")
            CHECK(outcome.served == std::vector<std::string>{"fd"});
        else
            CHECK(outcome.failed == std::vector<std::string>{"line:bad-line"});
    }
}

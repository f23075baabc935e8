// Tests for stderr_log.h: a child's stderr reaches the log escaped and
// within its service's budget of lines a second. Unit tests drive a
// StderrPipe on an event base of their own with a fake clock where time
// matters; integration tests run the real superd with a child that floods.
#include "superd/log.h"
#include "superd/stderr_log.h"
#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <spdlog/sinks/ostream_sink.h>

#include <sys/ioctl.h>

#include <fstream>
#include <sstream>

using namespace harness;
using superd::StderrBudget;
using superd::StderrPipe;

namespace {

using Time = superd::Clock::time_point;

// Makes the default logger write into a string, in superd's format, for
// the life of the object.
class CapturedLog {
public:
    CapturedLog() : previous_(spdlog::default_logger())
    {
        spdlog::set_default_logger(
            superd::make_logger(std::make_shared<spdlog::sinks::ostream_sink_st>(text_), spdlog::level::info));
    }
    ~CapturedLog() { spdlog::set_default_logger(previous_); }
    std::string text() const { return text_.str(); }
    size_t count(const std::string& needle) const
    {
        std::string all = text();
        size_t n = 0;
        for (size_t at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1))
            ++n;
        return n;
    }

private:
    std::ostringstream text_;
    std::shared_ptr<spdlog::logger> previous_;
};

struct Loop {
    std::unique_ptr<event_base, superd::EventBaseDeleter> base{event_base_new()};
    // Runs the loop until `condition` holds (bounded).
    bool until(const std::function<bool()>& condition)
    {
        return eventually([&] {
            event_base_loop(base.get(), EVLOOP_NONBLOCK);
            return condition();
        });
    }
};

void write_all(int fd, std::string_view text)
{
    while (!text.empty()) {
        ssize_t n = ::write(fd, text.data(), text.size());
        REQUIRE(n > 0);
        text.remove_prefix(static_cast<size_t>(n));
    }
}

// A pipe as the daemon opens one, fed by the test instead of a child.
struct FedPipe {
    std::unique_ptr<StderrPipe> pipe;
    bool closed = false;

    FedPipe(event_base* base, std::shared_ptr<StderrBudget> budget)
    {
        auto opened = StderrPipe::open(base, "svc", std::move(budget), [this](StderrPipe*) {
            closed = true;
            pipe.reset();
        });
        REQUIRE(opened);
        pipe = std::move(*opened);
        pipe->started(4242);
    }
    // Writes `text` as the child would, then closes the child's end.
    void write_and_close(const std::string& text)
    {
        write_all(pipe->write_end(), text);
        pipe->close_write_end();
    }
};

constexpr double kPerHour = 1.0 / 3600; // slow enough that a test never sees a refill

} // namespace

namespace {

// Takes every line the budget has at `now` (up to a million); how many.
int take_all(StderrBudget& budget, Time now)
{
    int taken = 0;
    while (taken < 1000000 && budget.take(now))
        ++taken;
    return taken;
}

} // namespace

TEST_CASE("a service's stderr budget: its burst at once, then its rate", "[stderr_log]")
{
    Loop loop;
    Time t0{};
    StderrBudget budget(loop.base.get(), "svc", 10.0, 5, t0);
    CHECK(take_all(budget, t0) == 5);
    CHECK(budget.wait(t0) == 100ms);
    CHECK(take_all(budget, t0 + 100ms) == 1);
    CHECK(take_all(budget, t0 + 150ms) == 0);
    CHECK(take_all(budget, t0 + 10s) == 5); // refilled, but never past the burst
}

TEST_CASE("with no stderr_rate, a service may log 200 lines a second after a burst of 400", "[stderr_log]")
{
    Loop loop;
    Time t0{};
    StderrBudget budget(loop.base.get(), "svc", std::nullopt, 0, t0);
    CHECK(take_all(budget, t0) == 400);
    CHECK(take_all(budget, t0 + 1s) == 200);
}

TEST_CASE("a reload keeps a service's stderr budget while its rate is the same", "[stderr_log]")
{
    Loop loop;
    Time t0{};
    auto first = StderrBudget::keep_or_make(nullptr, loop.base.get(), "svc", 10.0, 5, t0);
    take_all(*first, t0);
    auto same = StderrBudget::keep_or_make(first, loop.base.get(), "svc", 10.0, 5, t0);
    CHECK(same == first);
    CHECK_FALSE(same->take(t0)); // a reload storm gets no fresh burst
    auto other = StderrBudget::keep_or_make(first, loop.base.get(), "svc", 20.0, 5, t0);
    CHECK(other != first);
    CHECK(other->take(t0));
}

TEST_CASE("over budget, lines are dropped unformatted, counted, and summed in one line", "[stderr_log]")
{
    CapturedLog log;
    Loop loop;
    auto budget = std::make_shared<StderrBudget>(loop.base.get(), "svc", kPerHour, 3, std::chrono::steady_clock::now());
    FedPipe fed(loop.base.get(), budget);
    std::string text;
    for (int i = 1; i <= 100; ++i)
        text += "line " + std::to_string(i) + "\n";
    fed.write_and_close(text);

    // All read at once: three logged, the rest dropped, and the pipe rests.
    REQUIRE(loop.until([&] { return budget->unreported() > 0; }));
    CHECK(log.count("info stderr service=svc pid=4242 line=") == 3);
    CHECK(log.count("line=\"line 3\"") == 1);
    CHECK(log.count("line=\"line 4\"") == 0);
    CHECK(budget->unreported() == 97);
    // One line sums them up, within a second.
    REQUIRE(loop.until([&] { return budget->unreported() == 0; }));
    CHECK(log.count("warning stderr service=svc dropped=97 reason=rate\n") == 1);
}

TEST_CASE("a pipe over budget is not read until the budget refills: the child waits on its pipe", "[stderr_log]")
{
    CapturedLog log;
    Loop loop;
    auto budget = std::make_shared<StderrBudget>(loop.base.get(), "svc", kPerHour, 1, std::chrono::steady_clock::now());
    FedPipe fed(loop.base.get(), budget);
    std::string lines;
    for (int i = 0; i < 8192; ++i)
        lines += "x\n";
    write_all(fed.pipe->write_end(), lines); // two reads' worth
    REQUIRE(loop.until([&] { return budget->unreported() > 0; }));

    // The rest waits in the pipe: a loop that ran on would read it at once.
    int waiting = 0;
    REQUIRE(::ioctl(fed.pipe->write_end(), FIONREAD, &waiting) == 0);
    CHECK(waiting > 0);
    for (int i = 0; i < 20; ++i)
        event_base_loop(loop.base.get(), EVLOOP_NONBLOCK);
    int still = 0;
    REQUIRE(::ioctl(fed.pipe->write_end(), FIONREAD, &still) == 0);
    CHECK(still == waiting);
    CHECK(log.count("info stderr service=svc") == 1);
}

TEST_CASE("a child's stderr reaches the log escaped: no quote, control byte or line of its own", "[stderr_log]")
{
    CapturedLog log;
    Loop loop;
    auto budget =
        std::make_shared<StderrBudget>(loop.base.get(), "svc", std::nullopt, 0, std::chrono::steady_clock::now());
    FedPipe fed(loop.base.get(), budget);
    const char injection[] = "a\"b\r\x1b[31mred\0x\n";
    fed.write_and_close(std::string(injection, sizeof injection - 1) + "c\\d\r\n" + std::string(5000, 'y'));

    REQUIRE(loop.until([&] { return fed.closed; }));
    CHECK(log.count("info stderr service=svc pid=4242 line=\"a\\\"b\\r\\x1b[31mred\\x00x\"\n") == 1);
    // A CR before the newline is the line's end, not part of it.
    CHECK(log.count("info stderr service=svc pid=4242 line=\"c\\\\d\"\n") == 1);
    // A long line comes in pieces of 4096.
    CHECK(log.count("line=\"" + std::string(4096, 'y') + "\"\n") == 1);
    CHECK(log.count("line=\"" + std::string(904, 'y') + "\"\n") == 1);
}

namespace {

// user+system CPU seconds of `pid` so far.
double cpu_seconds(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14)
            utime = std::stoull(field);
        if (i == 15)
            stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

} // namespace

TEST_CASE("a child flooding its stderr cannot grow the log past its rate, load superd or starve an echo beside it",
          "[stderr_log][integration]")
{
    uint16_t echo_port = free_port(), flood_port = free_port();
    Superd superd("[service.echo]\nlisten = [\"" + loopback(echo_port) + "\"]\nbuiltin = \"echo\"\n"
                  + service_toml("flood", {loopback(flood_port)}, "/bin/sh")
                  + "args = [\"sh\", \"-c\", \"yes x >&2\"]\nstderr = \"log\"\nstderr_rate = \"20/s\"\n");
    UniqueFd client = connect_tcp(flood_port);
    REQUIRE(superd.wait_for_log("spawned service=flood"));
    auto start = std::chrono::steady_clock::now();
    double cpu_before = cpu_seconds(superd.pid());

    // Two summaries: at least a second of flooding, usually two.
    CHECK(superd.wait_for_log("warning stderr service=flood dropped=", 2));
    CHECK(round_trip(echo_port, "still here") == "still here");
    double cpu = cpu_seconds(superd.pid()) - cpu_before;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    size_t lines = superd.count_in_log("info stderr service=flood pid=");

    // 20 a second after a burst of 20, with room for a slow machine; with
    // no limit this is hundreds of thousands.
    CHECK(lines <= static_cast<size_t>(20 * seconds + 20 + 40));
    CHECK(lines >= 20);
    CHECK(cpu < seconds / 2);
}

TEST_CASE("control bytes a child writes to stderr reach the log escaped", "[stderr_log][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("inject", {loopback(port)}, "/bin/sh")
                  + "args = [\"sh\", \"-c\", \"printf 'a\\\"b\\\\r\\\\033[31mred\\\\000x\\\\n' >&2\"]\n"
                    "stderr = \"log\"\n");
    CHECK(round_trip(port, "") == "");
    REQUIRE(superd.wait_for_log("stderr service=inject"));
    std::string log = superd.log();
    CHECK(log.find("line=\"a\\\"b\\r\\x1b[31mred\\x00x\"\n") != std::string::npos);
    for (char c : log) {
        auto byte = static_cast<unsigned char>(c);
        INFO("byte " << int(byte));
        CHECK(((byte >= 0x20 && byte < 0x7f) || byte == '\n'));
    }
}

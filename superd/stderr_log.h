// StderrPipe: carries a spawned program's stderr into superd's log, a line
// at a time, tagged with the service and pid, so diagnostics never reach
// the client and the protocol stays clean (stderr = "log").
//
// The daemon owns each pipe until its read end reaches EOF, which may be
// after the child is reaped (a grandchild can hold the write end): a pipe's
// end and its child's exit are separate events.
//
// StderrBudget: the lines a second one service may log, shared by all its
// children (stderr_rate, stderr_burst), so that one noisy service cannot
// fill the log or take superd's time from the others. Over it, what superd
// has already read is dropped and counted, and the pipe is not read again
// until the budget has refilled: a flooding child blocks in write(2), which
// costs superd nothing, instead of being read and thrown away at full
// speed. Drops are summed in at most one line a second per service.
#pragma once

#include "superd/event.h"
#include "superd/fd.h"
#include "superd/limits.h"
#include "superd/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace superd {

// Far above a well-behaved service (a line per connection at 200
// connections a second) yet bounded (~30 KB/s of log per service); the burst
// of two seconds lets a start-up banner or a stack trace through whole.
constexpr double kDefaultStderrRate = 200;
constexpr double kDefaultStderrBurst = 400;

class StderrBudget {
public:
    static constexpr std::chrono::seconds kReportEvery{1};

    // `rate` none: the defaults above.
    StderrBudget(event_base* base, std::string service, std::optional<double> rate, double burst,
                 Clock::time_point now);
    ~StderrBudget(); // reports what is still unreported
    StderrBudget(const StderrBudget&) = delete;
    StderrBudget& operator=(const StderrBudget&) = delete;

    // `old` when it has the same rate and burst, so a reload does not refill
    // the bucket; otherwise a new, full one.
    static std::shared_ptr<StderrBudget> keep_or_make(std::shared_ptr<StderrBudget> old, event_base* base,
                                                      std::string service, std::optional<double> rate, double burst,
                                                      Clock::time_point now);

    bool take(Clock::time_point now) { return bucket_.take(now); }
    std::chrono::milliseconds wait(Clock::time_point now) { return bucket_.wait(now); }
    // Counts lines dropped; they are logged within kReportEvery.
    void dropped(uint64_t lines);
    uint64_t unreported() const { return unreported_; }

private:
    static void on_report(evutil_socket_t, short, void* self);
    void report();

    std::string service_;
    double rate_;
    double burst_;
    TokenBucket bucket_;
    uint64_t unreported_ = 0;
    Event report_;
};

class StderrPipe {
public:
    using ClosedHandler = std::function<void(StderrPipe*)>;

    static Result<std::unique_ptr<StderrPipe>> open(event_base* base, std::string service,
                                                    std::shared_ptr<StderrBudget> budget, ClosedHandler on_closed);
    StderrPipe(const StderrPipe&) = delete;
    StderrPipe& operator=(const StderrPipe&) = delete;

    // The end the child writes to; give it to the spawn, then close it here.
    int write_end() const { return write_end_.get(); }
    void started(pid_t pid);
    void close_write_end() { write_end_.reset(); }

private:
    StderrPipe(UniqueFd read_end, UniqueFd write_end, std::string service, std::shared_ptr<StderrBudget> budget,
               ClosedHandler on_closed);
    static void on_readable(evutil_socket_t, short, void* self);
    static void on_resume(evutil_socket_t, short, void* self);
    void read_available();
    // Logs the whole lines in partial_ while the budget lasts; false when
    // it ran out (the rest of them dropped).
    bool take_lines(Clock::time_point now);
    // Stops reading until the budget has a line again.
    void pause(Clock::time_point now);
    void emit(std::string_view line);

    UniqueFd read_end_;
    UniqueFd write_end_;
    std::string service_;
    pid_t pid_ = 0;
    std::string partial_;
    std::shared_ptr<StderrBudget> budget_;
    ClosedHandler on_closed_;
    Event event_;
    Event resume_;
};

} // namespace superd

// Clock and timers: the one monotonic clock of superd, and the seam through
// which code that waits (backoff, pacing, timeouts, rates) reads the time
// and sets timers, so that tests can drive it in simulated time.
//
// Timers is the interface; EventTimers is the real one, on libevent's loop;
// tests use a fake that advances the time and fires what is due. A Timer
// belongs to whoever asked for it: destroying it cancels it, so its callback
// can never outlive its owner. Callbacks run on the loop and must not throw.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

struct event_base;
struct timeval;

namespace superd {

using Clock = std::chrono::steady_clock;

// A one-shot timer; arming it again replaces the earlier deadline.
class Timer {
public:
    virtual ~Timer() = default;
    virtual void arm(std::chrono::milliseconds delay) = 0;
    virtual void cancel() = 0;
    // False when the timer could not be set (out of memory in libevent).
    virtual bool valid() const { return true; }
};

class Timers {
public:
    virtual ~Timers() = default;
    virtual Clock::time_point now() const = 0;
    virtual std::unique_ptr<Timer> timer(std::function<void()> fire) = 0;
};

class EventTimers final : public Timers {
public:
    explicit EventTimers(event_base* base) : base_(base) {}
    Clock::time_point now() const override { return Clock::now(); }
    std::unique_ptr<Timer> timer(std::function<void()> fire) override;

private:
    event_base* base_;
};

// libevent's form of a delay.
timeval to_timeval(std::chrono::milliseconds delay);

} // namespace superd

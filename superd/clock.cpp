#include "superd/clock.h"

#include "superd/event.h"
#include "superd/log.h"

#include <sys/time.h>

#include <exception>

namespace superd {

timeval to_timeval(std::chrono::milliseconds delay)
{
    auto ms = delay.count();
    return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
}

namespace {

class EventTimer final : public Timer {
public:
    EventTimer(event_base* base, std::function<void()> fire)
        : fire_(std::move(fire)), event_(evtimer_new(base, on_timer, this))
    {
    }
    void arm(std::chrono::milliseconds delay) override
    {
        timeval tv = to_timeval(delay);
        if (event_)
            evtimer_add(event_.get(), &tv);
    }
    void cancel() override
    {
        if (event_)
            evtimer_del(event_.get());
    }
    bool valid() const override { return event_ != nullptr; }

private:
    static void on_timer(evutil_socket_t, short, void* self)
    {
        // Nothing may unwind through libevent's C frames.
        try {
            static_cast<EventTimer*>(self)->fire_();
        } catch (const std::exception& e) {
            spdlog::error("timer failed reason=\"{}\"", e.what());
        }
    }

    std::function<void()> fire_;
    Event event_;
};

} // namespace

std::unique_ptr<Timer> EventTimers::timer(std::function<void()> fire)
{
    return std::make_unique<EventTimer>(base_, std::move(fire));
}

} // namespace superd

// FakeTimers: simulated time for unit tests. Nothing fires until advance(),
// which moves the clock forward and fires every timer that falls due, in
// order of its deadline, at that deadline's time; a timer armed by a
// callback fires within the same advance() if it falls due in it.
#pragma once

#include "superd/clock.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

namespace fake {

class FakeTimers final : public superd::Timers {
public:
    superd::Clock::time_point now() const override { return now_; }

    std::unique_ptr<superd::Timer> timer(std::function<void()> fire) override
    {
        auto timer = std::make_unique<FakeTimer>(this, std::move(fire));
        live_.push_back(timer.get());
        return timer;
    }

    void advance(std::chrono::milliseconds by)
    {
        auto until = now_ + by;
        for (;;) {
            FakeTimer* next = nullptr;
            for (FakeTimer* t : live_)
                if (t->due && *t->due <= until && (!next || *t->due < *next->due))
                    next = t;
            if (!next)
                break;
            now_ = *next->due;
            next->due.reset();
            next->fire();
        }
        now_ = until;
    }

    // How many timers are armed.
    size_t armed() const
    {
        return static_cast<size_t>(std::count_if(live_.begin(), live_.end(), [](FakeTimer* t) { return t->due; }));
    }

private:
    struct FakeTimer final : superd::Timer {
        FakeTimer(FakeTimers* owner, std::function<void()> f) : timers(owner), fire(std::move(f)) {}
        ~FakeTimer() override { std::erase(timers->live_, this); }
        void arm(std::chrono::milliseconds delay) override { due = timers->now_ + delay; }
        void cancel() override { due.reset(); }

        FakeTimers* timers;
        std::function<void()> fire;
        std::optional<superd::Clock::time_point> due;
    };

    superd::Clock::time_point now_{std::chrono::hours(1)};
    std::vector<FakeTimer*> live_;
};

} // namespace fake

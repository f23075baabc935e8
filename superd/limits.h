// Limits: the pure logic behind access control and admission, free of
// sockets and clocks so that tests can drive it exactly.
//
// - Cidr / AccessList: allow and deny lists of IPv4 and IPv6 prefixes; the
//   most specific matching prefix decides, deny winning a tie. With an allow
//   list, an address it does not cover is refused.
// - SourceKey: a client address cut to a prefix (IPv4 /32 and IPv6 /64 by
//   default, since one IPv6 host owns a whole /64), IPv4-mapped IPv6
//   addresses unmapped first, to count connections per source.
// - TokenBucket: `rate` tokens a second up to `burst`, on the monotonic
//   clock the caller passes in. Over the rate, a caller delays or refuses;
//   nothing here ever switches a service off.
// - Backoff: a rest that doubles while a shortage lasts, up to a maximum.
// - QuickExitPacer: how long a wait service's listener rests after its
//   children exit at once, leaving their work undone.
#pragma once

#include "superd/address.h"
#include "superd/clock.h"
#include "superd/result.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

struct Cidr {
    int family = 0;                  // AF_INET or AF_INET6
    std::array<uint8_t, 16> bytes{}; // the address, masked to `bits`
    int bits = 0;

    // "10.0.0.0/8", "::1/128", or an address alone (all its bits).
    static Result<Cidr> parse(std::string_view text);
    bool contains(const SocketAddress& address) const;
    std::string to_string() const;
};

class AccessList {
public:
    AccessList() = default;
    AccessList(std::vector<Cidr> allow, std::vector<Cidr> deny) : allow_(std::move(allow)), deny_(std::move(deny)) {}

    bool empty() const { return allow_.empty() && deny_.empty(); }
    bool allows(const SocketAddress& address) const;

private:
    std::vector<Cidr> allow_;
    std::vector<Cidr> deny_;
};

// An address reduced to its source prefix; equal keys share a budget.
struct SourceKey {
    std::array<uint8_t, 17> bytes{}; // family tag, then the masked address

    static SourceKey of(const SocketAddress& address, int prefix_v4, int prefix_v6);
    friend bool operator==(const SourceKey&, const SourceKey&) = default;
};

struct SourceKeyHash {
    size_t operator()(const SourceKey& key) const;
};

// "50/s", "300/m", "1000/h": tokens a second.
Result<double> parse_rate(std::string_view text);

// The largest burst a config may ask for.
constexpr int64_t kMaxBurst = 1000000;

// The burst when the config names none: a second's worth, rounded up, so a
// steady rate is never refused; at least 1 and at most kMaxBurst.
double default_burst(double per_second);

class TokenBucket {
public:
    TokenBucket() = default;
    TokenBucket(double rate, double burst, Clock::time_point now)
        : rate_(rate), burst_(burst), tokens_(burst), last_(now)
    {
    }

    // Takes a token if one is there.
    bool take(Clock::time_point now);
    // How long until a token is there (zero if one is).
    std::chrono::milliseconds wait(Clock::time_point now);
    // Full again: nothing taken for long enough to have refilled.
    bool full(Clock::time_point now) const;

private:
    void refill(Clock::time_point now);

    double rate_ = 0;
    double burst_ = 0;
    double tokens_ = 0;
    Clock::time_point last_{};
};

// A rest that doubles from `first` up to `max` while failures go on, and
// starts over after a success.
class Backoff {
public:
    constexpr Backoff(std::chrono::milliseconds first, std::chrono::milliseconds max) : first_(first), max_(max) {}
    // The next rest: `first`, then twice the last one, at most `max`.
    std::chrono::milliseconds next()
    {
        current_ = current_.count() == 0 ? first_ : std::min(current_ * 2, max_);
        return current_;
    }
    void reset() { current_ = std::chrono::milliseconds(0); }
    std::chrono::milliseconds current() const { return current_; }

private:
    std::chrono::milliseconds first_;
    std::chrono::milliseconds max_;
    std::chrono::milliseconds current_{0};
};

// A wait child that ran less than `quick` and left its work undone "exited
// at once"; from the `tolerated`th such exit in a row, its listener rests
// before the next spawn, from `first` doubling up to `max`. It never
// switches the service off, and an exit that did its work starts over.
class QuickExitPacer {
public:
    struct Policy {
        std::chrono::milliseconds quick;
        int tolerated;
        std::chrono::milliseconds first;
        std::chrono::milliseconds max;
    };
    explicit QuickExitPacer(Policy policy) : policy_(policy) {}

    // A child exited after `ran`; the rest to take before the next spawn,
    // if any.
    std::optional<std::chrono::milliseconds> exited(Clock::duration ran, bool left_undone);
    int in_a_row() const { return in_a_row_; }

private:
    Policy policy_;
    int in_a_row_ = 0;
};

// The policies superd uses; named here so that tests check the real ones.
// Out of descriptors, processes or memory: from 100 ms doubling to 5 s.
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
// A wait child that ran less than a second and left its work undone exited
// at once; from the third in a row, 100 ms doubling to 10 s.
constexpr QuickExitPacer::Policy kWaitPacing{std::chrono::milliseconds(1000), 3, std::chrono::milliseconds(100),
                                             std::chrono::milliseconds(10000)};

} // namespace superd

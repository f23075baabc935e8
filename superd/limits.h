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
#pragma once

#include "superd/address.h"
#include "superd/result.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

using MonotonicTime = std::chrono::steady_clock::time_point;

struct Cidr {
    int family = 0;                   // AF_INET or AF_INET6
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
    TokenBucket(double rate, double burst, MonotonicTime now) : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

    // Takes a token if one is there.
    bool take(MonotonicTime now);
    // How long until a token is there (zero if one is).
    std::chrono::milliseconds wait(MonotonicTime now);
    // Full again: nothing taken for long enough to have refilled.
    bool full(MonotonicTime now) const;

private:
    void refill(MonotonicTime now);

    double rate_ = 0;
    double burst_ = 0;
    double tokens_ = 0;
    MonotonicTime last_{};
};

} // namespace superd

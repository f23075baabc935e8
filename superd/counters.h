// Counters: what has happened to a service's connections, kept by service
// name for as long as superd runs (a reload carries them on). SIGUSR1 logs
// them, superctl shows them and the metrics builtin exposes them; nothing
// else writes them but the daemon.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace superd {

// A histogram of durations with fixed bounds, as Prometheus counts them:
// each bucket counts the observations at or below its bound, so a bucket
// also counts everything the buckets before it count.
class DurationHistogram {
public:
    // Upper bounds in seconds, from the twentieth of a second an inetd
    // service's fork and exec take to the hour an interactive session may
    // last; +Inf is implied.
    static constexpr std::array<double, 14> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                       1,     2.5,  5,     10,   60,  600,  3600};

    void observe(std::chrono::duration<double> d)
    {
        double seconds = d.count();
        for (size_t i = 0; i < kBounds.size(); ++i)
            if (seconds <= kBounds[i])
                ++buckets_[i];
        ++count_;
        sum_ += seconds;
    }
    // Observations at or below kBounds[i] (cumulative).
    uint64_t bucket(size_t i) const { return buckets_[i]; }
    uint64_t count() const { return count_; }
    double sum() const { return sum_; }

private:
    std::array<uint64_t, kBounds.size()> buckets_{};
    uint64_t count_ = 0;
    double sum_ = 0;
};

// Each connection is counted once as accepted, then at most once as
// refused_*, spawned or failed_spawn: refused_fds counts the connections
// dropped for want of descriptors, whether accept, the spawn or a forward's
// relay ran out of them, and failed_spawn the spawns that failed for any
// other reason. A builtin's connection, once admitted, is accepted and
// nothing more, except a forward's whose backend fails it: refused_backend.
// A connection whose TLS handshake fails is refused_tls, and one whose PROXY
// header is refused refused_proxy, before anything serves it.
struct Counters {
    uint64_t accepted = 0;
    uint64_t spawned = 0;
    uint64_t refused_acl = 0;
    uint64_t refused_limit = 0;
    uint64_t refused_source = 0;
    uint64_t refused_rate = 0;
    uint64_t refused_fds = 0;
    uint64_t refused_backend = 0;
    uint64_t refused_tls = 0;   // a handshake that failed or did not finish in time
    uint64_t refused_proxy = 0; // a PROXY header from outside proxy_from, wrong, or late
    uint64_t failed_spawn = 0;
    uint64_t exited_ok = 0;
    uint64_t exited_error = 0;
    uint64_t exited_signal = 0;
    uint64_t timed_out = 0;
    DurationHistogram run_time; // each program's, from spawn to its exit
};

// What a refusal is called (in the log, superctl and the metrics' `reason`
// label) and the counter that counts it.
struct RefusalReason {
    const char* name;
    uint64_t Counters::*counter;
};
inline constexpr RefusalReason kRefusalReasons[] = {
    {"acl", &Counters::refused_acl},   {"limit", &Counters::refused_limit}, {"source", &Counters::refused_source},
    {"rate", &Counters::refused_rate}, {"fds", &Counters::refused_fds},     {"backend", &Counters::refused_backend},
    {"tls", &Counters::refused_tls},   {"proxy", &Counters::refused_proxy},
};

} // namespace superd

// Admission: whether one more connection of a service may go on, and the
// count of those that did. The logic only: no sockets, and the time is
// whatever the caller passes in, so tests drive it in simulated time.
//
// It owns what limits a service: the access list, max_instances and
// on_limit, the per-source counts (max_per_source), the service's token
// bucket and the per-source buckets. The daemon keeps one Admission per
// service name for as long as it runs, so counts survive reloads;
// configure() takes up each new configuration of that name, keeping a
// bucket whose rate and burst are unchanged (a reload is no fresh burst),
// and retire() forgets the buckets of a service a reload removed.
//
// admit() hands out a Ticket for each connection it lets in: a move-only
// value that counts the connection (running, and its source) until it is
// ended or destroyed, exactly once. The ticket points at its Admission,
// which must outlive it. Datagrams are decided by check() and counted by
// nothing, since a datagram is over when it is answered.
#pragma once

#include "superd/address.h"
#include "superd/clock.h"
#include "superd/config.h"
#include "superd/limits.h"

#include <chrono>
#include <optional>
#include <unordered_map>

namespace superd {

class Admission {
public:
    enum class Refusal { kAcl, kLimit, kSource, kRate };

    class Ticket {
    public:
        Ticket() = default;
        Ticket(Ticket&& other) noexcept;
        Ticket& operator=(Ticket&& other) noexcept;
        ~Ticket() { end(); }

        // Stops counting the connection; the Admission it was counted in,
        // or null when it was ended before (or never admitted).
        Admission* end();
        explicit operator bool() const { return admission_ != nullptr; }

    private:
        friend class Admission;
        Ticket(Admission* admission, const std::optional<SourceKey>& source) : admission_(admission), source_(source) {}

        Admission* admission_ = nullptr;
        std::optional<SourceKey> source_;
    };

    // Before an accept, under on_limit = "queue": whether to wait, and why.
    struct Gate {
        enum State { kOpen, kFull, kRate } state = kOpen;
        std::chrono::milliseconds wait{0}; // kRate: until the next token
    };

    Admission() = default;
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;

    void configure(const ServiceConfig& config, Clock::time_point now);
    void retire();

    Gate gate(Clock::time_point now);
    // Lets the connection from `peer` in, filling `ticket`, or says why not.
    std::optional<Refusal> admit(const SocketAddress& peer, Clock::time_point now, Ticket& ticket);
    // Counts what runs without a client to admit: a wait service's child,
    // which takes the whole socket.
    Ticket count_unadmitted();
    // Decides for a datagram from `peer`; counts nothing.
    std::optional<Refusal> check(const SocketAddress& peer, Clock::time_point now, std::optional<SourceKey>& source);

    unsigned running() const { return running_; }
    // Below max_instances (or none is set).
    bool has_room() const { return !rules_.max_instances || running_ < *rules_.max_instances; }
    size_t sources() const { return per_source_.size(); }

private:
    // What of a ServiceConfig admission reads, copied so that no ticket or
    // admission ever points into a configuration a reload has replaced.
    struct Rules {
        AccessList access;
        std::optional<unsigned> max_instances;
        OnLimit on_limit = OnLimit::kQueue;
        std::optional<unsigned> max_per_source;
        int source_prefix_v4 = 32;
        int source_prefix_v6 = 64;
        std::optional<double> rate;
        double burst = 0;
        std::optional<double> rate_per_source;
        double burst_per_source = 0;
    };
    static constexpr size_t kFirstSweep = 4096;

    void enter(const std::optional<SourceKey>& source);
    void leave(const std::optional<SourceKey>& source);

    Rules rules_;
    bool configured_ = false;
    unsigned running_ = 0; // children and builtin connections
    std::unordered_map<SourceKey, unsigned, SourceKeyHash> per_source_;
    std::optional<TokenBucket> bucket_;
    std::unordered_map<SourceKey, TokenBucket, SourceKeyHash> source_buckets_;
    size_t sweep_at_ = kFirstSweep; // when to forget full per-source buckets
};

} // namespace superd

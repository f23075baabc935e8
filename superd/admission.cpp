#include "superd/admission.h"

#include <sys/socket.h>

#include <algorithm>
#include <utility>

namespace superd {

Admission::Ticket::Ticket(Ticket&& other) noexcept
    : admission_(std::exchange(other.admission_, nullptr)), source_(other.source_)
{
}

Admission::Ticket& Admission::Ticket::operator=(Ticket&& other) noexcept
{
    if (this != &other) {
        end();
        admission_ = std::exchange(other.admission_, nullptr);
        source_ = other.source_;
    }
    return *this;
}

Admission* Admission::Ticket::end()
{
    Admission* admission = std::exchange(admission_, nullptr);
    if (admission)
        admission->leave(source_);
    return admission;
}

void Admission::configure(const ServiceConfig& config, Clock::time_point now)
{
    Rules next{config.access,           config.max_instances,    config.on_limit, config.max_per_source,
               config.source_prefix_v4, config.source_prefix_v6, config.rate,     config.burst,
               config.rate_per_source,  config.burst_per_source};
    // Buckets of an unchanged rate carry on as counters do: a reload must
    // not hand out a fresh burst.
    bool same_rate = configured_ && bucket_ && rules_.rate == next.rate && rules_.burst == next.burst;
    if (!same_rate)
        bucket_ = next.rate ? std::optional<TokenBucket>(TokenBucket(*next.rate, next.burst, now)) : std::nullopt;
    bool same_source_rate = configured_ && rules_.rate_per_source == next.rate_per_source
                            && rules_.burst_per_source == next.burst_per_source;
    if (!same_source_rate) {
        source_buckets_.clear();
        sweep_at_ = kFirstSweep;
    }
    rules_ = std::move(next);
    configured_ = true;
}

void Admission::retire()
{
    // Counts stay (the connections still run); a service of this name that
    // comes back later starts its rates afresh.
    configured_ = false;
    bucket_.reset();
    source_buckets_.clear();
    sweep_at_ = kFirstSweep;
}

Admission::Gate Admission::gate(Clock::time_point now)
{
    if (rules_.on_limit != OnLimit::kQueue)
        return {};
    if (!has_room())
        return {Gate::kFull};
    if (bucket_) {
        auto wait = bucket_->wait(now);
        if (wait.count() > 0)
            return {Gate::kRate, wait};
    }
    return {};
}

std::optional<Admission::Refusal> Admission::check(const SocketAddress& peer, Clock::time_point now,
                                                   std::optional<SourceKey>& source)
{
    if (!rules_.access.empty() && !rules_.access.allows(peer))
        return Refusal::kAcl;
    if (rules_.on_limit == OnLimit::kReject && !has_room())
        return Refusal::kLimit;
    bool by_source = (rules_.max_per_source || rules_.rate_per_source) && peer.family() != AF_UNIX;
    if (by_source) {
        source = SourceKey::of(peer, rules_.source_prefix_v4, rules_.source_prefix_v6);
        auto count = per_source_.find(*source);
        if (rules_.max_per_source && count != per_source_.end() && count->second >= *rules_.max_per_source)
            return Refusal::kSource;
        if (rules_.rate_per_source) {
            TokenBucket fresh(*rules_.rate_per_source, rules_.burst_per_source, now);
            auto [bucket, added] = source_buckets_.try_emplace(*source, fresh);
            if (added && source_buckets_.size() >= sweep_at_) {
                // Forget sources whose bucket has refilled: they are as new.
                std::erase_if(source_buckets_, [&](const auto& entry) { return entry.second.full(now); });
                sweep_at_ = std::max(kFirstSweep, source_buckets_.size() * 2);
                bucket = source_buckets_.try_emplace(*source, fresh).first;
            }
            if (!bucket->second.take(now))
                return Refusal::kRate;
        }
    }
    // Under "queue" the gate waited for this token, so it is there.
    if (bucket_ && !bucket_->take(now) && rules_.on_limit == OnLimit::kReject)
        return Refusal::kRate;
    return std::nullopt;
}

std::optional<Admission::Refusal> Admission::admit(const SocketAddress& peer, Clock::time_point now, Ticket& ticket)
{
    std::optional<SourceKey> source;
    if (auto refusal = check(peer, now, source))
        return refusal;
    enter(source);
    ticket = Ticket(this, source);
    return std::nullopt;
}

Admission::Ticket Admission::count_unadmitted()
{
    enter(std::nullopt);
    return Ticket(this, std::nullopt);
}

void Admission::enter(const std::optional<SourceKey>& source)
{
    ++running_;
    if (source)
        ++per_source_[*source];
}

void Admission::leave(const std::optional<SourceKey>& source)
{
    if (running_ > 0)
        --running_;
    if (source) {
        auto it = per_source_.find(*source);
        if (it != per_source_.end() && --it->second == 0)
            per_source_.erase(it);
    }
}

} // namespace superd

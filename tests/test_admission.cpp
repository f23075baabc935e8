// Admission in simulated time: the clock is a number the test moves.
#include "superd/admission.h"

#include "tests/harness.h"

#include <catch2/catch.hpp>

using namespace superd;
using namespace std::chrono_literals;
using Refusal = Admission::Refusal;

namespace {

const Clock::time_point t0{std::chrono::hours(1)};

SocketAddress from(const std::string& host) { return harness::socket_address(host, 40000); }

ServiceConfig service()
{
    ServiceConfig config;
    config.name = "svc";
    return config;
}

Cidr cidr(std::string_view text) { return *Cidr::parse(text); }

} // namespace

TEST_CASE("Admission refuses by access list before counting anything", "[admission]")
{
    ServiceConfig config = service();
    config.access = AccessList({cidr("127.0.0.3")}, {cidr("127.0.0.0/8")});
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket ticket;
    CHECK(admission.admit(from("127.0.0.1"), t0, ticket) == Refusal::kAcl);
    CHECK_FALSE(ticket);
    CHECK(admission.running() == 0);
    CHECK(admission.admit(from("127.0.0.3"), t0, ticket) == std::nullopt);
    CHECK(ticket);
    CHECK(admission.running() == 1);
}

TEST_CASE("A ticket counts its connection until it ends, exactly once", "[admission]")
{
    ServiceConfig config = service();
    config.max_instances = 2;
    config.on_limit = OnLimit::kReject;
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket a, b, c;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, a));
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, b));
    CHECK(admission.admit(from("127.0.0.1"), t0, c) == Refusal::kLimit);
    CHECK_FALSE(admission.has_room());

    Admission::Ticket moved = std::move(a);
    CHECK_FALSE(a);
    CHECK(a.end() == nullptr); // the moved-from ticket ends nothing
    CHECK(admission.running() == 2);
    CHECK(moved.end() == &admission);
    CHECK(moved.end() == nullptr);
    CHECK(admission.running() == 1);
    CHECK(admission.has_room());
    {
        Admission::Ticket gone = std::move(b);
    } // destroyed: ended
    CHECK(admission.running() == 0);
    CHECK(admission.count_unadmitted());
    CHECK(admission.running() == 0); // that temporary ticket ended too
}

TEST_CASE("Under on_limit = queue the gate holds the listener instead of refusing", "[admission]")
{
    ServiceConfig config = service();
    config.max_instances = 1;
    config.rate = 10; // a token every 100 ms
    config.burst = 1;
    Admission admission;
    admission.configure(config, t0);
    CHECK(admission.gate(t0).state == Admission::Gate::kOpen);
    Admission::Ticket first;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, first));
    CHECK(admission.gate(t0).state == Admission::Gate::kFull);
    first.end();
    Admission::Gate gate = admission.gate(t0 + 40ms);
    CHECK(gate.state == Admission::Gate::kRate);
    CHECK(gate.wait == 60ms);
    CHECK(admission.gate(t0 + 100ms).state == Admission::Gate::kOpen);
}

TEST_CASE("Admission counts max_per_source by source prefix", "[admission]")
{
    ServiceConfig config = service();
    config.max_per_source = 2;
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket a, b, third, other;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, a));
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, b));
    CHECK(admission.admit(from("127.0.0.1"), t0, third) == Refusal::kSource);
    CHECK_FALSE(admission.admit(from("127.0.0.2"), t0, other)); // another /32
    CHECK(admission.sources() == 2);
    a.end();
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, third));
    b.end();
    third.end();
    other.end();
    CHECK(admission.sources() == 0); // nothing kept for sources that left
}

TEST_CASE("A rate over its burst refuses with reject until the next token", "[admission]")
{
    ServiceConfig config = service();
    config.rate = 1.0 / 60;
    config.burst = 2;
    config.on_limit = OnLimit::kReject;
    Admission admission;
    admission.configure(config, t0);
    int ok = 0, refused = 0;
    for (int i = 0; i < 5; ++i) {
        Admission::Ticket t;
        (admission.admit(from("127.0.0.1"), t0, t) ? refused : ok)++;
    }
    CHECK(ok == 2);
    CHECK(refused == 3);
    Admission::Ticket t;
    CHECK(admission.admit(from("127.0.0.1"), t0 + 59s, t) == Refusal::kRate);
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0 + 60s, t));
}

TEST_CASE("A per-source rate limits each source, not the others", "[admission]")
{
    ServiceConfig config = service();
    config.rate_per_source = 1;
    config.burst_per_source = 1;
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket t;
    CHECK_FALSE(admission.admit(from("10.0.0.1"), t0, t));
    CHECK(admission.admit(from("10.0.0.1"), t0, t) == Refusal::kRate);
    CHECK_FALSE(admission.admit(from("10.0.0.2"), t0, t));
    CHECK_FALSE(admission.admit(from("10.0.0.1"), t0 + 1s, t));
}

TEST_CASE("Thousands of sources are forgotten once their buckets are full again", "[admission]")
{
    ServiceConfig config = service();
    config.rate_per_source = 1;
    config.burst_per_source = 1;
    Admission admission;
    admission.configure(config, t0);
    std::optional<SourceKey> key;
    for (int i = 0; i < 5000; ++i) {
        std::string host = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        CHECK_FALSE(admission.check(from(host), t0 + std::chrono::milliseconds(i), key));
    }
    // The sweep at 4096 forgot every full bucket: the first sources, a
    // second or more ago, are as new; a recent one is still limited.
    CHECK_FALSE(admission.check(from("10.0.0.1"), t0 + 5000ms, key));
    CHECK(admission.check(from("10.0.19.250"), t0 + 5000ms, key) == Refusal::kRate);
}

TEST_CASE("A datagram is decided but not counted", "[admission]")
{
    ServiceConfig config = service();
    config.max_per_source = 1;
    Admission admission;
    admission.configure(config, t0);
    std::optional<SourceKey> key;
    for (int i = 0; i < 3; ++i)
        CHECK_FALSE(admission.check(from("127.0.0.1"), t0, key));
    CHECK(key);
    CHECK(admission.running() == 0);
}

TEST_CASE("A reload keeps the buckets of an unchanged rate and every count", "[admission]")
{
    ServiceConfig config = service();
    config.rate = 1.0 / 3600;
    config.burst = 1;
    config.rate_per_source = 1.0 / 3600;
    config.burst_per_source = 2;
    config.on_limit = OnLimit::kReject;
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket running;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, running));
    Admission::Ticket t;
    CHECK(admission.admit(from("127.0.0.1"), t0, t) == Refusal::kRate); // the service's bucket is empty
    for (int i = 0; i < 3; ++i) {
        admission.configure(config, t0 + 1s); // the same rates: no fresh burst
        CHECK(admission.admit(from("127.0.0.2"), t0 + 1s, t) == Refusal::kRate);
    }
    CHECK(admission.running() == 1); // counts carry on

    // A changed rate starts a bucket of its own; the unchanged per-source
    // rate keeps the sources' buckets, 127.0.0.1's two tokens spent.
    ServiceConfig faster = config;
    faster.rate = 2.0 / 3600;
    admission.configure(faster, t0 + 2s);
    CHECK_FALSE(admission.admit(from("127.0.0.3"), t0 + 2s, t));
    t.end();
    CHECK(admission.admit(from("127.0.0.1"), t0 + 2s, t) == Refusal::kRate);

    // A changed per-source rate forgets the sources' buckets.
    faster.rate = 1000;
    faster.burst = 1000;
    faster.burst_per_source = 3;
    admission.configure(faster, t0 + 2s);
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0 + 2s, t));
}

TEST_CASE("A service removed by a reload and added back starts its rates afresh", "[admission]")
{
    ServiceConfig config = service();
    config.rate = 1.0 / 3600;
    config.burst = 1;
    config.on_limit = OnLimit::kReject;
    Admission admission;
    admission.configure(config, t0);
    Admission::Ticket t;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0, t));
    admission.retire();
    CHECK(admission.running() == 1); // its connection runs on
    admission.configure(config, t0 + 1s);
    Admission::Ticket again;
    CHECK_FALSE(admission.admit(from("127.0.0.1"), t0 + 1s, again));
    t.end();
    again.end();
    CHECK(admission.running() == 0);
}

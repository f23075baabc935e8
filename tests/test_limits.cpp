#include "superd/limits.h"

#include "tests/fake_timers.h"
#include "tests/harness.h"

#include <catch2/catch.hpp>

using namespace superd;
using namespace std::chrono_literals;

namespace {

Cidr cidr_of(std::string_view text)
{
    auto parsed = Cidr::parse(text);
    INFO((parsed.ok() ? std::string() : parsed.error()));
    REQUIRE(parsed.ok());
    return *parsed;
}

SocketAddress at(const std::string& host) { return harness::socket_address(host, 40000); }

} // namespace

TEST_CASE("CIDR prefixes parse, normalise and match", "[limits]")
{
    CHECK(cidr_of("10.1.2.3/8").to_string() == "10.0.0.0/8");
    CHECK(cidr_of("192.0.2.7").to_string() == "192.0.2.7/32");
    CHECK(cidr_of("2001:db8::1/32").to_string() == "2001:db8::/32");
    CHECK(cidr_of("::1").to_string() == "::1/128");
    CHECK(cidr_of("0.0.0.0/0").contains(at("203.0.113.9")));
    CHECK(cidr_of("10.0.0.0/8").contains(at("10.255.0.1")));
    CHECK_FALSE(cidr_of("10.0.0.0/8").contains(at("11.0.0.1")));
    CHECK(cidr_of("10.0.0.0/8").contains(at("::ffff:10.0.0.1"))); // unmapped first
    CHECK_FALSE(cidr_of("10.0.0.0/8").contains(at("2001:db8::1")));
    CHECK(cidr_of("2001:db8::/64").contains(at("2001:db8::ffff:1")));
    CHECK_FALSE(cidr_of("2001:db8::/64").contains(at("2001:db8:0:1::1")));
    CHECK(cidr_of("10.0.0.0/12").contains(at("10.15.255.255")));
    CHECK_FALSE(cidr_of("10.0.0.0/12").contains(at("10.16.0.0")));

    CHECK_THAT(Cidr::parse("10.0.0.0/33").error(), Catch::Contains("0 to 32"));
    CHECK_THAT(Cidr::parse("::/129").error(), Catch::Contains("0 to 128"));
    CHECK_THAT(Cidr::parse("10.0.0.0/").error(), Catch::Contains("prefix length"));
    CHECK_THAT(Cidr::parse("example.com/8").error(), Catch::Contains("not an address"));
}

TEST_CASE("The most specific prefix decides, deny wins a tie", "[limits]")
{
    AccessList open;
    CHECK(open.allows(at("203.0.113.9")));

    AccessList only_local({cidr_of("127.0.0.0/8"), cidr_of("::1/128")}, {});
    CHECK(only_local.allows(at("127.0.0.1")));
    CHECK(only_local.allows(at("::1")));
    CHECK_FALSE(only_local.allows(at("192.0.2.1")));

    AccessList carve({cidr_of("10.0.0.0/8"), cidr_of("10.1.2.3")}, {cidr_of("10.1.0.0/16")});
    CHECK(carve.allows(at("10.2.0.1")));       // /8 allow
    CHECK_FALSE(carve.allows(at("10.1.9.9"))); // /16 deny is more specific
    CHECK(carve.allows(at("10.1.2.3")));       // /32 allow beats the /16 deny
    CHECK_FALSE(carve.allows(at("11.0.0.1"))); // not allowed at all

    AccessList deny_only({}, {cidr_of("192.0.2.0/24")});
    CHECK_FALSE(deny_only.allows(at("192.0.2.55")));
    CHECK(deny_only.allows(at("198.51.100.1")));

    AccessList tie({cidr_of("192.0.2.0/24")}, {cidr_of("192.0.2.0/24")});
    CHECK_FALSE(tie.allows(at("192.0.2.1")));
}

TEST_CASE("Sources are counted by prefix, IPv6 by /64", "[limits]")
{
    auto key = [](const std::string& host) { return SourceKey::of(at(host), 32, 64); };
    CHECK(key("2001:db8::1") == key("2001:db8::ffff:ffff:1"));
    CHECK_FALSE(key("2001:db8::1") == key("2001:db8:0:1::1"));
    CHECK(key("192.0.2.1") == key("::ffff:192.0.2.1"));
    CHECK_FALSE(key("192.0.2.1") == key("192.0.2.2"));
    CHECK(SourceKey::of(at("192.0.2.1"), 24, 64) == SourceKey::of(at("192.0.2.200"), 24, 64));
    CHECK_FALSE(key("0.0.0.0") == key("::")); // families stay apart
    CHECK(SourceKeyHash{}(key("2001:db8::1")) == SourceKeyHash{}(key("2001:db8::2")));
}

TEST_CASE("Rates parse per second, minute and hour", "[limits]")
{
    CHECK(*parse_rate("50/s") == Approx(50));
    CHECK(*parse_rate("300/m") == Approx(5));
    CHECK(*parse_rate("36/h") == Approx(0.01));
    CHECK(*parse_rate("0.5/s") == Approx(0.5));
    for (const char* bad : {"50", "50/d", "/s", "0/s", "-1/s", "x/s", "50 /s"})
        CHECK_FALSE(parse_rate(bad).ok());
}

TEST_CASE("A token bucket allows a burst, then the rate, on the given clock", "[limits]")
{
    Clock::time_point t0{};
    TokenBucket bucket(10, 3, t0); // 10 a second, bursts of 3
    CHECK(bucket.take(t0));
    CHECK(bucket.take(t0));
    CHECK(bucket.take(t0));
    CHECK_FALSE(bucket.take(t0));
    CHECK(bucket.wait(t0) == 100ms);
    CHECK(bucket.wait(t0 + 40ms) == 60ms);
    CHECK_FALSE(bucket.take(t0 + 99ms));
    CHECK(bucket.take(t0 + 100ms));
    CHECK_FALSE(bucket.take(t0 + 100ms));
    // Never more than the burst, however long it rests.
    CHECK(bucket.full(t0 + 1h));
    CHECK(bucket.take(t0 + 1h));
    CHECK(bucket.take(t0 + 1h));
    CHECK(bucket.take(t0 + 1h));
    CHECK_FALSE(bucket.take(t0 + 1h));
    // A clock that seems to go back changes nothing.
    CHECK_FALSE(bucket.take(t0));
}

TEST_CASE("A rate's default burst is a second's worth, rounded up, within bounds", "[limits]")
{
    CHECK(superd::default_burst(5) == 5);
    CHECK(superd::default_burst(2.5) == 3);
    CHECK(superd::default_burst(1.0 / 60) == 1);
    CHECK(superd::default_burst(1e300) == superd::kMaxBurst);
}

TEST_CASE("A very slow rate waits at most a day for its next token", "[limits]")
{
    Clock::time_point t0{};
    TokenBucket slow(1e-300, 1, t0);
    CHECK(slow.take(t0));
    CHECK(slow.wait(t0) == std::chrono::hours(24));
    TokenBucket hourly(1.0 / 3600, 1, t0);
    CHECK(hourly.take(t0));
    CHECK(hourly.wait(t0 + 1ms) == 3599999ms);
}

TEST_CASE("A shortage's rest doubles from 100 ms to 5 s and starts over after a success", "[limits]")
{
    Backoff backoff(kFirstBackoff, kMaxBackoff);
    std::vector<long> rests;
    for (int i = 0; i < 9; ++i)
        rests.push_back(backoff.next().count());
    CHECK(rests == std::vector<long>{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000});
    backoff.reset();
    CHECK(backoff.current() == 0ms);
    CHECK(backoff.next() == 100ms);
}

TEST_CASE("A wait service whose children exit at once is paced from the third, never switched off", "[limits]")
{
    QuickExitPacer pacer(kWaitPacing);
    CHECK_FALSE(pacer.exited(10ms, true));
    CHECK_FALSE(pacer.exited(10ms, true));
    CHECK(pacer.exited(10ms, true) == 100ms);
    CHECK(pacer.exited(10ms, true) == 200ms);
    CHECK(pacer.exited(10ms, true) == 400ms);
    for (int i = 0; i < 20; ++i)
        pacer.exited(10ms, true);
    CHECK(pacer.exited(10ms, true) == 10000ms); // the most, and still spawning
    // A child that did its work, or ran long, starts over.
    CHECK_FALSE(pacer.exited(10ms, false));
    CHECK(pacer.in_a_row() == 0);
    pacer.exited(10ms, true);
    pacer.exited(10ms, true);
    CHECK_FALSE(pacer.exited(2s, true));
    // tftpd's way, one request per run of a few milliseconds: never paced.
    for (int i = 0; i < 100; ++i)
        CHECK_FALSE(pacer.exited(3ms, false));
}

TEST_CASE("A spinning wait service is spawned a few times in two seconds, not thousands", "[limits]")
{
    // Simulated time: a spawn and its exit cost a millisecond, then the
    // listener is readable again at once unless paced.
    fake::FakeTimers time;
    QuickExitPacer pacer(kWaitPacing);
    int spawned = 0;
    std::unique_ptr<Timer> next;
    next = time.timer([&] {
        ++spawned;
        next->arm(pacer.exited(1ms, true).value_or(0ms) + 1ms);
    });
    next->arm(0ms);
    time.advance(2s);
    CHECK(spawned >= 5); // still trying
    CHECK(spawned <= 20);
    int before = spawned;
    time.advance(15s);
    CHECK(spawned > before); // at the slowest pace, still spawning
}

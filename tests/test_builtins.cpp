#include "superd/builtins.h"

#include <catch2/catch.hpp>

#include <regex>
#include <set>

using namespace superd;

TEST_CASE("time counts seconds since 1900 in 32 bits (RFC 868)", "[builtins]")
{
    // RFC 868's own examples.
    CHECK(rfc::time_since_1900(-2208988800) == 0u);             // 1900-01-01
    CHECK(rfc::time_since_1900(-2208988800 + 2629584000) == 2629584000u); // 1983-05-01
    CHECK(rfc::time_since_1900(0) == 2208988800u);              // 1970-01-01
    // 2036-02-07 06:28:16 UTC wraps to 0.
    CHECK(rfc::time_since_1900(2085978496) == 0u);
}

TEST_CASE("chargen rotates 72 of the 95 printable characters a line (RFC 864)", "[builtins]")
{
    CHECK(rfc::chargen_line(0) == " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n");
    CHECK(rfc::chargen_line(1) == "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n");
    CHECK(rfc::chargen_line(94).substr(0, 3) == "~ !");
    CHECK(rfc::chargen_line(95) == rfc::chargen_line(0));
    std::set<std::string_view> distinct;
    for (uint64_t i = 0; i < 95; ++i) {
        CHECK(rfc::chargen_line(i).size() == 74);
        distinct.insert(rfc::chargen_line(i));
    }
    CHECK(distinct.size() == 95);
}

TEST_CASE("daytime is one human-readable line (RFC 867)", "[builtins]")
{
    std::regex shape(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n)");
    CHECK(std::regex_match(rfc::daytime(0), shape));
    CHECK(std::regex_match(rfc::daytime(1795000000), shape));
}

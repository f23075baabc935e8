#include "services/increment_machine.h"

#include <catch2/catch.hpp>

#include <string>

using service::IncrementMachine;

namespace {

std::string run(const std::vector<std::string>& chunks)
{
    IncrementMachine machine;
    std::string reply;
    for (const std::string& chunk : chunks)
        machine.feed(chunk, reply);
    return reply;
}

} // namespace

TEST_CASE("The seed's three chunks give the seed's answer", "[increment]")
{
    CHECK(run({"^abc$de^abte$f", "xyz^123", "25$^ab$abab"}) == "bcdbcuf23436bc");
}

TEST_CASE("The answer does not depend on where the input is split", "[increment]")
{
    const std::string input = "^abc$de^abte$fxyz^12325$^ab$abab";
    const std::string expected = "bcdbcuf23436bc";

    CHECK(run({input}) == expected);
    // Every split into three chunks (empty chunks included) covers every
    // possible boundary, alone and in pairs.
    for (size_t i = 0; i <= input.size(); ++i) {
        for (size_t j = i; j <= input.size(); ++j) {
            INFO("split at " << i << " and " << j);
            REQUIRE(run({input.substr(0, i), input.substr(i, j - i), input.substr(j)}) == expected);
        }
    }
    std::vector<std::string> bytes;
    for (char c : input)
        bytes.emplace_back(1, c);
    CHECK(run(bytes) == expected);
}

TEST_CASE("Bytes outside messages are ignored, bytes inside are incremented", "[increment]")
{
    CHECK(run({"abc"}) == "");
    CHECK(run({"^"}) == "");
    CHECK(run({"^$"}) == "");
    CHECK(run({"^^$"}) == "_");
    CHECK(run({"$^z"}) == "{");
    CHECK(run({std::string("^\xff$", 3)}) == std::string(1, '\0'));
}

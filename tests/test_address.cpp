#include "superd/address.h"

#include "tests/harness.h"

#include <catch2/catch.hpp>

using superd::parse_listen_address;

namespace {

std::string only(std::string_view text)
{
    auto parsed = parse_listen_address(text);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    return parsed->front().to_string();
}

std::string error_of(std::string_view text)
{
    auto parsed = parse_listen_address(text);
    REQUIRE_FALSE(parsed.ok());
    return parsed.error();
}

} // namespace

TEST_CASE("IPv4 listen addresses", "[address]")
{
    CHECK(only("127.0.0.1:7007") == "127.0.0.1:7007");
    CHECK(only("0.0.0.0:1") == "0.0.0.0:1");
    CHECK(only("10.1.2.3:65535") == "10.1.2.3:65535");

    auto parsed = parse_listen_address("127.0.0.1:7007");
    REQUIRE(parsed.ok());
    CHECK(parsed->front().family() == AF_INET);
    CHECK(parsed->front().port() == 7007);
    CHECK_FALSE(parsed->front().is_wildcard());
}

TEST_CASE("IPv6 listen addresses are written in brackets", "[address]")
{
    CHECK(only("[::1]:7007") == "[::1]:7007");
    CHECK(only("[::]:80") == "[::]:80");
    CHECK(only("[2001:db8::42]:8080") == "[2001:db8::42]:8080");
    auto parsed = parse_listen_address("[::]:80");
    REQUIRE(parsed.ok());
    CHECK(parsed->front().family() == AF_INET6);
    CHECK(parsed->front().is_wildcard());
}

TEST_CASE("A port alone listens on every address of both families", "[address]")
{
    auto parsed = parse_listen_address("7007");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 2);
    CHECK((*parsed)[0].to_string() == "0.0.0.0:7007");
    CHECK((*parsed)[1].to_string() == "[::]:7007");
    CHECK((*parsed)[0].is_wildcard());
    CHECK((*parsed)[1].is_wildcard());
}

TEST_CASE("Malformed listen addresses say what is wrong", "[address]")
{
    CHECK(error_of("") == "empty listen address");
    CHECK_THAT(error_of("127.0.0.1:"), Catch::Contains("missing port"));
    CHECK_THAT(error_of("127.0.0.1:0"), Catch::Contains("out of range"));
    CHECK_THAT(error_of("127.0.0.1:65536"), Catch::Contains("out of range"));
    CHECK_THAT(error_of("127.0.0.1:http"), Catch::Contains("not a number"));
    CHECK_THAT(error_of("127.0.0.1:+80"), Catch::Contains("not a number"));
    CHECK_THAT(error_of("127.0.0.1:80x"), Catch::Contains("not a number"));
    CHECK_THAT(error_of("99999"), Catch::Contains("out of range"));
    CHECK_THAT(error_of("seven"), Catch::Contains("not a number"));
    CHECK_THAT(error_of("localhost:80"), Catch::Contains("not a numeric IPv4 address"));
    CHECK_THAT(error_of("256.0.0.1:80"), Catch::Contains("not a numeric IPv4 address"));
    CHECK_THAT(error_of("::1:80"), Catch::Contains("in brackets"));
    CHECK_THAT(error_of("[::1]80"), Catch::Contains("expected ':PORT'"));
    CHECK_THAT(error_of("[::1]"), Catch::Contains("expected ':PORT'"));
    CHECK_THAT(error_of("[::1:80"), Catch::Contains("missing ']'"));
    CHECK_THAT(error_of("[127.0.0.1]:80"), Catch::Contains("not a numeric IPv6 address"));
    CHECK_THAT(error_of("[fe80::1%lo]:80"), Catch::Contains("not a numeric IPv6 address"));
}

TEST_CASE("IPv4-mapped IPv6 peers print as plain IPv4", "[address]")
{
    auto peer = harness::socket_address("::ffff:192.0.2.7", 4000);
    superd::HostText host;
    superd::format_host(peer, host);
    CHECK(std::string(host.data()) == "192.0.2.7");
    CHECK(peer.to_string() == "192.0.2.7:4000");
}

TEST_CASE("IPv6 listen addresses that bind() would refuse are refused", "[address]")
{
    CHECK_THAT(error_of("[::ffff:127.0.0.1]:7000"), Catch::Contains("IPv4-mapped"));
    CHECK_THAT(error_of("[fe80::1]:7000"), Catch::Contains("link-local"));
}

TEST_CASE("Socket addresses compare by family, address and port", "[address]")
{
    auto a = parse_listen_address("127.0.0.1:80");
    auto b = parse_listen_address("127.0.0.1:80");
    auto c = parse_listen_address("127.0.0.2:80");
    auto d = parse_listen_address("127.0.0.1:81");
    CHECK(a->front() == b->front());
    CHECK_FALSE(a->front() == c->front());
    CHECK_FALSE(a->front() == d->front());
}

TEST_CASE("Unix socket listen addresses", "[address]")
{
    CHECK(only("unix:/run/superd/echo.sock") == "unix:/run/superd/echo.sock");
    auto parsed = parse_listen_address("unix:/tmp/x");
    REQUIRE(parsed.ok());
    CHECK(parsed->front().family() == AF_UNIX);
    CHECK(parsed->front().path() == "/tmp/x");
    CHECK(parsed->front() == superd::SocketAddress::unix_path("/tmp/x"));
    CHECK_FALSE(parsed->front() == superd::SocketAddress::unix_path("/tmp/y"));
    CHECK_THAT(error_of("unix:"), Catch::Contains("missing socket path"));
    CHECK_THAT(error_of("unix:/" + std::string(200, 'a')), Catch::Contains("longer than 107 bytes"));
}

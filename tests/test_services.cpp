// The bundled services, each reached through a real superd.
#include "tests/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <regex>
#include <thread>

using namespace harness;

TEST_CASE("echo sends back what it reads, over IPv4 and IPv6", "[services][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("echo", {loopback(port), "[::1]:" + std::to_string(port)}, service_binary("echo")));

    CHECK(round_trip(port, "hello\n") == "hello\n");
    CHECK(round_trip(port, "over v6\n", "::1") == "over v6\n");
    std::string big(1 << 20, 'x');
    for (size_t i = 0; i < big.size(); i += 997)
        big[i] = static_cast<char>('a' + i % 26);
    UniqueFd fd = connect_tcp(port);
    std::thread writer([&] {
        send_all(fd.get(), big);
        ::shutdown(fd.get(), SHUT_WR);
    });
    std::string back = read_to_eof(fd.get());
    writer.join();
    CHECK(back == big);
}

TEST_CASE("increment answers the seed's chunks sent with pauses", "[services][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("increment", {loopback(port)}, service_binary("increment")));

    UniqueFd fd = connect_tcp(port);
    CHECK(read_n(fd.get(), 1) == "*");
    // Each chunk's answer arrives before the next chunk is sent.
    const std::pair<const char*, const char*> exchanges[] = {
        {"^abc$de^abte$f", "bcdbcuf"}, {"xyz^123", "234"}, {"25$^ab$abab", "36bc"}};
    for (const auto& [chunk, answer] : exchanges) {
        send_all(fd.get(), chunk);
        CHECK(read_n(fd.get(), std::strlen(answer)) == answer);
        std::this_thread::sleep_for(50ms);
    }
    ::shutdown(fd.get(), SHUT_WR);
    CHECK(read_to_eof(fd.get()) == "");
}

TEST_CASE("peer reports the client's real address and port", "[services][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("peer", {loopback(port), "[::1]:" + std::to_string(port)}, service_binary("peer")));

    for (std::string host : {"127.0.0.1", "::1"}) {
        UniqueFd fd = connect_tcp(port, host);
        sockaddr_storage mine{};
        socklen_t len = sizeof mine;
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&mine), &len) == 0);
        uint16_t my_port = ntohs(reinterpret_cast<sockaddr_in&>(mine).sin_port);
        CHECK(read_to_eof(fd.get()) == host + " " + std::to_string(my_port) + "\n");
    }
}

TEST_CASE("daytime sends one RFC 867 line and closes", "[services][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("daytime", {loopback(port)}, service_binary("daytime")));

    UniqueFd fd = connect_tcp(port);
    std::string line = read_to_eof(fd.get());
    // "Saturday, November 21, 2026 11:40:38-UTC\r\n"
    std::regex shape(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n)");
    INFO(line);
    CHECK(std::regex_match(line, shape));
}

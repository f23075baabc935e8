// Tests for proxy_header.h, the PROXY protocol: the writers against bytes
// written by hand from HAProxy's doc/proxy-protocol.txt, the parser against
// what the writers make (random addresses) and against malformed headers,
// and the parser's promise that a reader following its `need` never takes
// a byte of the payload behind the header.
#include "superd/proxy_header.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using superd::parse_proxy_header;
using superd::ProxyAccept;
using superd::ProxyCommand;
using superd::ProxyParse;
using superd::ProxyVersion;
using superd::SocketAddress;

namespace {

using Bytes = std::vector<uint8_t>;

SocketAddress ip(const char* text, uint16_t port)
{
    bool v6 = std::strchr(text, ':') != nullptr;
    SocketAddress a = v6 ? SocketAddress::any_ipv6(port) : SocketAddress::any_ipv4(port);
    void* bytes = v6 ? static_cast<void*>(&reinterpret_cast<sockaddr_in6&>(a.storage).sin6_addr)
                     : static_cast<void*>(&reinterpret_cast<sockaddr_in&>(a.storage).sin_addr);
    REQUIRE(inet_pton(v6 ? AF_INET6 : AF_INET, text, bytes) == 1);
    return a;
}

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

Bytes cat(Bytes a, const Bytes& b)
{
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The v2 signature and the byte after it, as the specification prints them.
const Bytes kSignature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

Bytes v2(std::span<const uint8_t> written) { return Bytes(written.begin(), written.end()); }

Bytes write_v2(const SocketAddress& src, const SocketAddress& dst)
{
    std::array<uint8_t, 232> out;
    return v2(superd::write_proxy_v2(src, dst, out));
}

std::string write_v1(const SocketAddress& src, const SocketAddress& dst)
{
    std::array<char, 108> out;
    return std::string(superd::write_proxy_v1(src, dst, out));
}

ProxyParse parse(const Bytes& bytes, ProxyAccept accept = ProxyAccept::kAny)
{
    return parse_proxy_header(bytes, accept);
}

std::string_view reason(const Bytes& bytes, ProxyAccept accept = ProxyAccept::kAny)
{
    ProxyParse p = parse(bytes, accept);
    INFO(std::string(bytes.begin(), bytes.end()));
    CHECK(p.status == ProxyParse::Status::kInvalid);
    return p.reason;
}

// How a reader fared on a connection: what it ended with, how many bytes
// it took off the socket, and in how many reads.
struct Reading {
    ProxyParse result;
    size_t taken = 0;
    int reads = 0;
};

// Reads exactly `need` bytes each time, as a v2 listener does.
Reading read_as_told(const Bytes& stream, ProxyAccept accept)
{
    Reading r;
    Bytes held;
    for (;;) {
        r.result = parse_proxy_header(held, accept);
        if (r.result.status != ProxyParse::Status::kNeed)
            break;
        REQUIRE(r.result.need >= 1);
        size_t n = std::min(r.result.need, stream.size() - held.size());
        REQUIRE(n > 0); // the stream ended while the parser still waited
        held.insert(held.end(), stream.begin() + held.size(), stream.begin() + held.size() + n);
        ++r.reads;
    }
    r.taken = held.size();
    return r;
}

// Peeks, then reads what the header's documentation says: the whole header
// once it is complete, or else everything peeked. `chunk` is how much of
// the stream has arrived at each peek, as the network delivers it.
Reading read_with_peek(const Bytes& stream, ProxyAccept accept, size_t chunk)
{
    Reading r;
    Bytes held;
    size_t room = superd::kProxyPeekLength;
    for (size_t arrived = chunk;; arrived += chunk) {
        size_t peek = std::min(std::min(arrived, stream.size()) - held.size(), room);
        Bytes seen = held;
        seen.insert(seen.end(), stream.begin() + held.size(), stream.begin() + held.size() + peek);
        r.result = parse_proxy_header(seen, accept);
        if (r.result.status == ProxyParse::Status::kInvalid)
            break;
        size_t take = r.result.status == ProxyParse::Status::kDone ? r.result.header.length - held.size() : peek;
        if (take > 0) {
            held.insert(held.end(), stream.begin() + held.size(), stream.begin() + held.size() + take);
            ++r.reads;
        }
        if (r.result.status == ProxyParse::Status::kDone)
            break;
        // Past the peek's length only a v2 header can still be arriving,
        // and its `need` is exact.
        room = held.size() < superd::kProxyPeekLength ? superd::kProxyPeekLength - held.size() : r.result.need;
        REQUIRE((take > 0 || arrived < stream.size())); // the stream ended while the parser still waited
    }
    r.taken = held.size();
    return r;
}

const Bytes kPayload = bytes_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n");

// Every way of reading `header` followed by a payload stops exactly at the
// header's end, whichever versions the reader accepts that include it.
void check_reads_stop_at_header(const Bytes& header, ProxyAccept own)
{
    Bytes stream = cat(header, kPayload);
    for (ProxyAccept accept : {own, ProxyAccept::kAny}) {
        Reading told = read_as_told(stream, accept);
        REQUIRE(told.result.status == ProxyParse::Status::kDone);
        CHECK(told.result.header.length == header.size());
        CHECK(told.taken == header.size());
        for (size_t chunk : {size_t{1}, size_t{7}, size_t{16}, size_t{500}}) {
            Reading peeked = read_with_peek(stream, accept, chunk);
            INFO("chunk " << chunk);
            REQUIRE(peeked.result.status == ProxyParse::Status::kDone);
            CHECK(peeked.taken == header.size());
        }
    }
}

void check_same(const ProxyParse& p, const SocketAddress& src, const SocketAddress& dst, size_t length)
{
    REQUIRE(p.status == ProxyParse::Status::kDone);
    CHECK(p.header.command == ProxyCommand::kProxy);
    CHECK(p.header.source == src);
    CHECK(p.header.destination == dst);
    CHECK(p.header.length == length);
}

SocketAddress unix_with_path(std::string_view path) // up to all 108 bytes, unlike SocketAddress::unix_path
{
    SocketAddress a;
    auto& sun = reinterpret_cast<sockaddr_un&>(a.storage);
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.data(), path.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    return a;
}

} // namespace

TEST_CASE("PROXY v2 headers are the specification's bytes", "[proxy_header]")
{
    SECTION("TCP over IPv4")
    {
        Bytes expected =
            cat(kSignature, {0x21, 0x11, 0x00, 0x0C, 192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB});
        CHECK(write_v2(ip("192.168.0.1", 56324), ip("192.168.0.11", 443)) == expected);
    }
    SECTION("TCP over IPv6")
    {
        Bytes expected = cat(kSignature, {0x21, 0x21, 0x00, 0x24});
        expected = cat(expected, {0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01});
        expected = cat(expected, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1});
        expected = cat(expected, {0x00, 0x00, 0xFF, 0xFF});
        CHECK(write_v2(ip("2001:db8::1", 0), ip("::ffff:10.0.0.1", 65535)) == expected);
    }
    SECTION("unix stream: two 108-byte paths padded with zeros")
    {
        Bytes expected = cat(kSignature, {0x21, 0x31, 0x00, 0xD8});
        Bytes source(108, 0);
        Bytes destination(108, 0);
        std::memcpy(source.data(), "/run/a", 6);
        std::memcpy(destination.data(), "/tmp/b.sock", 11);
        expected = cat(cat(expected, source), destination);
        CHECK(write_v2(SocketAddress::unix_path("/run/a"), SocketAddress::unix_path("/tmp/b.sock")) == expected);
        CHECK(expected.size() == 232);
    }
    SECTION("LOCAL, without addresses, when the pair is not one family v2 carries")
    {
        Bytes expected = cat(kSignature, {0x20, 0x00, 0x00, 0x00});
        CHECK(write_v2(ip("10.0.0.1", 1), ip("::1", 2)) == expected);
        CHECK(write_v2(ip("10.0.0.1", 1), SocketAddress::unix_path("/x")) == expected);
        CHECK(write_v2(SocketAddress{}, SocketAddress{}) == expected);
    }
}

TEST_CASE("PROXY v1 lines are the specification's text", "[proxy_header]")
{
    CHECK(write_v1(ip("192.168.0.1", 56324), ip("192.168.0.11", 443))
          == "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    CHECK(write_v1(ip("255.255.255.255", 65535), ip("255.255.255.255", 65535))
          == "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
    CHECK(write_v1(ip("0.0.0.0", 0), ip("0.0.0.0", 0)) == "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n");
    CHECK(write_v1(ip("2001:db8::1", 1), ip("::1", 22)) == "PROXY TCP6 2001:db8::1 ::1 1 22\r\n");

    std::string longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "65535 65535\r\n";
    CHECK(longest.size() == 104);
    CHECK(write_v1(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                   ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535))
          == longest);

    // A mapped address stays IPv6: the line's family is the connection's.
    CHECK(write_v1(ip("::ffff:10.0.0.1", 1), ip("::ffff:10.0.0.2", 2))
          == "PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 2\r\n");

    CHECK(write_v1(ip("10.0.0.1", 1), ip("::1", 2)) == "PROXY UNKNOWN\r\n");
    CHECK(write_v1(SocketAddress::unix_path("/a"), SocketAddress::unix_path("/b")) == "PROXY UNKNOWN\r\n");
    CHECK(write_v1(SocketAddress{}, SocketAddress{}) == "PROXY UNKNOWN\r\n");
}

TEST_CASE("PROXY headers written for random addresses parse back to them", "[proxy_header]")
{
    std::mt19937 random(20261129);
    auto byte = [&random] { return static_cast<uint8_t>(random()); };
    auto port = [&random] { return static_cast<uint16_t>(random()); };
    auto address = [&](int family) {
        SocketAddress a = family == AF_INET ? SocketAddress::any_ipv4(port()) : SocketAddress::any_ipv6(port());
        auto* p = family == AF_INET ? reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in&>(a.storage).sin_addr)
                                    : reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in6&>(a.storage).sin6_addr);
        size_t n = family == AF_INET ? 4 : 16;
        for (size_t i = 0; i < n; ++i)
            p[i] = byte();
        if (family == AF_INET6 && random() % 3 == 0) // runs of zeros for "::"
            std::memset(p + random() % 8, 0, random() % 9);
        if (family == AF_INET6 && random() % 5 == 0) // IPv4-mapped
            std::memcpy(p, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
        return a;
    };

    for (int i = 0; i < 500; ++i) {
        int family = i % 2 ? AF_INET6 : AF_INET;
        SocketAddress src = address(family);
        SocketAddress dst = address(family);
        INFO(src.to_string() << " -> " << dst.to_string());

        std::string line = write_v1(src, dst);
        check_same(parse(bytes_of(line), ProxyAccept::kV1), src, dst, line.size());
        check_same(parse(cat(bytes_of(line), kPayload)), src, dst, line.size());
        CHECK(parse(bytes_of(line)).header.version == ProxyVersion::kV1);

        Bytes binary = write_v2(src, dst);
        check_same(parse(binary, ProxyAccept::kV2), src, dst, binary.size());
        check_same(parse(cat(binary, kPayload)), src, dst, binary.size());
        CHECK(parse(binary).header.version == ProxyVersion::kV2);
    }

    for (int i = 0; i < 50; ++i) {
        std::string a(random() % 109, 'a');
        std::string b(random() % 109, 'b');
        for (char& c : a)
            c = static_cast<char>('a' + random() % 26);
        SocketAddress src = unix_with_path(a);
        SocketAddress dst = unix_with_path(b);
        INFO(a << " -> " << b);
        Bytes binary = write_v2(src, dst);
        check_same(parse(cat(binary, kPayload), ProxyAccept::kV2), src, dst, 232);
        CHECK(parse(binary).header.source.path() == a);
    }
}

TEST_CASE("A PROXY header read as the parser asks stops exactly where the payload starts", "[proxy_header]")
{
    std::vector<std::string> lines = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        "PROXY TCP6 :: :: 0 0\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    };
    for (const std::string& line : lines) {
        INFO(line);
        check_reads_stop_at_header(bytes_of(line), ProxyAccept::kV1);
    }
    std::vector<Bytes> headers = {
        write_v2(ip("192.168.0.1", 56324), ip("192.168.0.11", 443)),
        write_v2(ip("2001:db8::1", 1), ip("2001:db8::2", 2)),
        write_v2(SocketAddress::unix_path("/run/a"), SocketAddress::unix_path("/run/b")),
        write_v2(ip("10.0.0.1", 1), ip("::1", 2)),
        // PROXY over TCP4 with an authority and a unique id
        cat(cat(kSignature, {0x21, 0x11, 0x00, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}),
            {0x02, 0x00, 0x03, 'a', '.', 'b', 0x05, 0x00, 0x04, 9, 9, 9, 9}),
    };
    for (const Bytes& header : headers) {
        INFO(header.size());
        check_reads_stop_at_header(header, ProxyAccept::kV2);
    }

    // A v2 listener needs no peeking: the fixed part, then the rest.
    Bytes stream = cat(headers[0], kPayload);
    Reading r = read_as_told(stream, ProxyAccept::kV2);
    CHECK(r.reads == 2);
    CHECK(r.taken == 28);
    CHECK(read_as_told(cat(headers[3], kPayload), ProxyAccept::kV2).reads == 1); // LOCAL has no block
    // Peeking takes a whole v1 line that has arrived in one read.
    CHECK(read_with_peek(cat(bytes_of(lines[0]), kPayload), ProxyAccept::kV1, 500).reads == 1);
    // The shortest v1 line is shorter than a v2 fixed part: the first read
    // of a listener taking either stops before 16 bytes.
    CHECK(parse({}, ProxyAccept::kAny).need == 15);
    CHECK(parse({}, ProxyAccept::kV2).need == 16);
}

TEST_CASE("PROXY headers say what they carry", "[proxy_header]")
{
    SECTION("TLVs: authority and unique id read, others skipped")
    {
        Bytes header = cat(kSignature, {0x21, 0x11, 0x00, 0x2B, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
        header = cat(header, {0x04, 0x00, 0x01, 0xAA});                                                  // NOOP
        header = cat(header, {0x02, 0x00, 0x0B, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm'}); // authority
        header = cat(header, {0x03, 0x00, 0x04, 0, 0, 0, 0});                                            // CRC32C
        header = cat(header, {0x05, 0x00, 0x03, 0x00, 0xFF, 0x01});                                      // unique id
        ProxyParse p = parse(header, ProxyAccept::kV2);
        check_same(p, ip("1.2.3.4", 1), ip("5.6.7.8", 2), 59);
        CHECK(p.header.authority == "example.com");
        CHECK(p.header.unique_id == std::string("\0\xff\x01", 3));
    }
    SECTION("no TLVs, none reported")
    {
        ProxyParse p = parse(write_v2(ip("1.2.3.4", 1), ip("5.6.7.8", 2)));
        CHECK_FALSE(p.header.authority);
        CHECK_FALSE(p.header.unique_id);
    }
    SECTION("headers without usable addresses are LOCAL, of their whole length")
    {
        struct Case {
            Bytes bytes;
            size_t length;
        };
        std::vector<Case> cases = {
            {bytes_of("PROXY UNKNOWN\r\n"), 15},
            {bytes_of("PROXY UNKNOWN 1.2.3.4 anything at all\r\n"), 39},
            {cat(kSignature, {0x20, 0x00, 0x00, 0x00}), 16},
            // LOCAL skips its block whatever the family says
            {cat(kSignature, {0x20, 0x7F, 0x00, 0x03, 1, 2, 3}), 19},
            // PROXY over UDP, or an unspecified family: superd takes neither
            {cat(kSignature, {0x21, 0x12, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}), 28},
            {cat(kSignature, {0x21, 0x00, 0x00, 0x00}), 16},
        };
        for (const Case& c : cases) {
            ProxyParse p = parse(cat(c.bytes, kPayload));
            INFO(std::string(c.bytes.begin(), c.bytes.end()));
            REQUIRE(p.status == ProxyParse::Status::kDone);
            CHECK(p.header.command == ProxyCommand::kLocal);
            CHECK(p.header.length == c.length);
            CHECK(p.header.source.family() == AF_UNSPEC);
        }
    }
    SECTION("a v1 line in upper-case hex and an IPv4-mapped IPv6 address")
    {
        check_same(parse(bytes_of("PROXY TCP6 2001:DB8::A ::ffff:1.2.3.4 10 20\r\n")), ip("2001:db8::a", 10),
                   ip("::ffff:1.2.3.4", 20), 45);
    }
}

TEST_CASE("Malformed PROXY v1 lines are refused with the reason", "[proxy_header]")
{
    struct Case {
        std::string text;
        std::string_view reason;
    };
    std::vector<Case> cases = {
        {"GET / HTTP/1.1\r\n", "bad signature"},
        {"PROXY\r\n", "missing v1 fields"},
        {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad signature"},
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown v1 protocol"},
        {"PROXY UNKNOWNX\r\n", "unknown v1 protocol"},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown v1 protocol"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "bad v1 spacing"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "too many v1 fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "too many v1 fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "missing v1 fields"},
        {"PROXY TCP4\r\n", "missing v1 fields"},
        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad v1 source address"},
        {std::string("PROXY TCP4 1.2.3.4\0x 5.6.7.8 1 2\r\n", 35), "bad v1 source address"},
        {"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "bad v1 destination address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", "bad v1 destination address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad v1 source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "bad v1 destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "bad v1 destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 line ends in LF without CR"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "v1 CR without LF"},
        {"PROXY UNKNOWN " + std::string(100, 'x'), "v1 line too long"},
        {"PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", "v1 line too long"}, // 108
        {"PROXY TCP6 " + std::string(45, 'f') + " " + std::string(45, 'f') + " ", "v1 line too long"},
    };
    for (const Case& c : cases)
        CHECK(reason(bytes_of(c.text)) == c.reason);
    // A v2 header where only v1 is taken, and the other way round.
    CHECK(reason(write_v2(ip("1.2.3.4", 1), ip("5.6.7.8", 2)), ProxyAccept::kV1) == "bad signature");
    CHECK(reason(bytes_of("PROXY UNKNOWN\r\n"), ProxyAccept::kV2) == "bad signature");
    // Exactly 107 bytes with its CRLF is still a line.
    CHECK(parse(bytes_of("PROXY UNKNOWN " + std::string(91, 'x') + "\r\n")).header.length == 107);
}

TEST_CASE("Malformed PROXY v2 headers are refused with the reason", "[proxy_header]")
{
    const Bytes tcp4 = {0x21, 0x11, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    auto with_tlvs = [&](Bytes tlvs) {
        Bytes header = cat(kSignature, {0x21, 0x11, 0x00, static_cast<uint8_t>(12 + tlvs.size())});
        return cat(cat(header, {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}), tlvs);
    };
    Bytes long_id = {0x05, 0x00, 0x81};
    long_id.resize(3 + 129, 'i');

    struct Case {
        Bytes bytes;
        std::string_view reason;
    };
    std::vector<Case> cases = {
        {{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B}, "bad signature"},
        {{0x0D, 0x0D}, "bad signature"},
        {cat(kSignature, {0x11, 0x11, 0x00, 0x0C}), "unsupported v2 version"},
        {cat(kSignature, {0x22, 0x11, 0x00, 0x0C}), "unsupported v2 command"},
        {cat(kSignature, {0x2F}), "unsupported v2 command"},
        {cat(kSignature, {0x21, 0x41, 0x00, 0x0C}), "unsupported family"},
        {cat(kSignature, {0x21, 0x13, 0x00, 0x0C}), "unsupported family"},
        {cat(kSignature, {0x21, 0x01}), "unsupported family"},
        {cat(kSignature, {0x21, 0x11, 0x00, 0x0B}), "truncated address block"},
        {cat(kSignature, {0x21, 0x21, 0x00, 0x0C}), "truncated address block"},
        {cat(kSignature, {0x21, 0x31, 0x00, 0xD7}), "truncated address block"},
        {with_tlvs({0x04, 0x00}), "truncated TLV"},
        {with_tlvs({0x04, 0x00, 0x02, 0xAA}), "TLV overruns header"},
        {with_tlvs({0x02, 0x00, 0x01, 'a', 0x02, 0x00, 0x01, 'b'}), "duplicate authority TLV"},
        {with_tlvs({0x02, 0x00, 0x02, 'a', '\n'}), "bad authority TLV"},
        {with_tlvs({0x02, 0x00, 0x00}), "bad authority TLV"},
        {with_tlvs({0x05, 0x00, 0x01, 'a', 0x05, 0x00, 0x01, 'b'}), "duplicate unique id TLV"},
        {with_tlvs(long_id), "unique id TLV too long"},
    };
    CHECK(parse(cat(kSignature, tcp4)).status == ProxyParse::Status::kDone); // the cases' good base
    for (const Case& c : cases) {
        ProxyParse p = parse(c.bytes);
        INFO(c.reason);
        CHECK(p.status == ProxyParse::Status::kInvalid);
        CHECK(p.reason == c.reason);
    }
    // Up to its fixed part a v2 header is known good or bad byte by byte.
    Bytes good = cat(kSignature, tcp4);
    for (size_t n = 1; n < 16; ++n) {
        ProxyParse p = parse(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
        CHECK(p.status == ProxyParse::Status::kNeed);
        CHECK(p.need == 16 - n);
    }
}

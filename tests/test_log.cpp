// Unit tests for log.h: escaping of values that came from outside superd,
// and the log levels the command line accepts.
#include "superd/log.h"

#include <catch2/catch.hpp>

#include <string>

using superd::Escaped;

namespace {

std::string escaped(std::string_view text) { return fmt::format("{}", Escaped{text}); }

// The escape of one byte, written out independently of escape_byte.
std::string expected_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\r':
        return "\\r";
    case '\n':
        return "\\n";
    case '\t':
        return "\\t";
    }
    if (c < 0x20 || c >= 0x7f) {
        char hex[5];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        return hex;
    }
    return std::string(1, static_cast<char>(c));
}

} // namespace

TEST_CASE("every control byte, DEL and non-ASCII byte is escaped; printable ASCII is not", "[log]")
{
    for (int c = 0; c < 256; ++c) {
        INFO("byte " << c);
        CHECK(escaped(std::string(1, static_cast<char>(c))) == expected_escape(static_cast<unsigned char>(c)));
    }
    CHECK(escaped(std::string("\0", 1)) == "\\x00");
    CHECK(escaped("\x1b[31m") == "\\x1b[31m");
    CHECK(escaped("\x7f") == "\\x7f");
    CHECK(escaped("caf\xc3\xa9") == "caf\\xc3\\xa9");
}

TEST_CASE("an escaped value cannot close its quotes or start a new line", "[log]")
{
    std::string forged = "ok\" pid=1 status=\"exit 0\"\r\n2024-01-01T00:00:00.000 info spawned service=root";
    std::string out = escaped(forged);
    CHECK(out == "ok\\\" pid=1 status=\\\"exit 0\\\"\\r\\n2024-01-01T00:00:00.000 info spawned service=root");
    // Every quote in the output is preceded by a backslash that is not itself escaped.
    for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] != '"')
            continue;
        size_t backslashes = 0;
        for (size_t j = i; j > 0 && out[j - 1] == '\\'; --j)
            ++backslashes;
        CHECK(backslashes % 2 == 1);
    }
    CHECK(escaped("a\\") == "a\\\\");
    CHECK(escaped("a\\\"") == "a\\\\\\\"");
}

TEST_CASE("long values are escaped whole, runs of plain text and escapes alike", "[log]")
{
    std::string text, expected;
    for (int i = 0; i < 100000; ++i) {
        auto c = static_cast<unsigned char>((i * 7919) % 256);
        text.push_back(static_cast<char>(c));
        expected += expected_escape(c);
    }
    CHECK(escaped(text) == expected);
    std::string plain(70000, 'x');
    CHECK(escaped(plain) == plain);
    CHECK(escaped("") == "");
    CHECK(fmt::format("line=\"{}\" pid={}", Escaped{"a\"b"}, 7) == "line=\"a\\\"b\" pid=7");
}

TEST_CASE("a unix socket's path is printed escaped; numeric addresses as they are", "[log]")
{
    auto unix_peer = superd::SocketAddress::unix_path("/tmp/x\" pid=0\n\x1b[2J.sock");
    CHECK(fmt::format("{}", unix_peer) == "unix:/tmp/x\\\" pid=0\\n\\x1b[2J.sock");
    CHECK(fmt::format("{}", superd::SocketAddress::unix_path("/run/api.sock")) == "unix:/run/api.sock");
    CHECK(fmt::format("{}", superd::SocketAddress::any_ipv4(7007)) == "0.0.0.0:7007");
}

TEST_CASE("log levels by name", "[log]")
{
    CHECK(superd::parse_log_level("debug") == spdlog::level::debug);
    CHECK(superd::parse_log_level("error") == spdlog::level::err);
    CHECK_FALSE(superd::parse_log_level("loud"));
}

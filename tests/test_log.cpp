// Tests for log.h: escaping of values that came from outside superd, the
// log levels the command line accepts, and the lines' format, with a
// timestamp or, for the journal, a priority.
#include "superd/log.h"

#include "tests/harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/sinks/ostream_sink.h>

#include <catch2/catch.hpp>

#include <regex>
#include <sstream>
#include <string>

using superd::Escaped;
using superd::UniqueFd;

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

TEST_CASE("every control byte, DEL and non-ASCII byte is escaped, printable ASCII is not", "[log]")
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

TEST_CASE("a unix socket's path is printed escaped, numeric addresses as they are", "[log]")
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

namespace {

// "DEVICE:INODE" of `fd`, as systemd writes $JOURNAL_STREAM.
std::string dev_ino(int fd)
{
    struct stat st;
    REQUIRE(::fstat(fd, &st) == 0);
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

// What `logger` writes for one line at each level.
std::string lines_at_every_level(superd::LogFormat format)
{
    std::ostringstream out;
    auto logger =
        superd::make_logger(std::make_shared<spdlog::sinks::ostream_sink_st>(out), spdlog::level::trace, format);
    logger->trace("t");
    logger->debug("d");
    logger->info("ready services={}", 1);
    logger->warn("w");
    logger->error("e");
    logger->critical("c");
    return out.str();
}

} // namespace

TEST_CASE("stderr is the journal only when JOURNAL_STREAM names its device and inode", "[log]")
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    harness::TempDir dir;
    UniqueFd file(::open(dir.write("file", "").c_str(), O_RDONLY | O_CLOEXEC));

    std::string mine = dev_ino(write_end.get());
    CHECK(superd::is_journal_stream(write_end.get(), mine.c_str()));
    CHECK(superd::is_journal_stream(read_end.get(), mine.c_str())); // one pipe, one inode
    CHECK_FALSE(superd::is_journal_stream(file.get(), mine.c_str()));
    CHECK_FALSE(superd::is_journal_stream(write_end.get(), dev_ino(file.get()).c_str()));
    CHECK_FALSE(superd::is_journal_stream(write_end.get(), nullptr));
    std::string dev = mine.substr(0, mine.find(':')), ino = mine.substr(mine.find(':') + 1);
    for (const std::string& bad : {std::string(), dev, dev + ":", ":" + ino, mine + ":", mine + "x", " " + mine,
                                   dev + ":-" + ino, "0x" + mine}) {
        INFO(bad);
        CHECK_FALSE(superd::is_journal_stream(write_end.get(), bad.c_str()));
    }
    CHECK_FALSE(superd::is_journal_stream(-1, mine.c_str()));
}

TEST_CASE("for the journal a line starts with its syslog priority, without a timestamp", "[log]")
{
    CHECK(lines_at_every_level(superd::LogFormat::kJournal)
          == "<7>trace t\n<7>debug d\n<6>info ready services=1\n<4>warning w\n<3>error e\n<3>critical c\n");
    std::string plain = lines_at_every_level(superd::LogFormat::kPlain);
    std::regex stamped("([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} "
                       "(trace t|debug d|info ready services=1|warning w|error e|critical c)\n){6}");
    CHECK(std::regex_match(plain, stamped));
}

TEST_CASE("superd under the journal writes priorities, not timestamps, elsewhere its lines are as ever",
          "[log][integration]")
{
    uint16_t port = harness::free_port();
    std::string config = harness::service_toml("echo", {harness::loopback(port)}, harness::service_binary("echo"));
    // superd's lines from its start to its stop, with a refused reload between.
    auto logged = [&](const harness::StartOptions& options) {
        harness::Superd superd(config, options);
        superd.rewrite_config("[service.echo]\nprogram = 7\n");
        REQUIRE_FALSE(superd.reload());
        REQUIRE(superd.stop() == 0);
        std::vector<std::string> lines;
        std::istringstream in(superd.log());
        for (std::string line; std::getline(in, line);)
            lines.push_back(line);
        return lines;
    };
    std::string stamp = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} ";
    harness::TempDir dir;
    UniqueFd other(::open(dir.write("other", "").c_str(), O_RDONLY | O_CLOEXEC));
    harness::StartOptions options;
    std::string expected; // what every line starts with
    SECTION("JOURNAL_STREAM names superd's stderr")
    {
        // As systemd does it: the variable names the very file on fd 2.
        options.wrapper = {"/bin/sh", "-c",
                           "JOURNAL_STREAM=$(stat -L -c %d:%i /dev/stderr) && export JOURNAL_STREAM "
                           "&& exec \"$@\"",
                           "sh"};
        expected = "<6>info |<3>error ";
    }
    SECTION("JOURNAL_STREAM names another file")
    {
        options.env = {"JOURNAL_STREAM=" + dev_ino(other.get())};
        expected = stamp + "info |" + stamp + "error ";
    }
    SECTION("no JOURNAL_STREAM") { expected = stamp + "info |" + stamp + "error "; }

    ::unsetenv("JOURNAL_STREAM"); // were the tests themselves run under systemd
    auto lines = logged(options);
    INFO(Catch::Detail::stringify(lines));
    // listening, ready, reloading, reload failed, stopping
    REQUIRE(lines.size() == 5);
    std::regex line("(" + expected + ")[^\\n]*");
    for (const std::string& each : lines)
        CHECK(std::regex_match(each, line));
    CHECK(std::regex_search(lines[1], std::regex("info ready services=1 ")));
    CHECK(std::regex_search(lines[3], std::regex("error reload failed ")));
}

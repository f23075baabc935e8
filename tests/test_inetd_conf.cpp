#include "superd/inetd_conf.h"

#include "superd/builtin_kind.h"
#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>

using superd::find_builtin;
using superd::Mode;
using superd::Protocol;

namespace {

// Debian's shipped file with its internal services switched on, as an
// administrator enables them: the leading '#' removed.
std::string enabled_debian_file()
{
    std::ifstream in(std::string(TEST_DATA_DIR) + "/openbsd-inetd.conf");
    REQUIRE(in);
    std::ostringstream out;
    std::regex disabled(R"(^#(\w+\s+(stream|dgram)\s.*)$)");
    for (std::string line; std::getline(in, line);)
        out << std::regex_replace(line, disabled, "$1") << "\n";
    return out.str();
}

const superd::ServiceConfig& named(const std::vector<superd::ServiceConfig>& services, const std::string& name)
{
    for (const auto& s : services)
        if (s.name == name)
            return s;
    FAIL("no service named " << name);
    throw std::logic_error("unreachable");
}

std::vector<std::string> addresses(const superd::ServiceConfig& s)
{
    std::vector<std::string> out;
    for (const auto& l : s.listen)
        out.push_back(l.address.to_string());
    return out;
}

} // namespace

TEST_CASE("Debian's openbsd-inetd.conf, enabled, becomes builtins", "[inetd_conf]")
{
    std::string text = enabled_debian_file();
    auto services = superd::parse_inetd_conf(text, "inetd.conf");
    INFO((services.ok() ? std::string() : services.error()));
    REQUIRE(services.ok());
    REQUIRE(services->size() == 6);

    const auto& echo = named(*services, "echo-tcp");
    CHECK(echo.builtin == find_builtin("echo"));
    CHECK(echo.protocol == Protocol::kTcp);
    CHECK(addresses(echo) == std::vector<std::string>{"0.0.0.0:7"});
    CHECK(echo.line == 17);

    const auto& discard_udp = named(*services, "discard-udp");
    CHECK(discard_udp.builtin == find_builtin("discard"));
    CHECK(discard_udp.protocol == Protocol::kUdp);
    CHECK(addresses(discard_udp) == std::vector<std::string>{"0.0.0.0:9"});

    CHECK(named(*services, "discard-tcp").builtin == find_builtin("discard"));
    CHECK(named(*services, "daytime-tcp").builtin == find_builtin("daytime"));
    CHECK(addresses(named(*services, "time-tcp")) == std::vector<std::string>{"0.0.0.0:37"});
    CHECK(addresses(named(*services, "chargen-tcp")) == std::vector<std::string>{"0.0.0.0:19"});
}

TEST_CASE("inetd.conf lines for programs, families, addresses and users", "[inetd_conf]")
{
    std::string text = "# our own lines\n"
                       "7007 stream tcp46 nowait nobody:nogroup /bin/cat cat -u\n"
                       "[::1]:finger stream tcp6 nowait.40 root /bin/true in.fingerd -w\n"
                       "127.0.0.1:\n"
                       "7008 dgram udp wait nobody.nogroup /bin/true\n"
                       "*:\n"
                       "/run/superd-test.sock stream unix nowait root /bin/cat\n";
    auto services = superd::parse_inetd_conf(text, "own.conf");
    INFO((services.ok() ? std::string() : services.error()));
    REQUIRE(services.ok());
    REQUIRE(services->size() == 4);

    const auto& cat = (*services)[0];
    CHECK(cat.name == "7007-tcp46");
    CHECK(addresses(cat) == std::vector<std::string>{"0.0.0.0:7007", "[::]:7007"});
    CHECK(cat.program == "/bin/cat");
    CHECK(cat.args == std::vector<std::string>{"cat", "-u"});
    CHECK(cat.mode == Mode::kNowait);
    REQUIRE(cat.identity);
    CHECK(cat.identity->user == "nobody");
    CHECK(cat.identity->uid == 65534);

    const auto& finger = (*services)[1];
    CHECK(finger.name == "finger-tcp6");
    CHECK(addresses(finger) == std::vector<std::string>{"[::1]:79"});
    REQUIRE(finger.rate);
    CHECK(*finger.rate == Approx(40 / 60.0)); // nowait.40: 40 spawns a minute
    CHECK(finger.burst == Approx(40));
    CHECK(finger.args == std::vector<std::string>{"in.fingerd", "-w"});

    const auto& udp = (*services)[2];
    CHECK(udp.protocol == Protocol::kUdp);
    CHECK(udp.mode == Mode::kWait);
    CHECK(addresses(udp) == std::vector<std::string>{"127.0.0.1:7008"}); // the "127.0.0.1:" default
    CHECK(udp.args == std::vector<std::string>{"true"});

    const auto& unix_socket = (*services)[3];
    CHECK(unix_socket.protocol == Protocol::kUnix);
    CHECK(addresses(unix_socket) == std::vector<std::string>{"unix:/run/superd-test.sock"});
}

TEST_CASE("inetd.conf errors name the line", "[inetd_conf]")
{
    auto error_of = [](const std::string& line) {
        auto services = superd::parse_inetd_conf("# comment\n\n" + line + "\n", "bad.conf");
        REQUIRE_FALSE(services.ok());
        CHECK_THAT(services.error(), Catch::StartsWith("bad.conf:3: "));
        return services.error();
    };
    CHECK_THAT(error_of("echo stream tcp nowait root"), Catch::Contains("expected: service socket-type"));
    CHECK_THAT(error_of("echo stream sctp nowait root internal"), Catch::Contains("unknown protocol 'sctp'"));
    CHECK_THAT(error_of("echo dgram tcp nowait root internal"), Catch::Contains("does not go with"));
    CHECK_THAT(error_of("echo raw tcp nowait root internal"), Catch::Contains("not supported"));
    CHECK_THAT(error_of("nosuchservice stream tcp nowait root internal"), Catch::Contains("unknown service"));
    CHECK_THAT(error_of("finger stream tcp nowait root internal"), Catch::Contains("no internal service 'finger'"));
    CHECK_THAT(error_of("7 stream tcp sometimes root internal"), Catch::Contains("expected wait or nowait"));
    CHECK_THAT(error_of("7 stream tcp nowait.x root internal"), Catch::Contains("whole number"));
    CHECK_THAT(error_of("7 stream tcp nowait/5/2 root internal"), Catch::Contains("FreeBSD"));
    CHECK_THAT(error_of("7007 dgram udp nowait root /bin/true"), Catch::Contains("must be 'wait'"));
    CHECK_THAT(error_of("7007 stream tcp nowait root bin/true"), Catch::Contains("absolute path"));
    CHECK_THAT(error_of("7007 stream tcp nowait root /nonexistent"), Catch::Contains("No such file"));
    CHECK_THAT(error_of("7007 stream tcp nowait nosuchuser /bin/true"), Catch::Contains("unknown user"));
    CHECK_THAT(error_of("[::1]:7007 stream tcp nowait root /bin/true"), Catch::Contains("does not fit"));
    CHECK_THAT(error_of("sunrpc/1 stream rpc/tcp wait root /bin/true"), Catch::Contains("RPC"));
}

TEST_CASE("inetd.conf numbers too large are errors at their line", "[inetd_conf]")
{
    for (std::string wait : {"nowait.99999999999999999999", "nowait.4294967296", "nowait.1000001"}) {
        auto services = superd::parse_inetd_conf("echo stream tcp " + wait + " root internal\n", "big.conf");
        REQUIRE_FALSE(services.ok());
        CHECK(services.error() == "big.conf:1: '" + wait + "': the number after the dot must be between 1 and 1000000");
    }
    auto most = superd::parse_inetd_conf("echo stream tcp nowait.1000000 root internal\n", "big.conf");
    REQUIRE(most.ok());
    CHECK((*most)[0].burst == 1000000);
    // A port past 65535 is no port: the name lookup fails, as for any name.
    auto port = superd::parse_inetd_conf("99999999999999999999 stream tcp nowait root internal\n", "big.conf");
    REQUIRE_FALSE(port.ok());
    CHECK_THAT(port.error(), Catch::StartsWith("big.conf:1: unknown service"));
}

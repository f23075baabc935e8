#include "superd/config.h"
#include "superd/config_keys.h"

#include "superd/builtin_kind.h"
#include "tests/config_fixture.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

using harness::TempDir;
using superd::UniqueFd;

namespace {

using Fixture = ConfigFixture;

} // namespace

TEST_CASE("A valid file gives services in file order", "[config]")
{
    Fixture f;
    auto config = f.load(R"(# two services
[service.zeta]
listen = ["127.0.0.1:7007", "[::1]:7007"]
program = "prog"
args = ["zeta", "-v"]

[service.alpha]
listen = "7008"
program = ")" + (f.dir.path() / "prog").string()
                         + R"("
)");
    REQUIRE(config.ok());
    REQUIRE(config->services.size() == 2);

    const auto& zeta = config->services[0];
    CHECK(zeta.name == "zeta");
    CHECK(zeta.line == 2);
    REQUIRE(zeta.listen.size() == 2);
    CHECK(zeta.listen[0].address.to_string() == "127.0.0.1:7007");
    CHECK(zeta.listen[1].address.to_string() == "[::1]:7007");
    CHECK(zeta.listen[0].line == 3);
    CHECK(zeta.program == (f.dir.path() / "prog").string());
    CHECK(zeta.args == std::vector<std::string>{"zeta", "-v"});

    const auto& alpha = config->services[1];
    CHECK(alpha.name == "alpha");
    REQUIRE(alpha.listen.size() == 2); // "PORT": both families
    CHECK(alpha.listen[0].address.to_string() == "0.0.0.0:7008");
    CHECK(alpha.listen[1].address.to_string() == "[::]:7008");
    CHECK(alpha.args == std::vector<std::string>{"prog"}); // default argv[0]: the basename

    CHECK(config->listener_count() == 4);
}

TEST_CASE("Relative programs resolve against the config file's folder", "[config]")
{
    Fixture f;
    auto config = f.load("[service.a]\nlisten = [\"127.0.0.1:1\"]\nprogram = \"sub/../prog\"\n");
    REQUIRE(config.ok());
    CHECK(config->services[0].program == (f.dir.path() / "prog").string());
}

TEST_CASE("Config errors name the file and the line", "[config]")
{
    Fixture f;
    const std::string ok_service = "[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n";

    SECTION("an empty file")
    {
        CHECK_THAT(f.error_at("", 1), Catch::Contains("no services defined"));
        CHECK_THAT(f.error_at("# only a comment\n", 1), Catch::Contains("no services defined"));
    }
    SECTION("TOML syntax") { CHECK_THAT(f.error_at(ok_service + "\n[service.b\n", 5), Catch::Contains("]")); }
    SECTION("an unknown top-level key")
    {
        CHECK_THAT(f.error_at(ok_service + "servce = 1\n", 4), Catch::Contains("unknown key 'servce'"));
    }
    SECTION("an unknown service key")
    {
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\nprogam = \"x\"\n", 4),
                   Catch::Contains("service 'a': unknown key 'progam'"));
    }
    SECTION("a service that is not a table")
    {
        CHECK_THAT(f.error_at("[service]\na = 5\n", 2), Catch::Contains("service.a must be a table"));
    }
    SECTION("a bad service name")
    {
        CHECK_THAT(f.error_at("[service.\"a b\"]\nlisten = [\"1\"]\nprogram = \"prog\"\n", 1),
                   Catch::Contains("service name 'a b'"));
    }
    SECTION("missing keys point at the service's table")
    {
        CHECK_THAT(f.error_at(ok_service + "\n[service.b]\nprogram = \"prog\"\n", 5),
                   Catch::Contains("service 'b': missing key 'listen'"));
        CHECK_THAT(f.error_at(ok_service + "\n[service.b]\nlisten = [\"127.0.0.1:7001\"]\n", 5),
                   Catch::Contains("service 'b': missing key 'program'"));
    }
    SECTION("wrong types")
    {
        CHECK_THAT(f.error_at("[service.a]\nlisten = 7000\nprogram = \"prog\"\n", 2),
                   Catch::Contains("listen must be a list of strings"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\n  \"127.0.0.1:1\",\n  2,\n]\nprogram = \"prog\"\n", 4),
                   Catch::Contains("listen must be a list of strings"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:1\"]\nprogram = 3\n", 3),
                   Catch::Contains("program must be a non-empty string"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:1\"]\nprogram = \"prog\"\nargs = \"x\"\n", 4),
                   Catch::Contains("args"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:1\"]\nprogram = \"prog\"\nargs = [1]\n", 4),
                   Catch::Contains("args must be a list of strings"));
    }
    SECTION("empty lists")
    {
        CHECK_THAT(f.error_at("[service.a]\nlisten = []\nprogram = \"prog\"\n", 2), Catch::Contains("listen is empty"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"1\"]\nprogram = \"prog\"\nargs = []\n", 4),
                   Catch::Contains("args is empty"));
    }
    SECTION("a malformed address, on its own line")
    {
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\n  \"127.0.0.1:1\",\n  \"::1:80\",\n]\nprogram = \"prog\"\n", 4),
                   Catch::Contains("in brackets"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:99999\"]\nprogram = \"prog\"\n", 2),
                   Catch::Contains("out of range"));
    }
    SECTION("programs that cannot run")
    {
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"1\"]\nprogram = \"missing\"\n", 3),
                   Catch::Contains("No such file or directory"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"1\"]\nprogram = \"plain\"\n", 3),
                   Catch::Contains("is not executable"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"1\"]\nprogram = \"sub\"\n", 3),
                   Catch::Contains("is not a regular file"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"1\"]\nprogram = \"\"\n", 3),
                   Catch::Contains("non-empty string"));
    }
    SECTION("a port used twice")
    {
        // The later use is the error, and it names the earlier one.
        std::string e = f.error_at(ok_service + "[service.b]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n", 5);
        CHECK_THAT(e, Catch::Contains("service 'b': 127.0.0.1:7000 is already used by service 'a'"));
        CHECK_THAT(e, Catch::Contains("(127.0.0.1:7000 at " + f.path + ":2)"));
        // A wildcard clashes with any address of its family on that port...
        CHECK_THAT(f.error_at(ok_service + "[service.b]\nlisten = [\"7000\"]\nprogram = \"prog\"\n", 5),
                   Catch::Contains("already used by service 'a'"));
        // ...also within one service, and so does an address listed twice.
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"[::1]:7000\", \"7000\"]\nprogram = \"prog\"\n", 2),
                   Catch::Contains("already used by service 'a'"));
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"7000\", \"7000\"]\nprogram = \"prog\"\n", 2),
                   Catch::Contains("already used by service 'a'"));
    }
}

TEST_CASE("Distinct addresses on one port do not clash", "[config]")
{
    Fixture f;
    auto config = f.load("[service.a]\nlisten = [\"127.0.0.1:7000\", \"[::1]:7000\"]\nprogram = \"prog\"\n"
                         "[service.b]\nlisten = [\"127.0.0.2:7000\"]\nprogram = \"prog\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    CHECK(config.ok());
}

TEST_CASE("Keys nested deeper than any real config are refused, not a crash", "[config]")
{
    // toml++ 3.3 overflows its stack on keys like these.
    Fixture f;
    std::string deep(50000 * 2, '.');
    for (size_t i = 0; i < deep.size(); i += 2)
        deep[i] = 'x';
    deep.back() = 'x';
    CHECK_THAT(f.error_at("# fine\n" + deep + " = 1\n", 2), Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at("[" + deep + "]\n", 1), Catch::Contains("nested more than 64 levels"));
    // Dots inside strings and comments are text.
    std::string dots(1000, '.');
    auto config = f.load("# " + dots
                         + "\n[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n"
                           "args = [\""
                         + dots + "\", '" + dots + "', \"\"\"\n" + dots + "\"\"\"]\n");
    INFO((config.ok() ? std::string() : config.error()));
    CHECK(config.ok());
}

TEST_CASE("An unreadable file is reported with its name", "[config]")
{
    auto config = superd::load_config("/nonexistent/superd.toml");
    REQUIRE_FALSE(config.ok());
    CHECK(config.error() == "/nonexistent/superd.toml: cannot read: No such file or directory");
}

TEST_CASE("Service kinds: protocol, mode, builtins", "[config]")
{
    Fixture f;
    auto config = f.load(R"([service.echo]
listen = ["127.0.0.1:7", "[::1]:7"]
builtin = "echo"

[service.echo-udp]
protocol = "udp"
listen = ["127.0.0.1:7"]
builtin = "echo"

[service.tftp]
protocol = "udp"
listen = ["127.0.0.1:69"]
mode = "wait"
program = "prog"

[service.socket]
protocol = "unix"
listen = ["unix:sub/x.sock"]
program = "prog"
socket_mode = "0660"
socket_group = "0"
fd_convention = "systemd"
)");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    REQUIRE(config->services.size() == 4);
    CHECK(config->services[0].builtin == superd::find_builtin("echo"));
    CHECK(config->services[1].protocol == superd::Protocol::kUdp); // TCP and UDP share port 7
    CHECK(config->services[2].mode == superd::Mode::kWait);
    const auto& socket = config->services[3];
    CHECK(socket.listen[0].address.path() == (f.dir.path() / "sub/x.sock").string());
    CHECK(socket.socket_mode == 0660u);
    CHECK(socket.socket_gid == 0u);
    CHECK(socket.fd_convention == superd::FdConvention::kSystemd);
    CHECK(socket.stderr_target == superd::StderrTarget::kLog); // the systemd convention's default
}

TEST_CASE("A spawned service's environment, identity and process settings", "[config]")
{
    Fixture f;
    ::setenv("SUPERD_TEST_PASSED", "from the daemon", 1);
    ::unsetenv("SUPERD_TEST_MISSING");
    auto config = f.load(R"([service.a]
listen = ["127.0.0.1:7000"]
program = "prog"
env = { TZ = "UTC", GREETING = "hello world" }
pass_env = ["SUPERD_TEST_PASSED", "SUPERD_TEST_MISSING"]
stderr = "null"
cwd = "sub"
umask = "027"
nice = 5

[service.b]
listen = ["127.0.0.1:7001"]
program = "prog"
env = { PATH = "/opt/bin" }
umask = 0o077
)");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    const auto& a = config->services[0];
    CHECK(a.env
          == std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                      "GREETING=hello world", "TZ=UTC", "SUPERD_TEST_PASSED=from the daemon"});
    CHECK(a.stderr_target == superd::StderrTarget::kNull);
    CHECK(a.cwd == (f.dir.path() / "sub").string());
    CHECK(a.umask == 027u);
    CHECK(a.nice == 5);
    const auto& b = config->services[1];
    CHECK(b.env == std::vector<std::string>{"PATH=/opt/bin"});
    CHECK(b.umask == 077u);
    CHECK(b.stderr_target == superd::StderrTarget::kSocket);
}

TEST_CASE("Errors in service kinds and settings name their line", "[config]")
{
    Fixture f;
    const std::string head = "[service.a]\nlisten = [\"127.0.0.1:7000\"]\n"; // lines 1-2
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nprotocol = \"sctp\"\n", 4),
               Catch::Contains("protocol must be one of \"tcp\", \"udp\", \"unix\""));
    CHECK_THAT(f.error_at("[service.a]\nprotocol = \"unix\"\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n", 3),
               Catch::Contains("does not fit protocol \"unix\""));
    CHECK_THAT(f.error_at("[service.a]\nlisten = [\"unix:/tmp/x\"]\nprogram = \"prog\"\n", 2),
               Catch::Contains("does not fit protocol \"tcp\""));
    CHECK_THAT(f.error_at("[service.a]\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n", 1),
               Catch::Contains("mode = \"wait\""));
    CHECK_THAT(f.error_at(head + "builtin = \"qotd\"\n", 3), Catch::Contains("builtin must be one of"));
    CHECK_THAT(f.error_at(head + "builtin = \"echo\"\nprogram = \"prog\"\n", 4),
               Catch::Contains("program does not apply to a builtin"));
    CHECK_THAT(f.error_at(head + "builtin = \"echo\"\nuser = \"nobody\"\n", 4),
               Catch::Contains("user does not apply to a builtin"));
    CHECK_THAT(f.error_at(head, 1), Catch::Contains("missing key 'program' (or 'builtin')"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nmode = \"sometimes\"\n", 4), Catch::Contains("mode must be"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nuser = \"no-such-user-xyz\"\n", 4),
               Catch::Contains("unknown user"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nenv = { REMOTE_ADDR = \"x\" }\n", 4),
               Catch::Contains("REMOTE_ADDR is set by superd"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nenv = { \"A-B\" = \"x\" }\n", 4),
               Catch::Contains("not a valid environment variable name"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nenv = [\"A=b\"]\n", 4), Catch::Contains("env must be a table"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nstderr = \"file\"\n", 4), Catch::Contains("stderr must be"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\ncwd = \"prog\"\n", 4), Catch::Contains("is not a directory"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\numask = \"999\"\n", 4), Catch::Contains("octal mode"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nnice = 40\n", 4), Catch::Contains("between -20 and 19"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nsocket_mode = \"0600\"\n", 4),
               Catch::Contains("socket_mode is for unix sockets"));
}

TEST_CASE("Includes add services from drop-in files", "[config]")
{
    Fixture f;
    f.dir.write("superd.d/10-a.toml", "[service.a]\nlisten = [\"127.0.0.1:7001\"]\nprogram = \"../prog\"\n");
    f.dir.write("superd.d/20-b.toml", "[service.b]\nlisten = [\"127.0.0.1:7002\"]\nprogram = \"../prog\"\n");
    f.dir.write("superd.d/ignored.txt", "not toml");
    auto config = f.load("[superd]\ninclude = [\"superd.d/*.toml\", \"empty.d/*.toml\"]\n\n"
                         "[service.main]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    REQUIRE(config->services.size() == 3);
    CHECK(config->services[0].name == "main");
    CHECK(config->services[1].name == "a");
    CHECK(config->services[1].file == (f.dir.path() / "superd.d/10-a.toml").string());
    CHECK(config->services[1].program == (f.dir.path() / "prog").string()); // relative to the included file
    CHECK(config->services[2].name == "b");
    CHECK(config->files.size() == 3);
}

TEST_CASE("Clashes across files name both files", "[config]")
{
    Fixture f;
    std::string a =
        f.dir.write("superd.d/a.toml", "[service.x]\nlisten = [\"127.0.0.1:7001\"]\nprogram = \"../prog\"\n");
    std::string b =
        f.dir.write("superd.d/b.toml", "\n[service.x]\nlisten = [\"127.0.0.1:7002\"]\nprogram = \"../prog\"\n");
    auto config = f.load("[superd]\ninclude = [\"superd.d/*.toml\"]\n");
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::StartsWith(b + ":2: service 'x' is already defined at " + a + ":1"));

    f.dir.write("superd.d/b.toml", "[service.y]\nlisten = [\"127.0.0.1:7001\"]\nprogram = \"../prog\"\n");
    config = f.load("[superd]\ninclude = [\"superd.d/*.toml\"]\n");
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::StartsWith(b + ":2: service 'y': 127.0.0.1:7001 is already used by service 'x'")
                                   && Catch::Contains(a + ":2"));

    f.dir.write("superd.d/b.toml", "[superd]\ninclude = []\n");
    config = f.load("[superd]\ninclude = [\"superd.d/*.toml\"]\n");
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::StartsWith(b + ":1: [superd] belongs in the main config file"));

    config = f.load("[superd]\nincludes = [\"x\"]\n");
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::Contains(":2: [superd]: unknown key 'includes'"));
}

TEST_CASE("inetd_conf in [superd] adds the services of an inetd.conf", "[config]")
{
    Fixture f;
    f.dir.write("inetd.conf", "# classic\n17007 stream tcp nowait root internal\n");
    auto bad = f.load("[superd]\ninetd_conf = \"inetd.conf\"\n");
    REQUIRE_FALSE(bad.ok()); // 17007 has no internal service
    CHECK_THAT(bad.error(), Catch::Contains("inetd.conf:2: there is no internal service '17007'"));

    f.dir.write("inetd.conf", "# classic\necho stream tcp nowait root internal\n");
    auto config = f.load("[superd]\ninetd_conf = \"inetd.conf\"\n\n"
                         "[service.own]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    REQUIRE(config->services.size() == 2);
    CHECK(config->services[1].name == "echo-tcp");
    CHECK(config->services[1].builtin == superd::find_builtin("echo"));
}

TEST_CASE("Limits, access lists, timeouts and resource limits", "[config]")
{
    Fixture f;
    auto config = f.load(R"([superd]
max_children = 500

[service.a]
listen = ["127.0.0.1:7000"]
program = "prog"
max_instances = 10
on_limit = "reject"
busy_message = "busy\r\n"
max_per_source = 3
source_prefix_v6 = 56
rate = "300/m"
rate_per_source = "2/s"
burst_per_source = 4
allow = ["10.0.0.0/8", "::1"]
deny = ["10.1.0.0/16"]
backlog = 64
timeout = "1500ms"
kill_grace = 5
rlimit_nofile = 256
rlimit_as = "512M"
rlimit_core = "unlimited"

[service.b]
listen = ["127.0.0.1:7001"]
builtin = "chargen"
max_instances = 2
)");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    CHECK(config->max_children == 500u);
    const auto& a = config->services[0];
    CHECK(a.max_instances == 10u);
    CHECK(a.on_limit == superd::OnLimit::kReject);
    CHECK(a.busy_message == "busy\r\n");
    CHECK(a.max_per_source == 3u);
    CHECK(a.source_prefix_v4 == 32);
    CHECK(a.source_prefix_v6 == 56);
    CHECK(*a.rate == Approx(5));
    CHECK(a.burst == Approx(5)); // a second's worth
    CHECK(*a.rate_per_source == Approx(2));
    CHECK(a.burst_per_source == Approx(4));
    CHECK(a.access.allows(harness::socket_address("10.2.3.4", 1)));
    CHECK_FALSE(a.access.allows(harness::socket_address("10.1.3.4", 1)));
    CHECK(a.backlog == 64);
    CHECK(a.timeout == std::chrono::milliseconds(1500));
    CHECK(a.kill_grace == std::chrono::milliseconds(5000));
    REQUIRE(a.rlimits.size() == 3);
    CHECK(a.rlimits[0].resource == RLIMIT_NOFILE);
    CHECK(a.rlimits[0].value == 256u);
    CHECK(a.rlimits[1].value == 512u << 20);
    CHECK(a.rlimits[2].value == RLIM_INFINITY);
    CHECK(config->services[1].max_instances == 2u); // builtins take limits too
}

TEST_CASE("Errors in limits name their line", "[config]")
{
    Fixture f;
    const std::string head = "[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n"; // lines 1-3
    CHECK_THAT(f.error_at(head + "max_instances = 0\n", 4), Catch::Contains("between 1 and"));
    CHECK_THAT(f.error_at(head + "on_limit = \"drop\"\n", 4), Catch::Contains("on_limit must be one of"));
    CHECK_THAT(f.error_at(head + "busy_message = \"x\"\n", 4), Catch::Contains("goes with on_limit = \"reject\""));
    CHECK_THAT(f.error_at(head + "source_prefix_v4 = 33\n", 4), Catch::Contains("between 0 and 32"));
    CHECK_THAT(f.error_at(head + "rate = \"fast\"\n", 4), Catch::Contains("not a rate"));
    CHECK_THAT(f.error_at(head + "burst = 5\n", 4), Catch::Contains("burst goes with rate"));
    CHECK_THAT(f.error_at(head + "allow = [\"10.0.0.0/40\"]\n", 4), Catch::Contains("0 to 32"));
    CHECK_THAT(f.error_at(head + "deny = [\"example.com\"]\n", 4), Catch::Contains("not an address"));
    CHECK_THAT(f.error_at(head + "timeout = \"soon\"\n", 4), Catch::Contains("must be a duration"));
    CHECK_THAT(f.error_at(head + "timeout = \"0s\"\n", 4), Catch::Contains("must be a duration"));
    CHECK_THAT(f.error_at(head + "rlimit_nofile = \"64K\"\n", 4), Catch::Contains("whole number or"));
    CHECK_THAT(f.error_at(head + "rlimit_as = \"lots\"\n", 4), Catch::Contains("of bytes"));
    CHECK_THAT(
        f.error_at("[service.a]\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\nbacklog = 5\n",
                   5),
        Catch::Contains("backlog is for stream sockets"));
    CHECK_THAT(f.error_at(head + "mode = \"wait\"\nallow = [\"::1\"]\n", 5),
               Catch::Contains("does not apply to mode = \"wait\""));
    CHECK_THAT(f.error_at("[service.a]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\ntimeout = \"1s\"\n", 4),
               Catch::Contains("timeout does not apply to a builtin"));
    CHECK_THAT(f.error_at("[superd]\nmax_children = 0\n" + head, 2), Catch::Contains("max_children must be"));
}

namespace {

// What load_config says about `path`, run in a child process so that a load
// that blocks (an open() waiting for a FIFO's writer) or dies (reading
// /dev/zero until std::bad_alloc) fails the test within seconds instead of
// hanging or ending the suite.
std::string bounded_load_error(const std::string& path)
{
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
#if !defined(SUPERD_SANITIZED)
        // Without the fix, /dev/zero would take all the memory it could get.
        // (ASan's shadow memory alone is far more than any such limit.)
        rlimit memory{1ul << 30, 1ul << 30};
        ::setrlimit(RLIMIT_AS, &memory);
#endif
        auto config = superd::load_config(path);
        std::string said = config.ok() ? "ok" : "error: " + config.error();
        ssize_t ignored = ::write(out[1], said.data(), said.size());
        (void)ignored;
        ::_exit(0);
    }
    ::close(out[1]);
    UniqueFd reader(out[0]);
    std::string said;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        pollfd p{reader.get(), POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            harness::kill_and_reap(pid);
            FAIL("load_config(" << path << ") did not return within 5 s");
        }
        char chunk[4096];
        ssize_t n = ::read(reader.get(), chunk, sizeof chunk);
        if (n <= 0)
            break;
        said.append(chunk, static_cast<size_t>(n));
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    INFO("load_config(" << path << ") said: " << said);
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0)); // not killed by an exception
    return said;
}

const std::string kService = "[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n";

} // namespace

TEST_CASE("A config file that is not a regular file or is too large is refused at once", "[config]")
{
    Fixture f;
    std::string fifo = (f.dir.path() / "fifo.toml").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    CHECK(bounded_load_error(fifo) == "error: " + fifo + ": not a regular file (a FIFO)");

    // As drop-ins, each is named at the include line.
    f.dir.write("superd.toml", "[superd]\ninclude = [\"superd.d/*.toml\"]\n" + kService);
    f.dir.write("superd.d/.keep", "");
    std::string dropin = (f.dir.path() / "superd.d/zz.toml").string();
    REQUIRE(::mkfifo(dropin.c_str(), 0644) == 0);
    CHECK(bounded_load_error(f.path) == "error: " + f.path + ":2: " + dropin + ": not a regular file (a FIFO)");
    ::unlink(dropin.c_str());

    REQUIRE(::symlink("/dev/zero", dropin.c_str()) == 0);
    CHECK(bounded_load_error(f.path)
          == "error: " + f.path + ":2: " + dropin + ": not a regular file (a character device)");
    ::unlink(dropin.c_str());

    std::filesystem::create_directory(dropin);
    CHECK(bounded_load_error(f.path) == "error: " + f.path + ":2: " + dropin + ": not a regular file (a directory)");
    std::filesystem::remove(dropin);

    // 17 MiB, sparse: refused by its size before a byte is read.
    {
        UniqueFd big(::open(dropin.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        REQUIRE(big);
        REQUIRE(::ftruncate(big.get(), 17 << 20) == 0);
    }
    CHECK(bounded_load_error(f.path) == "error: " + f.path + ":2: " + dropin + ": larger than 16 MiB");
    std::filesystem::remove(dropin);

    // And the main file as a link to a device.
    std::string zero = (f.dir.path() / "zero.toml").string();
    REQUIRE(::symlink("/dev/zero", zero.c_str()) == 0);
    CHECK(bounded_load_error(zero) == "error: " + zero + ": not a regular file (a character device)");
}

TEST_CASE("An inetd.conf that is a FIFO is refused at once, at the line that names it", "[config]")
{
    Fixture f;
    std::string fifo = (f.dir.path() / "inetd.conf").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    f.dir.write("superd.toml", kService + "\n[superd]\ninetd_conf = \"inetd.conf\"\n");
    CHECK(bounded_load_error(f.path) == "error: " + f.path + ":6: " + fifo + ": not a regular file (a FIFO)");
}

TEST_CASE("As root, files, folders and programs others could change are refused", "[config]")
{
    if (::geteuid() != 0) {
        WARN("not run: the checks apply only when superd runs as root");
        return;
    }
    Fixture f; // a 0700 folder of root's in /tmp, which is sticky
    REQUIRE(f.load(kService).ok());
    const std::string& main = f.path;
    const std::string prog = (f.dir.path() / "prog").string();
    auto refused = [&](const std::string& expected_start, const std::string& expected) {
        auto config = superd::load_config(main);
        REQUIRE_FALSE(config.ok());
        CHECK_THAT(config.error(), Catch::StartsWith(expected_start) && Catch::Contains(expected));
    };
    auto nobody = [](const std::string& path) { REQUIRE(::chown(path.c_str(), 65534, 65534) == 0); };

    SECTION("the main file, writable by others or not root's")
    {
        ::chmod(main.c_str(), 0646);
        refused(main + ": refusing " + main + ": mode 0646, owner root:root: writable by others (superd runs as root)",
                "");
        ::chmod(main.c_str(), 0664);
        refused(main + ": refusing " + main, "writable by group root");
        ::chmod(main.c_str(), 0644);
        nobody(main);
        refused(main + ": refusing " + main + ": mode 0644, owner nobody:", "not owned by root");
    }
    SECTION("a folder above the main file")
    {
        ::chmod(f.dir.path().c_str(), 0777);
        refused(main + ": refusing " + f.dir.path().string() + ": mode 0777, owner root:root", "writable by others");
        ::chmod(f.dir.path().c_str(), 01777); // sticky: others cannot replace root's files
        CHECK(superd::load_config(main).ok());
    }
    SECTION("an include folder, even an empty one, and a drop-in")
    {
        f.dir.write("superd.toml", "[superd]\ninclude = [\"superd.d/*.toml\"]\n" + kService);
        std::filesystem::create_directory(f.dir.path() / "superd.d");
        std::string folder = (f.dir.path() / "superd.d").string();
        ::chmod(folder.c_str(), 0777);
        refused(main + ":2: include '" + folder + "/*.toml': refusing " + folder + ": mode 0777", "writable by others");
        ::chmod(folder.c_str(), 0755);
        nobody(folder);
        refused(main + ":2: include", "not owned by root");
        REQUIRE(::chown(folder.c_str(), 0, 0) == 0);

        std::string dropin =
            f.dir.write("superd.d/b.toml", "[service.b]\nlisten = [\"127.0.0.1:7001\"]\nbuiltin = \"echo\"\n");
        REQUIRE(superd::load_config(main).ok());
        ::chmod(dropin.c_str(), 0666);
        refused(main + ":2: " + dropin + ": refusing " + dropin + ": mode 0666",
                "writable by group root and writable by others");
        ::chmod(dropin.c_str(), 0644);

        // A link in a good folder to a file in a bad one: the file's folder counts.
        TempDir elsewhere;
        std::string target =
            elsewhere.write("b.toml", "[service.b]\nlisten = [\"127.0.0.1:7001\"]\nbuiltin = \"echo\"\n");
        std::filesystem::remove(dropin);
        std::filesystem::create_symlink(target, dropin);
        REQUIRE(superd::load_config(main).ok());
        ::chmod(elsewhere.path().c_str(), 0777);
        refused(main + ":2: " + dropin + ": refusing " + elsewhere.path().string() + ": mode 0777", "");
    }
    SECTION("an inetd.conf")
    {
        std::string inetd = f.dir.write("inetd.conf", "echo stream tcp nowait root internal\n");
        f.dir.write("superd.toml", "[superd]\ninetd_conf = \"inetd.conf\"\n");
        REQUIRE(superd::load_config(main).ok());
        ::chmod(inetd.c_str(), 0666);
        refused(main + ":2: " + inetd + ": refusing " + inetd + ": mode 0666", "writable by others");
    }
    SECTION("programs: writable by others, not root's, in a folder others may write, set-user-ID")
    {
        ::chmod(prog.c_str(), 0757);
        refused(main + ":3: service 'a': program " + prog + ": refusing " + prog + ": mode 0757", "writable by others");
        ::chmod(prog.c_str(), 0755);
        nobody(prog);
        refused(main + ":3: service 'a': program " + prog + ": refusing " + prog, "not owned by root");
        REQUIRE(::chown(prog.c_str(), 0, 0) == 0);
        std::string sub = (f.dir.path() / "sub").string(), in_sub = f.dir.write("sub/prog", "#!/bin/sh\n");
        ::chmod(in_sub.c_str(), 0755);
        ::chmod(sub.c_str(), 0757);
        f.dir.write("superd.toml", "[service.a]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"sub/prog\"\n");
        refused(main + ":3: service 'a': program " + in_sub + ": refusing " + sub + ": mode 0757",
                "writable by others");
        ::chmod(sub.c_str(), 0755);
        f.dir.write("superd.toml", kService);

        ::chmod(prog.c_str(), 04755);
        refused(main + ":3: service 'a': program " + prog + " is set-user-ID or set-group-ID (mode 4755)",
                "allow_setuid = true");
        ::chmod(prog.c_str(), 02755);
        refused(main + ":3: service 'a': program " + prog + " is set-user-ID", "");
        auto allowed = f.load(kService + "allow_setuid = true\n");
        INFO((allowed.ok() ? std::string() : allowed.error()));
        REQUIRE(allowed.ok());
        CHECK(allowed->services[0].allow_setuid);
    }
    SECTION("programs on inetd.conf lines")
    {
        std::string inetd = f.dir.write("inetd.conf", "# programs\n7007 stream tcp nowait root " + prog + "\n");
        f.dir.write("superd.toml", "[superd]\ninetd_conf = \"inetd.conf\"\n");
        REQUIRE(superd::load_config(main).ok());
        ::chmod(prog.c_str(), 0777);
        refused(inetd + ":2: program " + prog + ": refusing " + prog + ": mode 0777", "writable by others");
        ::chmod(prog.c_str(), 04755);
        refused(inetd + ":2: program " + prog + " is set-user-ID", "");
    }
}

TEST_CASE("allow_setuid is for programs, allow_amplification for the builtins that amplify", "[config]")
{
    Fixture f;
    const std::string head = "[service.a]\nlisten = [\"127.0.0.1:7000\"]\n"; // lines 1-2
    auto config = f.load(head + "protocol = \"udp\"\nbuiltin = \"chargen\"\nallow_amplification = true\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    CHECK(config->services[0].allow_amplification);
    config = f.load(head + "builtin = \"chargen\"\n");
    REQUIRE(config.ok());
    CHECK_FALSE(config->services[0].allow_amplification);
    CHECK_FALSE(config->services[0].allow_setuid);

    CHECK_THAT(f.error_at(head + "program = \"prog\"\nallow_amplification = true\n", 4),
               Catch::Contains("service 'a': allow_amplification applies only to builtin = \"chargen\""));
    CHECK_THAT(f.error_at(head + "builtin = \"chargen\"\nallow_amplification = \"yes\"\n", 4),
               Catch::Contains("allow_amplification must be true or false"));
    // A builtin's own setting: echo never amplifies, so the key would be
    // silently meaningless there.
    CHECK_THAT(f.error_at(head + "builtin = \"echo\"\nallow_amplification = true\n", 4),
               Catch::Contains("service 'a': allow_amplification applies only to builtin = \"chargen\""));
    CHECK_THAT(f.error_at(head + "builtin = \"echo\"\nallow_setuid = true\n", 4),
               Catch::Contains("allow_setuid does not apply to a builtin"));
    CHECK_THAT(f.error_at(head + "program = \"prog\"\nallow_setuid = 1\n", 4),
               Catch::Contains("allow_setuid must be true or false"));
}

TEST_CASE("file takes a readable regular file, at its line", "[config]")
{
    Fixture f;
    const std::string head = "[service.motd]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"file\"\n"; // lines 1-3
    f.dir.write("motd", "hello\n");
    auto config = f.load(head + "path = \"motd\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    CHECK(config->services[0].file_path == (f.dir.path() / "motd").string());

    CHECK(f.error_at(head, 1) == "service 'motd': missing key 'path' (the file that builtin = \"file\" sends)");
    CHECK(f.error_at(head + "path = \"gone\"\n", 4)
          == "service 'motd': path: open " + (f.dir.path() / "gone").string() + ": No such file or directory");
    CHECK(f.error_at(head + "path = \"sub\"\n", 4)
          == "service 'motd': path: " + (f.dir.path() / "sub").string() + " is not a regular file");
    // A FIFO is refused without waiting for a writer.
    std::string fifo = (f.dir.path() / "fifo").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(f.error_at(head + "path = \"fifo\"\n", 4) == "service 'motd': path: " + fifo + " is not a regular file");
    // A setting of the file builtin's own, anywhere else.
    CHECK(f.error_at("[service.e]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\npath = \"motd\"\n", 4)
          == "service 'e': path applies only to builtin = \"file\"");
    CHECK(f.error_at("[service.p]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\npath = \"motd\"\n", 4)
          == "service 'p': path applies only to builtin = \"file\"");
    // A key where it does not apply says more than the key that is missing.
    CHECK(f.error_at(head + "forward_to = \"127.0.0.1:80\"\n", 4)
          == "service 'motd': forward_to applies only to builtin = \"forward\"");
}

TEST_CASE("tls is a table of a TCP or unix nowait service, each mistake at its line", "[config]")
{
    Fixture f;
    const std::string echo = "[service.e]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\n"; // lines 1-3
    CHECK(f.error_at(echo + "[service.e.tls]\nkey = \"k.pem\"\n", 4) == "service 'e': tls needs 'cert'");
    CHECK(f.error_at(echo + "[service.e.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nciphers = \"ALL\"\n", 7)
          == "service 'e': unknown key 'tls.ciphers'");
    CHECK(f.error_at(echo + "tls = \"on\"\n", 4)
          == "service 'e': tls must be a table: [service.e.tls] with cert and key");
    CHECK(f.error_at(echo + "[service.e.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nmin_version = \"1.1\"\n", 7)
          == "service 'e': tls.min_version must be one of \"1.2\", \"1.3\"");
    CHECK(f.error_at(echo + "[service.e.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nalpn = \"h2\"\n", 7)
          == "service 'e': tls.alpn must be a list of strings");
    // The files are read at load: one that is missing is named, relative
    // paths from the file's folder.
    CHECK_THAT(f.error_at(echo + "[service.e.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n", 4),
               Catch::StartsWith("service 'e': tls: " + (f.dir.path() / "c.pem").string() + ": "));
    // No TLS over UDP, and a wait service's program accepts its own.
    CHECK(f.error_at("[service.u]\nlisten = [\"127.0.0.1:7000\"]\nprotocol = \"udp\"\nbuiltin = \"echo\"\n"
                     "[service.u.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
                     5)
          == "service 'u': tls is for stream sockets (tcp, unix)");
    CHECK(f.error_at("[service.w]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\nmode = \"wait\"\n"
                     "[service.w.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
                     5)
          == "service 'w': tls does not apply to mode = \"wait\" (its program accepts the connections itself)");
}

TEST_CASE("proxy_protocol needs proxy_from, and each goes only with the other", "[config]")
{
    Fixture f;
    const std::string head = "[service.e]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\n"; // lines 1-3
    auto config = f.load(head
                         + "proxy_protocol = \"any\"\nproxy_from = [\"10.0.0.0/8\", \"::1\"]\n"
                           "proxy_timeout = \"2s\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    const superd::ServiceConfig& e = config->services[0];
    CHECK(e.proxy_protocol == superd::ProxyAccept::kAny);
    CHECK(e.proxy_from.size() == 2);
    CHECK(e.proxy_timeout == std::chrono::seconds(2));
    CHECK_FALSE(f.load(head)->services[0].proxy_protocol);

    CHECK_THAT(f.error_at(head + "proxy_protocol = \"v2\"\n", 4),
               Catch::StartsWith("service 'e': proxy_protocol needs proxy_from"));
    CHECK(f.error_at(head + "proxy_from = [\"10.0.0.1\"]\n", 4) == "service 'e': proxy_from goes with proxy_protocol");
    CHECK(f.error_at(head + "proxy_timeout = \"1s\"\n", 4) == "service 'e': proxy_timeout goes with proxy_protocol");
    CHECK_THAT(f.error_at(head + "proxy_protocol = \"v3\"\nproxy_from = [\"10.0.0.1\"]\n", 4),
               Catch::Contains("proxy_protocol must be one of"));
    CHECK_THAT(f.error_at(head + "proxy_protocol = \"v1\"\nproxy_from = [\"10.0.0.0/33\"]\n", 5),
               Catch::StartsWith("service 'e': proxy_from: "));
    CHECK(f.error_at(head + "proxy_protocol = \"v1\"\nproxy_from = \"10.0.0.1\"\nenv = { PROXY_ADDR = \"x\" }\n", 6)
          == "service 'e': env does not apply to a builtin (it runs inside superd)");
    CHECK(
        f.error_at("[service.p]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\nenv = { PROXY_PORT = \"1\" }\n", 4)
        == "service 'p': PROXY_PORT is set by superd for each connection");
}

TEST_CASE("forward takes a backend address, a timeout and a PROXY version", "[config]")
{
    Fixture f;
    const std::string head = "[service.web]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"forward\"\n"; // lines 1-3
    auto config = f.load(head + "forward_to = \"127.0.0.1:8080\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    const superd::ServiceConfig& web = config->services[0];
    CHECK(web.forward_to.to_string() == "127.0.0.1:8080");
    CHECK(web.connect_timeout == std::chrono::seconds(5));
    CHECK(web.send_proxy == superd::ProxyVersion::kNone);

    config = f.load(head + "forward_to = \"[::1]:8080\"\nconnect_timeout = \"250ms\"\nsend_proxy = \"v2\"\n");
    REQUIRE(config.ok());
    CHECK(config->services[0].forward_to.to_string() == "[::1]:8080");
    CHECK(config->services[0].connect_timeout == std::chrono::milliseconds(250));
    CHECK(config->services[0].send_proxy == superd::ProxyVersion::kV2);
    config = f.load(head + "forward_to = \"unix:sub/backend.sock\"\nsend_proxy = \"v1\"\n");
    REQUIRE(config.ok());
    CHECK(config->services[0].forward_to.to_string() == "unix:" + (f.dir.path() / "sub/backend.sock").string());
    CHECK(config->services[0].send_proxy == superd::ProxyVersion::kV1);

    CHECK(f.error_at(head, 1)
          == "service 'web': missing key 'forward_to' (where builtin = \"forward\" sends each connection)");
    CHECK(f.error_at(head + "forward_to = \"8080\"\n", 4)
          == "service 'web': forward_to '8080' needs an address too, e.g. \"127.0.0.1:8080\"");
    CHECK(f.error_at(head + "forward_to = \"0.0.0.0:8080\"\n", 4)
          == "service 'web': forward_to '0.0.0.0:8080' is a wildcard address: name the backend's own address");
    CHECK_THAT(f.error_at(head + "forward_to = \"example.com:80\"\n", 4),
               Catch::StartsWith("service 'web': forward_to "));
    CHECK_THAT(f.error_at(head + "forward_to = \"unix:\"\n", 4), Catch::StartsWith("service 'web': forward_to "));
    CHECK_THAT(f.error_at(head + "forward_to = \"127.0.0.1:8080\"\nsend_proxy = \"v3\"\n", 5),
               Catch::Contains("send_proxy must be one of"));
    CHECK_THAT(f.error_at(head + "forward_to = \"127.0.0.1:8080\"\nconnect_timeout = \"0s\"\n", 5),
               Catch::StartsWith("service 'web': connect_timeout"));
    CHECK(f.error_at("[service.w]\nlisten = [\"127.0.0.1:7000\"]\nprotocol = \"udp\"\nbuiltin = \"forward\"\n", 4)
          == "service 'w': builtin 'forward' serves TCP only");
    CHECK(f.error_at("[service.e]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\nsend_proxy = \"v1\"\n", 4)
          == "service 'e': send_proxy applies only to builtin = \"forward\"");
}

TEST_CASE("A forward into a forward listener of superd's own is refused: it would loop", "[config]")
{
    Fixture f;
    // Into itself, and into another forward through a wildcard listener.
    CHECK(f.error_at("[service.web]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"forward\"\n"
                     "forward_to = \"127.0.0.1:7000\"\n",
                     4)
          == "service 'web': forward_to 127.0.0.1:7000 is superd's own listener of service 'web', a forward too: "
             "each connection would forward to itself");
    CHECK_THAT(f.error_at("[service.a]\nlisten = [\"0.0.0.0:7001\"]\nbuiltin = \"forward\"\n"
                          "forward_to = \"127.0.0.1:7002\"\n"
                          "[service.b]\nlisten = [\"127.0.0.1:7002\"]\nbuiltin = \"forward\"\n"
                          "forward_to = \"127.0.0.1:7001\"\n",
                          4),
               Catch::StartsWith("service 'a': forward_to 127.0.0.1:7002 is superd's own listener of service 'b'"));
    // Into another kind of service of superd's own is a forward like any.
    auto config = f.load("[service.echo]\nlisten = [\"127.0.0.1:7003\"]\nbuiltin = \"echo\"\n"
                         "[service.web]\nlisten = [\"127.0.0.1:7004\"]\nbuiltin = \"forward\"\n"
                         "forward_to = \"127.0.0.1:7003\"\n");
    INFO((config.ok() ? std::string() : config.error()));
    CHECK(config.ok());
}

TEST_CASE("Resource limits and durations too large are errors, never wrapped around", "[config]")
{
    Fixture f;
    auto rlimit_of = [&](const std::string& line) {
        auto config = f.load(kService + line + "\n");
        INFO(line << ": " << (config.ok() ? std::string() : config.error()));
        REQUIRE(config.ok());
        REQUIRE(config->services[0].rlimits.size() == 1);
        return config->services[0].rlimits[0].value;
    };
    SECTION("a string of digits is a number")
    {
        CHECK(rlimit_of("rlimit_nofile = \"1024\"") == 1024u);
        CHECK(rlimit_of("rlimit_as = \"17179869183G\"") == 17179869183ull << 30);
        CHECK(rlimit_of("rlimit_as = \"18446744073709551614\"") == 18446744073709551614ull);
        CHECK(rlimit_of("rlimit_core = \"unlimited\"") == RLIM_INFINITY);
    }
    SECTION("a size past 64 bits is an error")
    {
        // 17179869184G is 2^64 bytes: it used to wrap to 0, and every child died.
        CHECK_THAT(f.error_at(kService + "rlimit_as = \"17179869184G\"\n", 4),
                   Catch::Contains("service 'a': rlimit_as \"17179869184G\" is too large"));
        CHECK_THAT(f.error_at(kService + "rlimit_core = \"18014398509481984K\"\n", 4), Catch::Contains("too large"));
        CHECK_THAT(f.error_at(kService + "rlimit_as = \"18446744073709551615\"\n", 4), Catch::Contains("too large"));
        CHECK_THAT(f.error_at(kService + "rlimit_nofile = \"99999999999999999999999\"\n", 4),
                   Catch::Contains("too large"));
        CHECK_THAT(f.error_at(kService + "rlimit_nofile = \"-1\"\n", 4), Catch::Contains("must be a whole number"));
        CHECK_THAT(f.error_at(kService + "rlimit_nofile = -1\n", 4), Catch::Contains("must be a whole number"));
    }
    auto timeout_of = [&](const std::string& line) {
        auto config = f.load(kService + line + "\n");
        INFO(line << ": " << (config.ok() ? std::string() : config.error()));
        REQUIRE(config.ok());
        return config->services[0].timeout->count();
    };
    SECTION("durations up to a year")
    {
        CHECK(timeout_of("timeout = \"8784h\"") == 8784LL * 3600 * 1000);
        CHECK(timeout_of("timeout = \"31622400000ms\"") == 31622400000LL);
        CHECK(timeout_of("timeout = 31622400") == 31622400000LL);
    }
    SECTION("durations past a year, some past 64 bits")
    {
        for (std::string too_long :
             {"\"8785h\"", "\"999999999h\"", "\"99999999999999999999999ms\"", "31622401", "9223372036854775807"}) {
            INFO(too_long);
            CHECK_THAT(f.error_at(kService + "timeout = " + too_long + "\n", 4),
                       Catch::Contains("timeout must be at most a year"));
            CHECK_THAT(f.error_at(kService + "kill_grace = " + too_long + "\n", 4),
                       Catch::Contains("kill_grace must be at most a year"));
        }
    }
}

TEST_CASE("A pattern that matches a file already read skips it, however it is named", "[config]")
{
    Fixture f;
    // Relative --config with "*.toml" beside it: the main file is not read
    // again (it used to be, and [superd] was "in an included file").
    f.dir.write("superd.toml", "[superd]\ninclude = [\"*.toml\", \"superd.d/*.toml\"]\n" + kService);
    f.dir.write("more.toml", "[service.b]\nlisten = [\"127.0.0.1:7001\"]\nbuiltin = \"echo\"\n");
    std::filesystem::create_directory(f.dir.path() / "superd.d");
    // A link to the main file among the drop-ins, and a second link to a drop-in.
    std::filesystem::create_symlink(f.path, f.dir.path() / "superd.d/main.toml");
    std::filesystem::create_symlink(f.dir.path() / "more.toml", f.dir.path() / "superd.d/more.toml");

    auto here = std::filesystem::current_path();
    std::filesystem::current_path(f.dir.path());
    auto config = superd::load_config("superd.toml");
    std::filesystem::current_path(here);
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    REQUIRE(config->services.size() == 2);
    CHECK(config->files == std::vector<std::string>{"superd.toml", (f.dir.path() / "more.toml").string()});

    auto absolute = superd::load_config(f.path);
    INFO((absolute.ok() ? std::string() : absolute.error()));
    REQUIRE(absolute.ok());
    CHECK(absolute->services.size() == 2);
}

TEST_CASE("Key depth counts a key's segments, not the dots of a line", "[config]")
{
    Fixture f;
    auto key = [](int segments) {
        std::string k = "a";
        for (int i = 1; i < segments; ++i)
            k += ".a";
        return k;
    };
    // Values hold dots too: floats, times, versions in strings.
    std::string floats = "[";
    for (int i = 0; i < 100; ++i)
        floats += (i ? ", " : "") + std::to_string(i) + ".5";
    floats += "]";
    std::string extra = "x = " + floats + "\ny = [\n  " + floats + ",\n  " + floats + "\n]\n" + "z = { p = " + floats
                        + ", q = { r = 1.5 } }\nt = 07:32:00.999999\n";
    auto config =
        superd::parse_config("[extra]\n" + extra + key(64) + " = 1\n[" + key(64) + "]\n[[b." + key(63) + "]]\n",
                             (f.dir.path() / "x.toml").string());
    // Parsed fine: the only complaint is about the unknown key.
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::Contains(": unknown key 'a' (expected [superd] or [service.NAME])"));

    CHECK_THAT(f.error_at(kService + key(65) + " = 1\n", 4), Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at(kService + "[" + key(65) + "]\n", 4), Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at(kService + "[[" + key(65) + "]]\n", 4), Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at(kService + "x = " + floats + "\ny = { a = 1.5, " + key(65) + " = 1 }\n", 5),
               Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at(kService + "y = [\n{ " + key(65) + " = 1 }]\n", 5),
               Catch::Contains("nested more than 64 levels"));
    CHECK_THAT(f.error_at(kService + "x = {}\n" + key(65) + " = 1\n", 5),
               Catch::Contains("nested more than 64 levels"));
}

TEST_CASE("Twenty thousand services load, and clashes are still found among them", "[config]")
{
    Fixture f;
    std::string text;
    for (int i = 0; i < 20000; ++i)
        text += "[service.s" + std::to_string(i) + "]\nlisten = [\"127.0.0." + std::to_string(1 + i % 3) + ":"
                + std::to_string(1024 + i / 3) + "\"]\nbuiltin = \"echo\"\n";
    auto config = superd::parse_config(text, f.path);
    INFO((config.ok() ? std::string() : config.error()));
    REQUIRE(config.ok());
    CHECK(config->services.size() == 20000);

    // The last one takes the wildcard of the first's port: it clashes with
    // the first specific address there, and the message names it.
    int last = 3 * 20000 + 1;
    std::string clashing = text + "[service.w]\nlisten = [\"0.0.0.0:1024\"]\nbuiltin = \"echo\"\n";
    config = superd::parse_config(clashing, f.path);
    REQUIRE_FALSE(config.ok());
    CHECK(config.error()
          == f.path + ":" + std::to_string(last + 1)
                 + ": service 'w': 0.0.0.0:1024 is already used by service 's0' (127.0.0.1:1024 at " + f.path + ":2)");
    std::string dropin = f.dir.write("more.toml", "[service.s5]\nlisten = [\"127.0.0.9:9\"]\nbuiltin = \"echo\"\n");
    config = superd::parse_config("[superd]\ninclude = \"more.toml\"\n" + text, f.path);
    REQUIRE_FALSE(config.ok());
    CHECK(config.error() == dropin + ":1: service 's5' is already defined at " + f.path + ":18");
}

TEST_CASE("Listeners clash by kind, family, port and address, a wildcard with any address", "[config]")
{
    Fixture f;
    auto builtin = [](const std::string& name, const std::string& listen, const std::string& protocol = "tcp") {
        return "[service." + name + "]\nprotocol = \"" + protocol + "\"\nlisten = [" + listen
               + "]\nbuiltin = \"echo\"\n";
    };
    auto ok = [&](const std::string& text) {
        auto config = f.load(text);
        INFO((config.ok() ? std::string() : config.error()));
        CHECK(config.ok());
    };
    ok(builtin("a", "\"127.0.0.1:7000\"") + builtin("b", "\"127.0.0.1:7000\"", "udp")); // stream and dgram
    ok(builtin("a", "\"0.0.0.0:7000\"") + builtin("b", "\"[::1]:7000\""));              // another family
    ok(builtin("a", "\"7000\"") + builtin("b", "\"7001\"")); // "PORT": two sockets, no clash of their own
    CHECK_THAT(f.error_at(builtin("a", "\"127.0.0.1:7000\"") + builtin("b", "\"0.0.0.0:7000\""), 7),
               Catch::Contains("service 'b': 0.0.0.0:7000 is already used by service 'a' (127.0.0.1:7000 at"));
    CHECK_THAT(f.error_at(builtin("a", "\"[::]:7000\"") + builtin("b", "\"[::1]:7000\""), 7),
               Catch::Contains("service 'b': [::1]:7000 is already used by service 'a' ([::]:7000 at"));
    CHECK_THAT(f.error_at(builtin("a", "\"7000\"") + builtin("b", "\"[::1]:7000\""), 7),
               Catch::Contains("is already used by service 'a' (7000 at"));
    CHECK_THAT(f.error_at(builtin("a", "\"127.0.0.1:7000\", \"127.0.0.1:7000\""), 3),
               Catch::Contains("service 'a': 127.0.0.1:7000 is already used by service 'a'"));
    CHECK_THAT(f.error_at("[service.a]\nprotocol = \"unix\"\nlisten = [\"unix:x.sock\"]\nprogram = \"prog\"\n"
                          "[service.b]\nprotocol = \"unix\"\nlisten = [\"unix:x.sock\"]\nprogram = \"prog\"\n",
                          7),
               Catch::Contains("is already used by service 'a'"));
}

namespace {

// The keys the README's config reference documents: the first column of its
// "| key |" tables, between "## Config reference" and the next section.
std::set<std::string> readme_keys()
{
    std::ifstream in(std::string(TEST_DATA_DIR) + "/../../README.md");
    REQUIRE(in);
    std::set<std::string> keys;
    bool in_reference = false, in_key_table = false;
    std::regex quoted("`([a-z0-9_]+)`");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("## ", 0) == 0)
            in_reference = line == "## Config reference";
        if (!in_reference)
            continue;
        if (line.rfind("| key |", 0) == 0)
            in_key_table = true;
        else if (line.rfind("|", 0) != 0)
            in_key_table = false;
        else if (in_key_table) {
            std::string first = line.substr(0, line.find('|', 1));
            for (std::sregex_iterator it(first.begin(), first.end(), quoted), end; it != end; ++it)
                keys.insert((*it)[1]);
        }
    }
    return keys;
}

// The keys superd.toml(5) documents: the terms ("*key* = ..." or
// "*key*, *other* = ...", underscores escaped for scdoc) at the start of the
// lines under "# SERVICE KEYS".
std::set<std::string> man_page_keys()
{
    std::ifstream in(std::string(TEST_DATA_DIR) + "/../../man/superd.toml.5.scd");
    REQUIRE(in);
    std::set<std::string> keys;
    bool in_keys = false;
    std::regex term(R"(\*([a-z0-9_\\]+)\*(?= =|,))");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("# ", 0) == 0)
            in_keys = line == "# SERVICE KEYS";
        if (!in_keys || line.rfind("*", 0) != 0)
            continue;
        for (std::sregex_iterator it(line.begin(), line.end(), term), end; it != end; ++it) {
            std::string key = (*it)[1];
            key.erase(std::remove(key.begin(), key.end(), '\\'), key.end());
            keys.insert(key);
        }
    }
    return keys;
}

std::set<std::string> table_keys()
{
    std::set<std::string> table;
    for (const superd::ServiceKey& key : superd::service_keys()) {
        INFO(key.name);
        CHECK(table.insert(std::string(key.name)).second); // one row a key
    }
    return table;
}

} // namespace

TEST_CASE("The README's config reference lists every key of the table, and no other", "[config]")
{
    std::set<std::string> table = table_keys();
    CHECK(table.size() == 52);
    CHECK(readme_keys() == table);
}

TEST_CASE("superd.toml(5) lists every key of the table, and no other", "[config]")
{
    CHECK(man_page_keys() == table_keys());
}

TEST_CASE("A key set where it does not apply is refused at its line, whatever the key", "[config]")
{
    Fixture f;
    for (const superd::ServiceKey& key : superd::service_keys()) {
        std::string name(key.name);
        INFO(name);
        // The value does not matter: where a key does not apply, it is not read.
        std::string setting = name + " = 1\n";
        if (!(key.applies & superd::kBuiltin))
            CHECK(f.error_at("[service.b]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\n" + setting, 4)
                  == "service 'b': " + name + " does not apply to a builtin (it runs inside superd)");
        std::string only_builtins = (key.applies & superd::kOwnSetting)
                                        ? " applies only to builtin = " + superd::builtins_taking(name)
                                        : " applies only to builtins";
        if (!(key.applies & superd::kProgram))
            CHECK(f.error_at("[service.p]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n" + setting, 4)
                  == "service 'p': " + name + only_builtins);
        // A builtin's own setting, on every builtin that does not take it.
        if (key.applies & superd::kOwnSetting) {
            CHECK(superd::builtins_taking(name) != "");
            for (const superd::BuiltinKind& other : superd::builtin_kinds())
                if (std::ranges::find(other.settings, key.name) == other.settings.end())
                    CHECK(f.error_at("[service.o]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \""
                                         + std::string(other.name) + "\"\n" + setting,
                                     4)
                          == "service 'o': " + name + only_builtins);
        }
        if (!(key.applies & superd::kWaitProgram) && (key.applies & superd::kProgram))
            CHECK(f.error_at(
                      "[service.w]\nlisten = [\"127.0.0.1:7000\"]\nmode = \"wait\"\nprogram = \"prog\"\n" + setting, 5)
                  == "service 'w': " + name
                         + " does not apply to mode = \"wait\" (its program accepts the connections itself)");
        if (!(key.applies & superd::kTcp) && (key.applies & superd::kUnix))
            CHECK(f.error_at("[service.t]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n" + setting, 4)
                  == "service 't': " + name + " is for unix sockets (protocol = \"unix\")");
        if (!(key.applies & superd::kUdp) && (key.applies & superd::kTcp))
            CHECK(f.error_at("[service.u]\nprotocol = \"udp\"\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\n"
                                 + setting,
                             5)
                  == "service 'u': " + name
                         + ((key.applies & superd::kUnix) ? " is for stream sockets (tcp, unix)" : " is for TCP only"));
    }
}

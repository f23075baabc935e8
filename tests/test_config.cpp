#include "superd/config.h"

#include "tests/harness.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

using harness::TempDir;

namespace {

// A folder with an executable "prog", a non-executable "plain" and a
// sub-folder "sub", where config files can be written.
struct Fixture {
    TempDir dir;
    std::string path;

    Fixture()
    {
        std::string prog = dir.write("prog", "#!/bin/sh\nexit 0\n");
        ::chmod(prog.c_str(), 0755);
        dir.write("plain", "not a program\n");
        dir.write("sub/.keep", "");
        path = (dir.path() / "superd.toml").string();
    }

    superd::Result<superd::Config> load(const std::string& text)
    {
        dir.write("superd.toml", text);
        return superd::load_config(path);
    }

    // The error for `text`, which must start with "PATH:LINE: ".
    std::string error_at(const std::string& text, int line)
    {
        auto config = load(text);
        REQUIRE_FALSE(config.ok());
        std::string prefix = path + ":" + std::to_string(line) + ": ";
        INFO(config.error());
        REQUIRE(config.error().rfind(prefix, 0) == 0);
        return config.error().substr(prefix.size());
    }
};

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
program = ")" + (f.dir.path() / "prog").string() + R"("
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
    SECTION("TOML syntax")
    {
        CHECK_THAT(f.error_at(ok_service + "\n[service.b\n", 5), Catch::Contains("]"));
    }
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
        // ...also within one service.
        CHECK_THAT(f.error_at("[service.a]\nlisten = [\"[::1]:7000\", \"7000\"]\nprogram = \"prog\"\n", 2),
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

TEST_CASE("An unreadable file is reported with its name", "[config]")
{
    auto config = superd::load_config("/nonexistent/superd.toml");
    REQUIRE_FALSE(config.ok());
    CHECK(config.error() == "/nonexistent/superd.toml: cannot read: No such file or directory");
}

// The command line and exit statuses of the real superd binary.
#include "tests/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>

using namespace harness;

TEST_CASE("superd --version and --help exit 0", "[cli][integration]")
{
    auto version = run_superd({"--version"});
    CHECK(version.status == 0);
    CHECK_THAT(version.output, Catch::StartsWith("superd "));
    auto help = run_superd({"--help"});
    CHECK(help.status == 0);
    CHECK_THAT(help.output, Catch::Contains("--config FILE"));
}

TEST_CASE("A bad command line exits 2 and says why", "[cli][integration]")
{
    auto no_config = run_superd({});
    CHECK(no_config.status == 2);
    CHECK_THAT(no_config.output, Catch::Contains("--config FILE (or --inetd-conf FILE) is required"));

    auto unknown = run_superd({"--frobnicate"});
    CHECK(unknown.status == 2);
    CHECK_THAT(unknown.output, Catch::Contains("--frobnicate"));

    auto level = run_superd({"--config", "x", "--log-level", "loud"});
    CHECK(level.status == 2);
    CHECK_THAT(level.output, Catch::Contains("unknown log level 'loud'"));

    auto extra = run_superd({"--config", "x", "stray"});
    CHECK(extra.status == 2);
    CHECK_THAT(extra.output, Catch::Contains("unexpected argument 'stray'"));
}

TEST_CASE("superd --check validates and exits 0 or 2", "[cli][integration]")
{
    TempDir dir;
    std::string good = dir.write("good.toml", service_toml("echo", {loopback(free_port())}, service_binary("echo")));
    auto ok = run_superd({"--check", "--config", good});
    CHECK(ok.status == 0);
    CHECK_THAT(ok.output, Catch::Contains(good + ": ok") && Catch::Contains("1 services on 1 listeners"));

    std::string bad = dir.write("bad.toml", "[service.echo]\nlisten = [\"127.0.0.1:7\"]\nprogram = \"/bin/true\"\n"
                                            "colour = \"blue\"\n");
    auto invalid = run_superd({"--check", "--config", bad});
    CHECK(invalid.status == 2);
    CHECK_THAT(invalid.output, Catch::Contains(bad + ":4: service 'echo': unknown key 'colour'"));
}

TEST_CASE("A bad config exits 2 with FILE:LINE", "[cli][integration]")
{
    TempDir dir;
    std::string bad =
        dir.write("superd.toml", "[service.echo]\nlisten = [\"127.0.0.1:http\"]\nprogram = \"/bin/true\"\n");
    auto result = run_superd({"--config", bad});
    CHECK(result.status == 2);
    CHECK_THAT(result.output, Catch::Contains(bad + ":2: service 'echo': listen '127.0.0.1:http'"));

    auto missing = run_superd({"--config", (dir.path() / "nope.toml").string()});
    CHECK(missing.status == 2);
    CHECK_THAT(missing.output, Catch::Contains("nope.toml: cannot read"));
}

TEST_CASE("A port already bound exits 1 naming the service and address", "[cli][integration]")
{
    uint16_t port = free_port();
    UniqueFd holder = listen_tcp(port);

    TempDir dir;
    std::string config =
        dir.write("superd.toml", service_toml("first", {loopback(free_port())}, service_binary("echo"))
                                     + service_toml("taken", {loopback(port)}, service_binary("echo")));
    auto result = run_superd({"--config", config});
    CHECK(result.status == 1);
    CHECK_THAT(result.output, Catch::Contains("service 'taken'") && Catch::Contains(loopback(port))
                                  && Catch::Contains("Address already in use"));
}

TEST_CASE("SIGTERM and SIGINT stop superd with status 0", "[cli][integration]")
{
    std::string config = service_toml("echo", {loopback(free_port())}, service_binary("echo"));
    {
        Superd superd(config);
        CHECK(superd.stop() == 0);
        CHECK_THAT(superd.log(), Catch::Contains("stopping signal=SIGTERM"));
    }
    {
        Superd superd(config);
        ::kill(superd.pid(), SIGINT);
        CHECK(superd.wait_exit() == 0);
        CHECK_THAT(superd.log(), Catch::Contains("stopping signal=SIGINT"));
    }
}

TEST_CASE("Switching users is refused at load when superd is not root", "[cli][integration]")
{
    if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
        WARN("not run: needs root and setpriv to start superd as another user");
        return;
    }
    TempDir dir;
    std::filesystem::permissions(dir.path(), std::filesystem::perms::all); // readable by nobody
    auto config = [&](const std::string& extra) {
        std::string path = dir.write("superd.toml", "[service.a]\nlisten = [\"" + loopback(free_port())
                                                        + "\"]\nprogram = \"/bin/cat\"\n" + extra);
        std::filesystem::permissions(path, std::filesystem::perms::owner_all | std::filesystem::perms::others_read);
        return path;
    };
    auto as_nobody = [](const std::string& path) {
        return run_command({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", superd_binary(),
                            "--check", "--config", path});
    };
    auto refused = as_nobody(config("user = \"root\"\n"));
    CHECK(refused.status == 2);
    CHECK_THAT(refused.output,
               Catch::Contains("superd.toml:4: service 'a': user and group need superd to run as root"));

    // Asking for what superd already is needs no privilege.
    auto same = as_nobody(config("user = \"nobody\"\ngroup = \"nogroup\"\n"));
    INFO(same.output);
    CHECK(same.status == 0);
}

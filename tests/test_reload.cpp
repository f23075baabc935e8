// SIGHUP reloads: a transaction that keeps sockets, never loses a
// connection and never stops superd, whatever the new file holds.
#include "tests/harness.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <thread>

using namespace harness;

namespace {

std::string echo(const std::string& name, uint16_t port)
{
    return service_toml(name, {loopback(port)}, service_binary("echo"));
}

std::string peer(const std::string& name, uint16_t port)
{
    return service_toml(name, {loopback(port)}, service_binary("peer"));
}

} // namespace

TEST_CASE("A reload adds, removes and changes services, and keeps sockets that stay", "[reload][integration]")
{
    uint16_t a = free_port(), b = free_port(), c = free_port();
    Superd superd(echo("a", a) + echo("b", b));
    unsigned long a_socket = listening_inode(a);
    REQUIRE(a_socket != 0);
    CHECK(round_trip(b, "b\n") == "b\n");

    // a changes program, b goes, c comes.
    superd.rewrite_config(peer("a", a) + echo("c", c));
    REQUIRE(superd.reload());
    CHECK(listening_inode(a) == a_socket); // the same socket, not a new one
    CHECK_THAT(round_trip(a, ""), Catch::StartsWith("127.0.0.1 "));
    CHECK(refused(b));
    CHECK(round_trip(c, "c\n") == "c\n");
    CHECK_THAT(superd.log(), Catch::Contains("reloaded services=2 listeners=2 kept=1 opened=1 closed=1"));
}

TEST_CASE("A bad reload keeps the running configuration and says where the error is", "[reload][integration]")
{
    uint16_t a = free_port(), b = free_port();
    Superd superd(echo("a", a));

    superd.rewrite_config(echo("a", a) + "[service.b]\nlisten = [\"" + loopback(b) + "\"]\nprogram = \"nope\"\n");
    CHECK_FALSE(superd.reload());
    std::string config = (superd.dir().path() / "superd.toml").string();
    CHECK_THAT(superd.log(), Catch::Contains("reload failed reason=\"" + config + ":7: service 'b': program"));
    CHECK(round_trip(a, "still a\n") == "still a\n");
    CHECK(refused(b));

    superd.rewrite_config("this is not toml");
    CHECK_FALSE(superd.reload());
    CHECK(round_trip(a, "still a\n") == "still a\n");
    CHECK(superd.stop() == 0);
}

TEST_CASE("A reload that cannot open a new socket changes nothing", "[reload][integration]")
{
    uint16_t a = free_port(), b = free_port(), taken = free_port();
    UniqueFd holder = listen_tcp(taken);
    Superd superd(echo("a", a) + echo("b", b));

    // b would go and c would come, but c's port is taken: all stays as it was.
    superd.rewrite_config(echo("a", a) + echo("c", taken));
    CHECK_FALSE(superd.reload());
    CHECK_THAT(superd.log(), Catch::Contains("reload failed reason=\"service 'c': cannot bind " + loopback(taken)));
    CHECK(round_trip(b, "b stays\n") == "b stays\n");
}

TEST_CASE("Running children are untouched by a reload", "[reload][integration]")
{
    uint16_t a = free_port(), other = free_port();
    Superd superd(echo("a", a));
    UniqueFd live = connect_tcp(a);
    send_all(live.get(), "before\n");
    CHECK(read_n(live.get(), 7) == "before\n");

    superd.rewrite_config(echo("other", other)); // a is gone
    REQUIRE(superd.reload());
    CHECK(refused(a));
    send_all(live.get(), "after\n");
    ::shutdown(live.get(), SHUT_WR);
    CHECK(read_to_eof(live.get()) == "after\n");
}

TEST_CASE("Builtin connections live on through a reload that changes or removes their service", "[reload][integration]")
{
    // The reload frees the ServiceConfig each connection was served from.
    uint16_t e = free_port(), c = free_port(), other = free_port();
    auto builtin = [](const std::string& name, uint16_t port, const std::string& kind) {
        return "[service." + name + "]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"" + kind + "\"\n";
    };
    Superd superd(builtin("e", e, "echo") + builtin("c", c, "chargen"));
    UniqueFd echo = connect_tcp(e), chargen = connect_tcp(c);
    send_all(echo.get(), "before\n");
    CHECK(read_n(echo.get(), 7) == "before\n");
    CHECK(read_n(chargen.get(), 74).size() == 74);

    // e is gone, c becomes daytime: the live connections keep what they were.
    superd.rewrite_config(builtin("c", c, "daytime") + builtin("other", other, "echo"));
    REQUIRE(superd.reload());
    CHECK(refused(e));
    send_all(echo.get(), "after\n");
    ::shutdown(echo.get(), SHUT_WR);
    CHECK(read_to_eof(echo.get()) == "after\n");
    CHECK(read_n(chargen.get(), 64 * 1024).size() == 64 * 1024);
    CHECK_THAT(round_trip(c, ""), Catch::EndsWith("\r\n"));
    chargen.reset();
    CHECK(superd.settled_count("closed service=e ", 1) == 1);
    CHECK(superd.settled_count("closed service=c ", 2) == 2);
}

TEST_CASE("Reloading over and over while clients connect loses no connection", "[reload][integration]")
{
    uint16_t a = free_port(), b = free_port();
    Superd superd(echo("a", a));
    const std::string with_b = echo("a", a) + echo("b", b), without_b = echo("a", a);

    std::atomic<bool> done{false};
    std::atomic<int> served{0}, failed{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
        clients.emplace_back([&, t] {
            for (int i = 0; !done; ++i) {
                std::string message = "client " + std::to_string(t) + " #" + std::to_string(i) + "\n";
                try {
                    if (round_trip(a, message) == message)
                        ++served;
                    else
                        ++failed;
                } catch (const std::exception&) {
                    ++failed;
                }
            }
        });
    }
    // A number of reloads, not a time window: how many fit in a second
    // depends on how loaded the machine is.
    int reloads = 0;
    auto give_up = std::chrono::steady_clock::now() + 60s;
    while ((reloads < 20 || served < 100) && std::chrono::steady_clock::now() < give_up) {
        superd.rewrite_config(reloads % 2 ? without_b : with_b);
        REQUIRE(superd.reload());
        ++reloads;
    }
    done = true;
    for (auto& t : clients)
        t.join();
    INFO(reloads << " reloads, " << served << " connections served");
    CHECK(reloads >= 20);
    CHECK(served >= 100);
    CHECK(failed == 0);
}

TEST_CASE("superd --check validates exactly what a reload loads", "[reload][integration]")
{
    uint16_t a = free_port();
    Superd superd(echo("a", a));
    std::string config = (superd.dir().path() / "superd.toml").string();

    superd.rewrite_config(echo("a", a) + "[service.a2]\nlisten = [\"" + loopback(a) + "\"]\nbuiltin = \"echo\"\n");
    auto check = run_superd({"--check", "--config", config});
    CHECK(check.status == 2);
    CHECK_FALSE(superd.reload());
    std::string reason = check.output.substr(check.output.find(config));
    reason = reason.substr(0, reason.find('\n'));
    CHECK_THAT(superd.log(), Catch::Contains(reason));

    superd.rewrite_config(echo("a", a) + "[superd]\ninclude = [\"more/*.toml\"]\n");
    superd.dir().write("more/b.toml",
                       "[service.b]\nlisten = [\"" + loopback(free_port()) + "\"]\nbuiltin = \"daytime\"\n");
    CHECK(run_superd({"--check", "--config", config}).status == 0);
    CHECK(superd.reload());
}

TEST_CASE("superd serves an inetd.conf given on the command line", "[reload][integration]")
{
    TempDir dir;
    uint16_t port = free_port();
    std::string conf =
        dir.write("inetd.conf", "# classic\n127.0.0.1:" + std::to_string(port) + "\tstream\ttcp\tnowait\troot\t"
                                    + service_binary("echo") + "\techo\n");
    auto check = run_superd({"--check", "--inetd-conf", conf});
    INFO(check.output);
    CHECK(check.status == 0);

    StartOptions only_inetd;
    only_inetd.inetd_conf = conf;
    Superd superd("", only_inetd);
    CHECK(round_trip(port, "from inetd.conf\n") == "from inetd.conf\n");
    CHECK(superd.settled_count("spawned service=" + std::to_string(port) + "-tcp", 1) == 1);

    // A reload reads it again.
    uint16_t second = free_port();
    dir.write("inetd.conf",
              "127.0.0.1:" + std::to_string(second) + " stream tcp nowait root " + service_binary("echo") + " echo\n");
    REQUIRE(superd.reload());
    CHECK(refused(port));
    CHECK(round_trip(second, "reloaded\n") == "reloaded\n");
}

TEST_CASE("A drop-in that is a FIFO fails the reload at once, and superd serves on", "[reload][integration]")
{
    uint16_t a = free_port(), b = free_port();
    Superd superd("[superd]\ninclude = [\"superd.d/*.toml\"]\n" + echo("a", a));
    superd.dir().write("superd.d/.keep", "");
    std::string fifo = (superd.dir().path() / "superd.d/zz.toml").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);

    // It used to block superd in open() until a writer came: no outcome.
    CHECK_FALSE(superd.reload(5s));
    std::string config = (superd.dir().path() / "superd.toml").string();
    CHECK_THAT(superd.log(),
               Catch::Contains("reload failed reason=\"" + config + ":2: " + fifo + ": not a regular file (a FIFO)\""));
    CHECK(round_trip(a, "still a\n") == "still a\n");

    ::unlink(fifo.c_str());
    superd.dir().write("superd.d/b.toml", echo("b", b));
    REQUIRE(superd.reload());
    CHECK(round_trip(b, "b\n") == "b\n");
    CHECK(::kill(superd.pid(), 0) == 0);
}

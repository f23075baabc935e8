// Limits, access control, timeouts, resource limits and faults, end to end:
// each refusal is checked on the wire, in the log and in the counters.
#include "tests/harness.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

using namespace harness;

namespace {

// A service holding its connection open until the client closes: /bin/cat.
std::string held(const std::string& name, uint16_t port, const std::string& extra = "")
{
    return "[service." + name + "]\nlisten = [\"" + loopback(port) + "\"]\nprogram = \"/bin/cat\"\n" + extra + "\n";
}

// Connects and proves the connection is served: cat echoes a line.
bool served(int fd, std::chrono::milliseconds limit = 5s)
{
    send_all(fd, "ping\n");
    try {
        return read_n(fd, 5, limit) == "ping\n";
    } catch (const std::exception&) {
        return false;
    }
}

// CPU seconds superd has used so far (user + system), from /proc.
double cpu_seconds_of(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string skip;
    for (int i = 0; i < 11; ++i)
        fields >> skip; // state .. cmajflt
    long utime = 0, stime = 0;
    fields >> utime >> stime;
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

} // namespace

TEST_CASE("max_instances with on_limit = queue holds the rest in the backlog", "[protection][integration]")
{
    uint16_t port = free_port();
    Superd superd(held("cat", port, "max_instances = 2"));
    UniqueFd a = connect_tcp(port), b = connect_tcp(port);
    CHECK(served(a.get()));
    CHECK(served(b.get()));
    UniqueFd c = connect_tcp(port); // connected, in the backlog
    send_all(c.get(), "ping\n");
    CHECK(quiet_for(c.get(), 500ms));
    CHECK(superd.settled_count("spawned service=cat", 2) == 2);

    a.reset(); // its child exits, c gets its turn
    CHECK(read_n(c.get(), 5) == "ping\n");
    CHECK(superd.settled_count("spawned service=cat", 3) == 3);
    CHECK(counter(superd.counters("cat"), "refused_limit") == 0);
}

TEST_CASE("max_instances with on_limit = reject answers busy and closes", "[protection][integration]")
{
    uint16_t port = free_port();
    Superd superd(
        held("cat", port, "max_instances = 1\non_limit = \"reject\"\nbusy_message = \"busy, try later\\r\\n\""));
    UniqueFd a = connect_tcp(port);
    CHECK(served(a.get()));
    UniqueFd b = connect_tcp(port);
    CHECK(read_to_eof(b.get()) == "busy, try later\r\n");
    std::string counters = superd.counters("cat");
    CHECK(counter(counters, "refused_limit") == 1);
    CHECK(counter(counters, "running") == 1);
    CHECK(counter(counters, "spawned") == 1);
    CHECK_THAT(superd.log(), Catch::Contains("refused service=cat peer=127.0.0.1:"));
}

TEST_CASE("max_per_source counts each source prefix on its own", "[protection][integration]")
{
    uint16_t port = free_port();
    Superd superd("[service.cat]\nlisten = [\"0.0.0.0:" + std::to_string(port)
                  + "\"]\nprogram = \"/bin/cat\"\nmax_per_source = 2\n");
    UniqueFd a = connect_tcp(port, "127.0.0.1", "127.0.0.1"), b = connect_tcp(port, "127.0.0.1", "127.0.0.1");
    CHECK(served(a.get()));
    CHECK(served(b.get()));
    UniqueFd third = connect_tcp(port, "127.0.0.1", "127.0.0.1");
    CHECK(read_to_eof(third.get()) == "");                        // refused: closed at once
    UniqueFd other = connect_tcp(port, "127.0.0.1", "127.0.0.2"); // another /32
    CHECK(served(other.get()));
    CHECK(counter(superd.counters("cat"), "refused_source") == 1);

    a.reset(); // a slot for 127.0.0.1 again
    CHECK(superd.wait_for_log("exited service=cat", 1));
    UniqueFd again = connect_tcp(port, "127.0.0.1", "127.0.0.1");
    CHECK(served(again.get()));
}

TEST_CASE("A rate over its burst refuses with reject and delays with queue", "[protection][integration]")
{
    uint16_t strict = free_port(), patient = free_port();
    Superd superd(service_toml("strict", {loopback(strict)}, service_binary("echo"))
                  + "rate = \"1/m\"\nburst = 2\non_limit = \"reject\"\n\n"
                  + service_toml("patient", {loopback(patient)}, service_binary("echo"))
                  + "rate = \"10/s\"\nburst = 1\n");
    int ok = 0;
    for (int i = 0; i < 5; ++i)
        ok += round_trip(strict, "x\n") == "x\n" ? 1 : 0;
    CHECK(ok == 2);
    CHECK(counter(superd.counters("strict"), "refused_rate") == 3);

    // Five at once against one token and 10 a second: all served, later.
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 5; ++i)
        clients.push_back(connect_tcp(patient));
    for (auto& c : clients) {
        ::shutdown(c.get(), SHUT_WR);
        CHECK(read_to_eof(c.get()) == "");
    }
    std::string counters = superd.counters("patient");
    CHECK(counter(counters, "spawned") == 5);
    CHECK(counter(counters, "refused_rate") == 0);
}

TEST_CASE("A reload keeps the rate buckets of a service whose rate is unchanged", "[protection][integration]")
{
    uint16_t port = free_port();
    std::string config = service_toml("strict", {loopback(port)}, service_binary("echo"))
                         + "rate = \"1/h\"\nburst = 1\nrate_per_source = \"1/h\"\nburst_per_source = 2\n"
                           "on_limit = \"reject\"\n";
    Superd superd(config);
    CHECK(round_trip(port, "x\n") == "x\n");
    CHECK(round_trip(port, "x\n") == ""); // the service's bucket is empty
    for (int i = 0; i < 3; ++i) {
        REQUIRE(superd.reload());
        CHECK(round_trip(port, "x\n") == ""); // and stays empty: a reload is no fresh burst
    }
    CHECK(counter(superd.counters("strict"), "refused_rate") == 4);

    // A changed rate starts a bucket of its own.
    superd.rewrite_config(service_toml("strict", {loopback(port)}, service_binary("echo"))
                          + "rate = \"2/h\"\nburst = 1\n");
    REQUIRE(superd.reload());
    CHECK(round_trip(port, "x\n") == "x\n");
}

TEST_CASE("[superd] max_children caps all services together", "[protection][integration]")
{
    uint16_t a = free_port(), b = free_port();
    Superd superd("[superd]\nmax_children = 2\n\n" + held("a", a) + held("b", b));
    UniqueFd one = connect_tcp(a), two = connect_tcp(b);
    CHECK(served(one.get()));
    CHECK(served(two.get()));
    UniqueFd three = connect_tcp(a);
    send_all(three.get(), "ping\n");
    CHECK(quiet_for(three.get(), 500ms));
    two.reset();
    CHECK(read_n(three.get(), 5) == "ping\n");
}

TEST_CASE("allow and deny refuse before anything is spawned", "[protection][integration]")
{
    uint16_t port = free_port();
    Superd superd("[service.cat]\nlisten = [\"0.0.0.0:" + std::to_string(port)
                  + "\"]\nprogram = \"/bin/cat\"\ndeny = [\"127.0.0.0/8\"]\nallow = [\"127.0.0.3\", \"::1/128\"]\n");
    UniqueFd refused = connect_tcp(port, "127.0.0.1", "127.0.0.1");
    CHECK(read_to_eof(refused.get()) == "");
    UniqueFd allowed = connect_tcp(port, "127.0.0.1", "127.0.0.3"); // the /32 allow beats the /8 deny
    CHECK(served(allowed.get()));
    std::string counters = superd.counters("cat");
    CHECK(counter(counters, "refused_acl") == 1);
    CHECK(counter(counters, "spawned") == 1);
    CHECK_THAT(superd.log(), Catch::Contains("refused service=cat peer=127.0.0.1:") && Catch::Contains("reason=acl"));
}

TEST_CASE("timeout ends a child with SIGTERM, then SIGKILL after the grace", "[protection][integration]")
{
    uint16_t polite = free_port(), stubborn = free_port();
    Superd superd("[service.polite]\nlisten = [\"" + loopback(polite)
                  + "\"]\nprogram = \"/bin/sleep\"\nargs = [\"sleep\", \"60\"]\ntimeout = \"300ms\"\n\n"
                    "[service.stubborn]\nlisten = [\""
                  + loopback(stubborn)
                  + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"trap '' TERM; echo ready; while :; do sleep "
                    "1; done\"]\n"
                    "timeout = \"300ms\"\nkill_grace = \"300ms\"\n");
    UniqueFd a = connect_tcp(polite), b = connect_tcp(stubborn);
    CHECK(read_n(b.get(), 6) == "ready\n");
    CHECK(read_to_eof(a.get()) == "");
    CHECK(superd.wait_for_log("exited service=polite"));
    CHECK_THAT(superd.log(), Catch::Contains("status=\"signal 15 (Terminated)\""));
    CHECK(read_to_eof(b.get()) == ""); // its whole process group is gone
    CHECK(superd.wait_for_log("exited service=stubborn"));
    CHECK_THAT(superd.log(), Catch::Contains("timeout service=stubborn") && Catch::Contains("action=SIGKILL")
                                 && Catch::Contains("status=\"signal 9 (Killed)\""));
    CHECK(counter(superd.counters("stubborn"), "timed_out") == 1);
}

TEST_CASE("timeout and max_instances cover what a service leaves running", "[protection][integration]")
{
    // The program exits at once; what it started keeps the client for 20 s.
    uint16_t port = free_port();
    Superd superd("[service.fork]\nlisten = [\"" + loopback(port)
                  + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"(sleep 20; echo late) & exit 0\"]\n"
                    "timeout = \"1s\"\nmax_instances = 1\n");
    UniqueFd first = connect_tcp(port);
    REQUIRE(superd.wait_for_log("exited service=fork"));
    CHECK_THAT(superd.log(), Catch::Contains("group=alive"));
    UniqueFd second = connect_tcp(port);        // waits: the first connection still runs
    CHECK(read_to_eof(first.get(), 10s) == ""); // its whole session was ended at the timeout
    CHECK(read_to_eof(second.get(), 10s) == "");
    REQUIRE(superd.wait_for_log("ended service=fork", 2));

    std::string log = superd.log();
    size_t first_ended = log.find("ended service=fork");
    size_t second_spawned = log.find("spawned service=fork", log.find("spawned service=fork") + 1);
    INFO(log);
    CHECK(second_spawned != std::string::npos);
    CHECK(first_ended < second_spawned);
    std::string counters = superd.counters("fork");
    CHECK(counter(counters, "running") == 0);
    CHECK(counter(counters, "timed_out") == 2);
    CHECK(eventually([&] { return superd.children().empty(); }, 5s));
}

TEST_CASE("What a service leaves behind comes back to superd and is reaped", "[protection][integration]")
{
    // The orphans leave the service's session, so only superd, their
    // subreaper, can reap them; SIGCHLD is blocked meanwhile.
    uint16_t port = free_port();
    Superd superd("[service.orphans]\nlisten = [\"" + loopback(port)
                  + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", "
                    "\"setsid sleep 0.3 </dev/null >/dev/null 2>&1 & exit 0\"]\n");
    for (int i = 0; i < 5; ++i)
        CHECK(round_trip(port, "") == "");
    CHECK(superd.wait_for_log("exited service=orphans", 5));
    // They were superd's: the shell that started them is gone.
    CHECK(eventually([&] { return !superd.children().empty(); }, 2s));
    CHECK(eventually([&] { return superd.children().empty(); }, 10s));
    // A program whose last companion left its group (setsid) before it
    // exited is found out by the next sweep, within a second.
    CHECK(eventually([&] { return counter(superd.counters("orphans"), "running") == 0; }, 5s));
}

TEST_CASE("rlimit_* apply to the spawned program", "[protection][integration]")
{
    uint16_t port = free_port();
    Superd superd(
        "[service.limits]\nlisten = [\"" + loopback(port)
        + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"ulimit -n; ulimit -Hn; ulimit -c; ulimit -t\"]\n"
          "rlimit_nofile = 77\nrlimit_core = 0\nrlimit_cpu = 9\n");
    CHECK(round_trip(port, "") == "77\n77\n0\n9\n");
}

TEST_CASE("Out of file descriptors, superd rests instead of spinning, and recovers", "[protection][integration]")
{
    uint16_t cat = free_port(), echo = free_port();
    StartOptions few_fds;
    few_fds.max_fds = 64;
    // Each live cat costs superd a stderr pipe, so spawns run out of fds;
    // each echo connection is an fd in superd, so accept runs out.
    Superd superd(held("cat", cat, "stderr = \"log\"") + "[service.echo]\nlisten = [\"" + loopback(echo)
                      + "\"]\nbuiltin = \"echo\"\n",
                  few_fds);

    // cats first, until a spawn runs out, then echo's accepts: which runs
    // out first must not depend on the order superd serves its listeners.
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 150; ++i)
        clients.push_back(connect_tcp(cat));
    CHECK(superd.wait_for_log("spawn /bin/cat: pipe: Too many open files"));
    for (int i = 0; i < 150; ++i)
        clients.push_back(connect_tcp(echo));
    CHECK(superd.wait_for_log("reason=\"out of file descriptors\""));
    std::this_thread::sleep_for(500ms);
    double before = cpu_seconds_of(superd.pid());
    std::this_thread::sleep_for(2s);
    double used = cpu_seconds_of(superd.pid()) - before;
    INFO("superd used " << used << " s of CPU in 2 s while saturated");
    CHECK(used < 0.5); // a busy loop would use about 2

    clients.clear(); // every child ends, fds come back
    CHECK(superd.wait_for_log("exited service=cat", superd.count_in_log("spawned service=cat"), 20s));
    // Served again once the listeners' rests are over and the backlog of
    // closed clients is drained (the rests themselves are checked in
    // simulated time, test_limits.cpp).
    CHECK(eventually([&] { return served(connect_tcp(cat).get(), 10s); }, 40s));
    CHECK(eventually([&] { return served(connect_tcp(echo).get(), 10s); }, 40s));
    CHECK(counter(superd.counters("cat"), "refused_fds") > 0);
    CHECK(counter(superd.counters("echo"), "refused_fds") > 0);
    // The refusal names the client, not superd's own address.
    std::smatch m;
    std::string log = superd.log();
    REQUIRE(std::regex_search(log, m, std::regex(R"(refused service=echo peer=127\.0\.0\.1:(\d+) reason=fds)")));
    CHECK(std::stoi(m[1]) != echo);
}

TEST_CASE("Out of processes, spawns fail, are paced, and superd lives on", "[protection][integration]")
{
    if (::geteuid() != 0 || ::access("/usr/bin/prlimit", X_OK) != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
        WARN("not run: needs root, prlimit and setpriv to start superd as nobody with few processes");
        return;
    }
    uint16_t port = free_port();
    StartOptions few_processes;
    // RLIMIT_NPROC counts every process of the user: superd and a few cats,
    // under a uid nothing else runs as (not nobody, which other tests use at
    // the same time).
    few_processes.wrapper = {"/usr/bin/prlimit", "--nproc=6",     "/usr/bin/setpriv",
                             "--reuid=64999",    "--regid=64999", "--clear-groups"};
    Superd superd(held("cat", port), few_processes);

    std::vector<UniqueFd> clients;
    for (int i = 0; i < 20; ++i)
        clients.push_back(connect_tcp(port));
    CHECK(superd.wait_for_log("Resource temporarily unavailable"));
    CHECK(superd.wait_for_log("paced service=cat"));
    CHECK(::kill(superd.pid(), 0) == 0); // alive
    clients.clear();
    CHECK(superd.wait_for_log("exited service=cat", superd.count_in_log("spawned service=cat"), 20s));
    // Served again once the rest is over and the backlog of closed clients
    // is drained: until then a spawn may still find no process to spare
    // (test_limits.cpp checks the rests in simulated time).
    CHECK(eventually([&] { return served(connect_tcp(port).get(), 10s); }, 40s));
    CHECK(counter(superd.counters("cat"), "failed_spawn") > 0);
}

TEST_CASE("A huge RLIMIT_NOFILE changes nothing for the children", "[protection][integration]")
{
    // As large as this machine allows: up to fs.nr_open with CAP_SYS_RESOURCE
    // (containers often give 1048576), else the hard limit.
    rlimit current{};
    ::getrlimit(RLIMIT_NOFILE, &current);
    unsigned long nr_open = 1 << 20;
    std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
    rlimit wanted{nr_open, nr_open};
    unsigned long huge_fds = ::setrlimit(RLIMIT_NOFILE, &wanted) == 0 ? nr_open : current.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &current);

    uint16_t port = free_port();
    StartOptions huge;
    huge.max_fds = huge_fds;
    Superd superd(service_toml("probe", {loopback(port)}, probe_binary()), huge);
    std::ifstream limits("/proc/" + std::to_string(superd.pid()) + "/limits");
    std::string text((std::istreambuf_iterator<char>(limits)), std::istreambuf_iterator<char>());
    CHECK_THAT(text, Catch::Matches("(.|\n)*Max open files +" + std::to_string(huge_fds) + " (.|\n)*"));
    UniqueFd fd = connect_tcp(port);
    ::shutdown(fd.get(), SHUT_WR);
    CHECK(lines_with_prefix(read_to_eof(fd.get()), "fds: ") == std::vector<std::string>{"0 1 2"});
}

TEST_CASE("A service that crashes, closes early, hangs or never reads affects only its connection",
          "[protection][integration]")
{
    uint16_t crash = free_port(), closes = free_port(), hangs = free_port(), deaf = free_port(), echo = free_port();
    auto sh = [](const std::string& name, uint16_t port, const std::string& script) {
        return "[service." + name + "]\nlisten = [\"" + loopback(port)
               + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"" + script + "\"]\n\n";
    };
    Superd superd(sh("crash", crash, "kill -SEGV $$") + sh("closes", closes, "exec 0<&- 1>&-; sleep 1")
                  + sh("hangs", hangs, "sleep 60") + sh("deaf", deaf, "sleep 60")
                  + service_toml("echo", {loopback(echo)}, service_binary("echo")));

    CHECK(round_trip(crash, "") == "");
    CHECK(superd.wait_for_log("exited service=crash"));
    CHECK_THAT(superd.log(), Catch::Contains("status=\"signal 11 (Segmentation fault)"));

    UniqueFd closed = connect_tcp(closes);
    CHECK(read_to_eof(closed.get()) == "");

    UniqueFd hung = connect_tcp(hangs);
    // A client sending to a program that never reads fills the buffers and
    // waits; superd is not in that path.
    UniqueFd ignored = connect_tcp(deaf);
    std::thread stuffer([&] {
        try {
            for (int i = 0; i < 64; ++i)
                send_all(ignored.get(), std::string(1 << 20, 'x'));
        } catch (const std::exception&) {
            // the 10 s send timeout, as expected
        }
    });
    std::this_thread::sleep_for(500ms);
    CHECK(round_trip(echo, "unaffected\n") == "unaffected\n");
    CHECK(quiet_for(hung.get(), 200ms));
    ::shutdown(ignored.get(), SHUT_RDWR);
    stuffer.join();
    CHECK(round_trip(echo, "still\n") == "still\n");
}

TEST_CASE("superd raises its own soft fd limit and gives children the one it was started with",
          "[protection][integration]")
{
    if (::access("/usr/bin/prlimit", X_OK) != 0) {
        WARN("not run: needs prlimit");
        return;
    }
    uint16_t port = free_port();
    StartOptions low_soft;
    low_soft.wrapper = {"/usr/bin/prlimit", "--nofile=1024:4096"};
    Superd superd("[service.limits]\nlisten = [\"" + loopback(port)
                      + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"ulimit -Sn; ulimit -Hn\"]\n",
                  low_soft);
    std::ifstream limits("/proc/" + std::to_string(superd.pid()) + "/limits");
    std::string text((std::istreambuf_iterator<char>(limits)), std::istreambuf_iterator<char>());
    CHECK_THAT(text, Catch::Matches("(.|\\n)*Max open files +4096 +4096 (.|\\n)*"));
    CHECK(round_trip(port, "") == "1024\n4096\n");
}

// The control socket (control.h, daemon_control.cpp) against the real
// superd, spoken to over the socket itself: who may connect, each command,
// and that no client can stall superd or crash it.
#include "superd/config.h"
#include "superd/control.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <csignal>
#include <poll.h>

using namespace harness;
using nlohmann::json;

namespace {

constexpr gid_t kNobodyGroup = 65534;
constexpr uid_t kNobody = 65534;

// One line from `fd`, without its "\n"; empty at EOF or after `limit`.
std::string read_line(int fd, std::chrono::milliseconds limit = 10s)
{
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0)
            continue;
        char c;
        ssize_t n = ::recv(fd, &c, 1, 0);
        if (n <= 0)
            return line;
        if (c == '\n')
            return line;
        line += c;
    }
    FAIL("no reply line in time");
    return line;
}

json ask(int fd, const std::string& request)
{
    send_all(fd, request + "\n");
    std::string line = read_line(fd);
    REQUIRE_FALSE(line.empty());
    return json::parse(line);
}

json ask(const std::string& path, const std::string& request)
{
    UniqueFd fd = connect_unix(path);
    return ask(fd.get(), request);
}

std::string echo_service(uint16_t port, const std::string& extra = "")
{
    return service_toml("echo", {loopback(port)}, service_binary("echo")) + extra;
}

// What a process of uid/gid nobody, with supplementary `groups`, hears on
// connecting to `path`. With `as_root_on_disk` its filesystem uid stays 0,
// so the socket file's mode lets it in and only superd's own check is
// tested: SO_PEERCRED reports the effective ids.
std::string reply_as_nobody(const std::string& path, std::vector<gid_t> groups, bool as_root_on_disk)
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        auto say = [&](const std::string& text) {
            (void)::write(write_end.get(), text.data(), text.size());
            ::_exit(0);
        };
        if (::setgroups(groups.size(), groups.data()) != 0 || ::setresgid(kNobodyGroup, kNobodyGroup, 0) != 0
            || ::setresuid(0, kNobody, 0) != 0) // real uid 0 keeps setfsuid(0) allowed
            say("setup failed");
        if (as_root_on_disk)
            ::setfsuid(0);
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0)
            say(std::string("connect: ") + std::strerror(errno));
        // superd may have answered and closed already: no SIGPIPE.
        (void)::send(fd, "status\n", 7, MSG_NOSIGNAL);
        timeval timeout{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        char buffer[4096];
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        say(n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string("no reply"));
    }
    write_end.reset();
    std::string heard;
    char buffer[4096];
    for (ssize_t n; (n = ::read(read_end.get(), buffer, sizeof buffer)) > 0;)
        heard.append(buffer, static_cast<size_t>(n));
    int status = 0;
    ::waitpid(pid, &status, 0);
    return heard;
}

} // namespace

TEST_CASE("control_allowed lets in root, superd's user and the control group's members", "[control]")
{
    using superd::control_allowed;
    using superd::ControlPeer;
    std::vector<gid_t> none;
    std::vector<gid_t> adm{4};
    CHECK(control_allowed(ControlPeer{1, 0, 0}, none, 1000, std::nullopt));
    CHECK(control_allowed(ControlPeer{1, 1000, 1000}, none, 1000, std::nullopt));
    CHECK_FALSE(control_allowed(ControlPeer{1, 1001, 1001}, none, 1000, std::nullopt));
    CHECK_FALSE(control_allowed(ControlPeer{1, 1001, 1001}, none, 1000, gid_t{4}));
    CHECK(control_allowed(ControlPeer{1, 1001, 1001}, adm, 1000, gid_t{4}));
    CHECK(control_allowed(ControlPeer{1, 1001, 4}, none, 1000, gid_t{4}));
    CHECK_FALSE(control_allowed(ControlPeer{1, 1001, 1001}, adm, 1000, std::nullopt));
}

TEST_CASE("The control socket is 0600, or 0660 with control_group, and gone when superd stops",
          "[control][integration]")
{
    uint16_t port = free_port();
    {
        Superd superd(echo_service(port));
        struct stat st;
        REQUIRE(::stat(superd.control_path().c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(st.st_uid == ::geteuid());
        CHECK(superd.stop() == 0);
        CHECK(::access(superd.control_path().c_str(), F_OK) != 0);
    }
    Superd grouped("[superd]\ncontrol_group = \"adm\"\n" + echo_service(port));
    struct stat st;
    REQUIRE(::stat(grouped.control_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_gid == ::getgrnam("adm")->gr_gid);
}

TEST_CASE("Only root, superd's user and the control group's members are answered", "[control][integration]")
{
    gid_t adm = ::getgrnam("adm")->gr_gid;
    uint16_t port = free_port();
    Superd superd("[superd]\ncontrol_group = \"adm\"\n" + echo_service(port));
    // The folder must let nobody reach the socket file at all.
    REQUIRE(::chmod(superd.dir().path().c_str(), 0755) == 0);

    // superd's own check, past the file's mode.
    std::string outsider = reply_as_nobody(superd.control_path(), {}, true);
    CHECK_THAT(outsider, Catch::Contains("\"ok\":false")
                             && Catch::Contains("permission denied: uid 65534 is not root, "
                                                "superd's user or in group adm"));
    CHECK_THAT(reply_as_nobody(superd.control_path(), {adm}, true), Catch::Contains("\"ok\":true"));
    CHECK(superd.wait_for_log("refused control pid="));
    CHECK_THAT(superd.log(), Catch::Contains("uid=65534 reason=permission"));

    // The file's mode, before superd is asked: 0660 root:adm.
    CHECK_THAT(reply_as_nobody(superd.control_path(), {}, false), Catch::Contains("connect: Permission denied"));
    CHECK_THAT(reply_as_nobody(superd.control_path(), {adm}, false), Catch::Contains("\"ok\":true"));
}

TEST_CASE("status, services and children describe the running superd", "[control][integration]")
{
    uint16_t port = free_port(), daytime = free_port();
    Superd superd(echo_service(port, "timeout = \"60s\"\n") + "[service.daytime]\nlisten = [\"" + loopback(daytime)
                  + "\"]\nbuiltin = \"daytime\"\n");

    json status = ask(superd.control_path(), "status");
    CHECK(status["ok"] == true);
    CHECK(status["pid"] == superd.pid());
    CHECK(status["version"] == SUPERD_VERSION);
    CHECK(status["services"] == 2);
    CHECK(status["listeners"] == 2);
    CHECK(status["running"] == 0);
    CHECK(status["log_level"] == "info");
    CHECK(status["control"] == superd.control_path());
    CHECK(status["last_reload"].is_null());
    CHECK(status["config_files"] == json::array({(superd.dir().path() / "superd.toml").string()}));
    CHECK(status["uptime_seconds"].get<double>() >= 0);

    // A client that stays connected keeps its child running.
    UniqueFd client = connect_tcp(port);
    send_all(client.get(), "hi\n");
    CHECK(read_n(client.get(), 3) == "hi\n");
    round_trip(daytime, "");

    json services = ask(superd.control_path(), "services");
    REQUIRE(services["services"].size() == 2);
    json echo = services["services"][0];
    CHECK(echo["name"] == "echo");
    CHECK(echo["kind"] == "program");
    CHECK(echo["program"] == service_binary("echo"));
    CHECK(echo["listen"] == json::array({loopback(port)}));
    CHECK(echo["protocol"] == "tcp");
    CHECK(echo["mode"] == "nowait");
    CHECK(echo["state"] == "serving");
    CHECK(echo["running"] == 1);
    CHECK(echo["accepted"] == 1);
    CHECK(echo["spawned"] == 1);
    CHECK(echo["refused"]["acl"] == 0);
    json day = services["services"][1];
    CHECK(day["kind"] == "builtin");
    CHECK(day["program"] == "daytime");
    CHECK(day["accepted"] == 1);

    json children = ask(superd.control_path(), "children");
    REQUIRE(children["children"].size() == 1);
    json child = children["children"][0];
    CHECK(child["service"] == "echo");
    CHECK(child["state"] == "running");
    CHECK_THAT(child["client"].get<std::string>(), Catch::StartsWith("127.0.0.1:"));
    CHECK(child["age_seconds"].get<double>() >= 0);
    double left = child["timeout_left_seconds"].get<double>();
    CHECK(left > 0);
    CHECK(left <= 60);
    pid_t pid = child["pid"].get<pid_t>();
    CHECK(std::find(superd.children().begin(), superd.children().end(), pid) != superd.children().end());

    CHECK(ask(superd.control_path(), "children echo")["children"].size() == 1);
    CHECK(ask(superd.control_path(), "children daytime")["children"].empty());
    json unknown = ask(superd.control_path(), "children nope");
    CHECK(unknown["ok"] == false);
    CHECK(unknown["error"] == "no service 'nope'");
}

TEST_CASE("services tells a queued service and a waiting one from one serving", "[control][integration]")
{
    uint16_t full = free_port(), wait = free_port();
    Superd superd(echo_service(full, "max_instances = 1\n") + "[service.waiter]\nlisten = [\"" + loopback(wait)
                  + "\"]\nmode = \"wait\"\nprogram = \"" + waiter_binary() + "\"\n");
    auto state = [&](size_t i) { return ask(superd.control_path(), "services")["services"][i]["state"]; };
    CHECK(state(0) == "serving");
    CHECK(state(1) == "serving");

    // echo at its one instance, with a second client in the backlog.
    UniqueFd first = connect_tcp(full);
    send_all(first.get(), "1\n");
    REQUIRE(read_n(first.get(), 2) == "1\n");
    UniqueFd second = connect_tcp(full);
    CHECK(eventually([&] { return state(0) == "queued"; }));

    // The waiter's child holds its socket while its client stays.
    UniqueFd waiting = connect_tcp(wait);
    send_all(waiting.get(), "w\n");
    CHECK_THAT(read_line(waiting.get()), Catch::StartsWith("waiter pid="));
    CHECK(eventually([&] { return state(1) == "waiting"; }));
    json children = ask(superd.control_path(), "children waiter");
    REQUIRE(children["children"].size() == 1);
    CHECK(children["children"][0]["client"] == loopback(wait)); // a wait child is shown by its socket
    CHECK(children["children"][0]["timeout_left_seconds"].is_null());

    first.reset();
    send_all(second.get(), "2\n");
    CHECK(read_n(second.get(), 2) == "2\n");
    second.reset();
    CHECK(eventually([&] { return state(0) == "serving"; }));
    ::shutdown(waiting.get(), SHUT_WR);
    read_to_eof(waiting.get());
    CHECK(eventually([&] { return state(1) == "serving"; }));
}

TEST_CASE("reload over the control socket answers with the outcome", "[control][integration]")
{
    uint16_t a = free_port(), b = free_port();
    Superd superd(echo_service(a));
    std::string file = (superd.dir().path() / "superd.toml").string();

    superd.rewrite_config(echo_service(a) + "[service.b]\nlisten = [\"" + loopback(b) + "\"]\nprogram = \"nope\"\n");
    json bad = ask(superd.control_path(), "reload");
    CHECK(bad["ok"] == false);
    CHECK_THAT(bad["error"].get<std::string>(), Catch::StartsWith(file + ":7: service 'b': program"));
    CHECK(round_trip(a, "still\n") == "still\n");
    json status = ask(superd.control_path(), "status");
    CHECK(status["last_reload"]["ok"] == false);

    superd.rewrite_config(echo_service(a) + service_toml("b", {loopback(b)}, service_binary("echo")));
    json good = ask(superd.control_path(), "reload");
    CHECK(good["ok"] == true);
    CHECK(good["message"] == "reloaded services=2 listeners=2 kept=1 opened=1 closed=0");
    CHECK(round_trip(b, "b\n") == "b\n");
    status = ask(superd.control_path(), "status");
    CHECK(status["last_reload"]["ok"] == true);
    CHECK(status["last_reload"]["message"] == good["message"]);
    CHECK_THAT(superd.log(), Catch::Contains("reloading by=control uid=0"));
}

TEST_CASE("pause leaves clients in the backlog until resume, across reloads", "[control][integration]")
{
    uint16_t port = free_port();
    Superd superd(echo_service(port));
    json paused = ask(superd.control_path(), "pause echo");
    CHECK(paused["ok"] == true);
    CHECK(paused["message"] == "paused service=echo listeners=1");
    CHECK(ask(superd.control_path(), "pause echo")["message"] == "service=echo was paused already");

    // The kernel completes the handshake; superd does not accept.
    UniqueFd client = connect_tcp(port);
    send_all(client.get(), "queued\n");
    REQUIRE(superd.reload());
    superd.settle();
    CHECK(quiet_for(client.get(), 200ms));
    json services = ask(superd.control_path(), "services");
    CHECK(services["services"][0]["state"] == "paused");
    CHECK(services["services"][0]["accepted"] == 0);

    CHECK(ask(superd.control_path(), "resume echo")["message"] == "resumed service=echo listeners=1");
    CHECK(read_n(client.get(), 7) == "queued\n");
    CHECK(ask(superd.control_path(), "services")["services"][0]["state"] == "serving");
    CHECK(ask(superd.control_path(), "pause nope")["error"] == "no service 'nope'");
}

TEST_CASE("kill signals a child's session and nothing that is not superd's child", "[control][integration]")
{
    uint16_t port = free_port();
    Superd superd(echo_service(port));
    UniqueFd client = connect_tcp(port);
    send_all(client.get(), "x\n");
    REQUIRE(read_n(client.get(), 2) == "x\n");
    json children = ask(superd.control_path(), "children");
    REQUIRE(children["children"].size() == 1);
    pid_t pid = children["children"][0]["pid"].get<pid_t>();

    CHECK(ask(superd.control_path(), "kill 1")["ok"] == false);
    CHECK(ask(superd.control_path(), "kill " + std::to_string(::getpid()))["ok"] == false);
    CHECK(ask(superd.control_path(), "kill abc")["error"] == "'abc' is not a process id");
    CHECK(ask(superd.control_path(), "kill " + std::to_string(pid) + " NOPE")["error"] == "unknown signal 'NOPE'");

    json killed = ask(superd.control_path(), "kill " + std::to_string(pid) + " sigkill");
    CHECK(killed["ok"] == true);
    CHECK(killed["message"] == "sent SIGKILL to pid=" + std::to_string(pid) + " service=echo");
    CHECK(read_to_eof(client.get()).empty());
    CHECK(superd.wait_for_log("status=\"signal 9"));
    CHECK(eventually([&] { return ask(superd.control_path(), "children")["children"].empty(); }));
    CHECK(ask(superd.control_path(), "services")["services"][0]["exited"]["signal"] == 1);
}

TEST_CASE("log-level changes what superd logs at once", "[control][integration]")
{
    uint16_t port = free_port();
    Superd superd(echo_service(port));
    round_trip(port, "a\n");
    CHECK(superd.count_in_log(" debug accepted service=echo") == 0);
    json changed = ask(superd.control_path(), "log-level debug");
    CHECK(changed["message"] == "log level debug (was info)");
    CHECK(ask(superd.control_path(), "status")["log_level"] == "debug");
    round_trip(port, "b\n");
    CHECK(superd.wait_for_log(" debug accepted service=echo"));
    CHECK(ask(superd.control_path(), "log-level loud")["ok"] == false);
}

TEST_CASE("Malformed requests get an error reply and the connection goes on", "[control][integration]")
{
    uint16_t port = free_port();
    Superd superd(echo_service(port));
    UniqueFd fd = connect_unix(superd.control_path());
    json unknown = ask(fd.get(), "frobnicate now");
    CHECK(unknown["ok"] == false);
    CHECK_THAT(unknown["error"].get<std::string>(), Catch::StartsWith("unknown command 'frobnicate' (status, "));
    CHECK(ask(fd.get(), "")["error"] == "empty request");
    CHECK(ask(fd.get(), "status extra")["error"] == "usage: status");
    CHECK(ask(fd.get(), "kill")["error"] == "usage: kill PID [SIGNAL]");
    // Bytes that are not UTF-8 come back replaced, not as a crash.
    CHECK(ask(fd.get(), "\xff\xfe\x01")["ok"] == false);
    CHECK(ask(fd.get(), "status\r")["ok"] == true);
    // A request with no end is cut off with an error, then the connection.
    send_all(fd.get(), std::string(superd::ControlServer::kMaxRequest + 100, 'x'));
    CHECK_THAT(read_line(fd.get()), Catch::Contains("request longer than 1024 bytes"));
    CHECK(read_to_eof(fd.get()).empty());
    CHECK(ask(superd.control_path(), "status")["ok"] == true);
    CHECK(round_trip(port, "alive\n") == "alive\n");
}

TEST_CASE("A silent client and one that never reads do not stall superd", "[control][integration]")
{
    uint16_t port = free_port();
    Superd superd(echo_service(port));
    auto started = std::chrono::steady_clock::now();
    UniqueFd silent = connect_unix(superd.control_path());

    // Never reads its replies: dropped once a MiB of them waits.
    UniqueFd greedy = connect_unix(superd.control_path());
    std::string requests;
    for (int i = 0; i < 200; ++i)
        requests += "services\n";
    size_t sent = 0;
    for (int round = 0; round < 2000; ++round) {
        ssize_t n = ::send(greedy.get(), requests.data(), requests.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN)
            break; // dropped
        if (n > 0)
            sent += static_cast<size_t>(n);
        if (n < 0
            && !eventually(
                [&] {
                    pollfd p{greedy.get(), POLLOUT, 0};
                    return ::poll(&p, 1, 0) > 0;
                },
                2s))
            break;
    }
    CHECK(superd.wait_for_log("more than 1048576 bytes of replies unread"));
    CHECK(sent > superd::ControlServer::kMaxUnread / 40);

    // Others are served all the while.
    CHECK(ask(superd.control_path(), "status")["ok"] == true);
    CHECK(round_trip(port, "served\n") == "served\n");

    // The silent one is closed after the idle time, not before.
    CHECK(read_to_eof(silent.get(), 10s).empty());
    CHECK(std::chrono::steady_clock::now() - started >= superd::ControlServer::kIdle - 100ms);
}

TEST_CASE("The control socket is where [superd] control says, moves with a reload, and is off with \"\"",
          "[control][integration]")
{
    uint16_t port = free_port();
    TempDir other;
    StartOptions options;
    options.control_from_config = true;
    Superd superd("[superd]\ncontrol = \"first.sock\"\n" + echo_service(port), options);
    std::string first = (superd.dir().path() / "first.sock").string(); // beside the config file
    std::string second = (other.path() / "second.sock").string();
    UniqueFd asking = connect_unix(first);

    superd.rewrite_config("[superd]\ncontrol = \"" + second + "\"\n" + echo_service(port));
    json moved = ask(asking.get(), "reload"); // answered on the connection to the old socket
    CHECK(moved["ok"] == true);
    CHECK(ask(second, "status")["control"] == second);
    CHECK(::access(first.c_str(), F_OK) != 0);
    CHECK(ask(asking.get(), "status")["ok"] == true);
    asking.reset();

    superd.rewrite_config("[superd]\ncontrol = \"\"\n" + echo_service(port));
    REQUIRE(superd.reload());
    CHECK(::access(second.c_str(), F_OK) != 0);
    CHECK(round_trip(port, "x\n") == "x\n");
}

TEST_CASE("A live control socket stops a second superd, and a stale one is replaced", "[control][integration]")
{
    Superd first(echo_service(free_port()));
    TempDir dir;
    std::string config = dir.write("superd.toml", echo_service(free_port()));
    auto second = run_superd({"--config", config, "--control", first.control_path()});
    CHECK(second.status == 1);
    CHECK_THAT(second.output, Catch::Contains("control socket: cannot listen on unix:" + first.control_path()
                                              + ": another process is listening there"));
    CHECK(ask(first.control_path(), "status")["ok"] == true);

    // Left by a superd that died: bound, never listened on, closed.
    std::string stale = (dir.path() / "stale.sock").string();
    {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, stale.c_str(), sizeof sun.sun_path - 1);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    }
    StartOptions options;
    options.control = stale;
    Superd replaced(echo_service(free_port()), options);
    CHECK(ask(stale, "status")["pid"] == replaced.pid());
}

TEST_CASE("control and control_group are checked when the file is read", "[control][config]")
{
    auto parse = [](const std::string& text) { return superd::parse_config(text, "/etc/superd/superd.toml"); };
    std::string service = "[service.echo]\nlisten = [\"127.0.0.1:7\"]\nbuiltin = \"echo\"\n";

    auto defaults = parse(service);
    REQUIRE(defaults);
    CHECK(defaults->control.path == "/run/superd/control.sock");
    CHECK_FALSE(defaults->control.group);

    auto relative = parse("[superd]\ncontrol = \"run/c.sock\"\ncontrol_group = \"adm\"\n" + service);
    REQUIRE(relative);
    CHECK(relative->control.path == "/etc/superd/run/c.sock");
    CHECK(relative->control.group == ::getgrnam("adm")->gr_gid);
    CHECK(relative->control.group_name == "adm");

    auto off = parse("[superd]\ncontrol = \"\"\n" + service);
    REQUIRE(off);
    CHECK(off->control.path.empty());

    auto group = parse("[superd]\ncontrol_group = \"no-such-group\"\n" + service);
    REQUIRE_FALSE(group);
    CHECK_THAT(group.error(), Catch::StartsWith("/etc/superd/superd.toml:2: control_group: "));
    auto type = parse("[superd]\ncontrol = 7\n" + service);
    REQUIRE_FALSE(type);
    CHECK_THAT(type.error(), Catch::StartsWith("/etc/superd/superd.toml:2: control must be the path"));
    auto length = parse("[superd]\ncontrol = \"/" + std::string(120, 'x') + "\"\n" + service);
    REQUIRE_FALSE(length);
    CHECK_THAT(length.error(), Catch::Contains(":2: control: the path is longer than a unix socket's 107 bytes"));
}

TEST_CASE("superd that may not make the default control socket starts without one, and says so",
          "[control][integration]")
{
    StartOptions options;
    options.wrapper = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    options.control_from_config = true;
    uint16_t port = free_port();
    Superd superd("[service.echo]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"echo\"\n", options);
    CHECK_THAT(superd.log(),
               Catch::Contains("warning no control socket: ") && Catch::Contains("/run/superd/control.sock"));
    CHECK(round_trip(port, "x\n") == "x\n");

    // Named in the file, it is required.
    TempDir dir;
    std::string config = dir.write("superd.toml", "[superd]\ncontrol = \"/proc/superd.sock\"\n[service.echo]\n"
                                                  "listen = [\""
                                                      + loopback(free_port()) + "\"]\nbuiltin = \"echo\"\n");
    auto refused = run_superd({"--config", config});
    CHECK(refused.status == 1);
    CHECK_THAT(refused.output, Catch::Contains("cannot start: control socket: "));
}

// Tests for superctl: its command line (cli.h) and the human form of each
// reply (format.h) as unit tests, from canned replies that follow the
// protocol; then the binary against a fake superd, a unix socket of the
// test's answered by a thread, for each exit status, --json and the exact
// request line it sends; last, against the real superd, every command in
// both forms (test_control.cpp tests the socket itself).
#include "superctl/cli.h"
#include "superctl/format.h"

#include "tests/harness.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

using namespace harness;
using nlohmann::json;
using superctl::Shape;

namespace {

// The command line as superctl would read it, with no $SUPERD_CONTROL.
superd::Result<superctl::Invocation> read_command_line(const std::vector<std::string>& args,
                                                       const std::string& environment = "")
{
    return superctl::parse_command_line(args, environment);
}

std::string formatted(Shape shape, const std::string& reply)
{
    auto text = superctl::format_reply(shape, json::parse(reply));
    INFO(reply);
    REQUIRE(text.ok());
    return *text;
}

const char kServices[] =
    R"({"ok":true,"services":[)"
    R"({"name":"echo","kind":"program","program":"/usr/libexec/superd/echo","protocol":"tcp","mode":"nowait",)"
    R"("listen":["127.0.0.1:7007","[::1]:7007"],"state":"serving","running":1,"accepted":10,"spawned":9,)"
    R"("failed_spawn":0,"refused":{"acl":1,"limit":0,"source":0,"rate":2,"fds":0},)"
    R"("exited":{"ok":8,"error":0,"signal":0},"timed_out":0},)"
    R"({"name":"daytime","kind":"builtin","program":"daytime","protocol":"tcp","mode":"nowait",)"
    R"("listen":["127.0.0.1:13"],"state":"paused","running":0,"accepted":1234,"spawned":0,)"
    R"("failed_spawn":0,"refused":{"acl":0,"limit":0,"source":0,"rate":0,"fds":0},)"
    R"("exited":{"ok":0,"error":0,"signal":0},"timed_out":0}]})";

const char kChildren[] = R"({"ok":true,"children":[)"
                         R"({"pid":4242,"service":"echo","client":"127.0.0.1:51234","age_seconds":3.25,)"
                         R"("timeout_left_seconds":null,"state":"running"},)"
                         R"({"pid":17,"service":"slow-service","client":"[::1]:40000","age_seconds":7300,)"
                         R"("timeout_left_seconds":245.5,"state":"lingering"}]})";

std::string status_reply(const std::string& last_reload, const std::string& last_upgrade = "null")
{
    return R"({"ok":true,"pid":123,"version":"0.9.0","started":1764428000.25,"uptime_seconds":12.5,)"
           R"("config_files":["/etc/superd/superd.toml","/etc/superd/superd.d/a.toml"],"services":4,)"
           R"("listeners":5,"running":2,"log_level":"info","control":"/run/superd/control.sock",)"
           R"("last_reload":)"
           + last_reload + R"(,"last_upgrade":)" + last_upgrade + R"(,"handed_to":null})";
}

// Times show in the local time zone: UTC here, for fixed text.
struct UtcZone {
    UtcZone()
    {
        ::setenv("TZ", "UTC", 1);
        ::tzset();
    }
};

} // namespace

TEST_CASE("superctl reads its command line: options anywhere, the request line from the words", "[superctl]")
{
    auto plain = read_command_line({"status"});
    REQUIRE(plain.ok());
    CHECK(plain->action == superctl::Invocation::Action::Run);
    CHECK(plain->socket == "/run/superd/control.sock");
    CHECK(plain->request == "status");
    CHECK(plain->timeout == std::chrono::seconds(30));
    CHECK(plain->command->shape == Shape::Status);
    CHECK_FALSE(plain->json);

    auto full = read_command_line({"-s", "/tmp/c.sock", "kill", "--json", "4242", "hup", "-t", "1.5"});
    REQUIRE(full.ok());
    CHECK(full->socket == "/tmp/c.sock");
    CHECK(full->json);
    CHECK(full->timeout == std::chrono::milliseconds(1500));
    CHECK(full->request == "kill 4242 hup");

    CHECK(read_command_line({"children"})->request == "children");
    CHECK(read_command_line({"children", "echo"})->request == "children echo");
    CHECK(read_command_line({"--socket=/x", "log-level", "debug"})->request == "log-level debug");
    CHECK(read_command_line({"--socket=/x", "log-level", "debug"})->socket == "/x");
    CHECK(read_command_line({"kill", "7"})->request == "kill 7");
    CHECK(read_command_line({"--timeout", "2", "reload"})->timeout == std::chrono::seconds(2));

    // $SUPERD_CONTROL names the socket; -s wins over it.
    CHECK(read_command_line({"status"}, "/env.sock")->socket == "/env.sock");
    CHECK(read_command_line({"-s", "/flag.sock", "status"}, "/env.sock")->socket == "/flag.sock");

    CHECK(read_command_line({"--help"})->action == superctl::Invocation::Action::Help);
    CHECK(read_command_line({"-V"})->action == superctl::Invocation::Action::Version);
}

TEST_CASE("superctl refuses a bad command line before it connects, saying why", "[superctl]")
{
    auto error = [](const std::vector<std::string>& args) {
        auto parsed = read_command_line(args);
        return parsed.ok() ? std::string("(accepted)") : parsed.error();
    };
    CHECK(error({}) == "no command given");
    CHECK(error({"--json"}) == "no command given");
    CHECK(error({"frobnicate"}) == "unknown command 'frobnicate'");
    CHECK(error({"status", "now"}) == "usage: superctl status");
    CHECK(error({"services", "echo"}) == "usage: superctl services");
    CHECK(error({"children", "a", "b"}) == "usage: superctl children [SERVICE]");
    CHECK(error({"pause"}) == "usage: superctl pause SERVICE");
    CHECK(error({"resume", "a", "b"}) == "usage: superctl resume SERVICE");
    CHECK(error({"log-level"}) == "usage: superctl log-level LEVEL");
    CHECK(error({"kill"}) == "usage: superctl kill PID [SIGNAL]");
    CHECK(error({"kill", "1", "TERM", "x"}) == "usage: superctl kill PID [SIGNAL]");
    for (const char* pid : {"0", "abc", "12x", "", "99999999999999"})
        CHECK_THAT(error({"kill", pid}), Catch::StartsWith("PID '" + std::string(pid) + "' is not a positive number"));
    // A negative number reads as an option, unless after "--".
    CHECK_THAT(error({"kill", "-5"}), Catch::Contains("unknown or incomplete option '-5'"));
    CHECK_THAT(error({"kill", "--", "-5"}), Catch::StartsWith("PID '-5' is not a positive number"));
    CHECK_THAT(error({"pause", "a b"}), Catch::Contains("holds a space"));
    CHECK_THAT(error({"pause", "a\nstatus"}), Catch::Contains("control character"));
    CHECK_THAT(error({"pause", ""}), Catch::Contains("is empty"));
    CHECK_THAT(error({"--frob", "status"}), Catch::Contains("unknown or incomplete option '--frob'"));
    CHECK_THAT(error({"status", "-s"}), Catch::Contains("unknown or incomplete option '-s'"));
    CHECK(error({"-s", "", "status"}) == "the socket path is empty");
    for (const char* timeout : {"0", "-1", "soon", "1s", "1e9", "nan"})
        CHECK_THAT(error({"-t", timeout, "status"}), Catch::StartsWith("timeout '" + std::string(timeout) + "'"));

    std::string usage = superctl::usage();
    for (const char* command : {"status", "services", "children [SERVICE]", "reload", "pause SERVICE", "resume SERVICE",
                                "kill PID [SIGNAL]", "log-level LEVEL"})
        CHECK_THAT(usage, Catch::Contains("  " + std::string(command) + "\n"));
}

TEST_CASE("Durations are short, with the precision that matters at their size", "[superctl]")
{
    CHECK(superctl::format_duration(0) == "0.0s");
    CHECK(superctl::format_duration(3.25) == "3.2s");
    CHECK(superctl::format_duration(59.9) == "59.9s");
    CHECK(superctl::format_duration(59.96) == "1m00s");
    CHECK(superctl::format_duration(245.5) == "4m05s");
    CHECK(superctl::format_duration(3599) == "59m59s");
    CHECK(superctl::format_duration(3600) == "1h00m");
    CHECK(superctl::format_duration(7300) == "2h01m");
    CHECK(superctl::format_duration(86400 + 4 * 3600 + 5) == "1d04h");
    CHECK(superctl::format_duration(-2) == "0.0s"); // a timeout overdue
}

TEST_CASE("Tables align their columns, numbers to the right, and no line ends in spaces", "[superctl]")
{
    CHECK(superctl::format_table({"NAME", "N", "NOTE"}, {false, true, false}, {{"a", "100", ""}, {"long", "7", "x"}})
          == "NAME    N  NOTE\n"
             "a     100\n"
             "long    7  x\n");
    CHECK(superctl::format_table({"NAME", "N"}, {false, true}, {}) == "NAME  N\n");
}

TEST_CASE("superctl services shows one aligned row per service, refusals with their reasons", "[superctl]")
{
    CHECK(formatted(Shape::Services, kServices)
          == "NAME     KIND     LISTEN                     STATE    RUNNING  ACCEPTED  REFUSED\n"
             "echo     program  127.0.0.1:7007,[::1]:7007  serving        1        10  3 (acl 1, rate 2)\n"
             "daytime  builtin  127.0.0.1:13               paused         0      1234  0\n");
    CHECK(formatted(Shape::Services, R"({"ok":true,"services":[]})")
          == "NAME  KIND  LISTEN  STATE  RUNNING  ACCEPTED  REFUSED\n");
}

TEST_CASE("superctl children shows ages, time left or '-', and each child's state", "[superctl]")
{
    CHECK(formatted(Shape::Children, kChildren)
          == " PID  SERVICE       CLIENT             AGE  TIMEOUT  STATE\n"
             "4242  echo          127.0.0.1:51234   3.2s        -  running\n"
             "  17  slow-service  [::1]:40000      2h01m    4m05s  lingering\n");
}

TEST_CASE("superctl status shows key: value lines, with the last reload's and upgrade's time and result", "[superctl]")
{
    UtcZone utc;
    std::string never = formatted(Shape::Status, status_reply("null"));
    CHECK(never
          == "pid:          123\n"
             "version:      0.9.0\n"
             "started:      2025-11-29 14:53:20 UTC (up 12.5s)\n"
             "config files: /etc/superd/superd.toml, /etc/superd/superd.d/a.toml\n"
             "services:     4\n"
             "listeners:    5\n"
             "running:      2\n"
             "log level:    info\n"
             "control:      /run/superd/control.sock\n"
             "last reload:  none since start\n"
             "last upgrade: none since start\n");
    CHECK_THAT(formatted(Shape::Status, status_reply(R"({"time":1764428100.5,"ok":true,)"
                                                     R"("message":"reloaded services=4 listeners=5"})")),
               Catch::Contains("\nlast reload:  2025-11-29 14:55:00 UTC: reloaded services=4 listeners=5\n"));
    CHECK_THAT(formatted(Shape::Status, status_reply(R"({"time":1764428100.5,"ok":false,)"
                                                     R"("message":"/etc/superd/superd.toml:7: bad"})")),
               Catch::Contains("\nlast reload:  2025-11-29 14:55:00 UTC: failed: /etc/superd/superd.toml:7: bad\n"));
    CHECK_THAT(
        formatted(Shape::Status, status_reply("null", R"({"time":1764428100.5,"pid":77,"state":"failed",)"
                                                      R"("reason":"/etc/superd/superd.toml:7: bad"})")),
        Catch::EndsWith("\nlast upgrade: 2025-11-29 14:55:00 UTC: pid 77 failed: /etc/superd/superd.toml:7: bad\n"));
    CHECK_THAT(
        formatted(Shape::Status, status_reply("null", R"({"time":1764428100.5,"pid":77,"state":"ready","reason":""})")),
        Catch::EndsWith("\nlast upgrade: 2025-11-29 14:55:00 UTC: pid 77 ready\n"));
}

TEST_CASE("A reply superd would not give is an error, not a crash", "[superctl]")
{
    for (const char* reply : {R"({"ok":true})", R"({"ok":true,"services":[{"name":"x"}]})",
                              R"({"ok":true,"services":"many"})", R"({"ok":true,"message":7})"}) {
        INFO(reply);
        CHECK_FALSE(superctl::format_reply(Shape::Services, json::parse(reply)).ok());
        CHECK_FALSE(superctl::format_reply(Shape::Message, json::parse(reply)).ok());
    }
    CHECK_FALSE(superctl::format_reply(Shape::Status, json::parse(status_reply(R"({"time":1})"))).ok());
}

TEST_CASE("A reply becomes output and an exit status: 0 done, 1 refused, 3 not a reply", "[superctl]")
{
    auto invocation = *read_command_line({"-s", "/c.sock", "pause", "echo"});
    auto done = superctl::present(invocation, R"({"ok":true,"message":"paused service=echo listeners=2"})");
    CHECK(done.status == 0);
    CHECK(done.out == "paused service=echo listeners=2\n");
    CHECK(done.err.empty());

    auto refused = superctl::present(invocation, R"({"ok":false,"error":"no service 'echo'"})");
    CHECK(refused.status == 1);
    CHECK(refused.out.empty());
    CHECK(refused.err == "superctl: no service 'echo'\n");

    auto garbage = superctl::present(invocation, "HTTP/1.0 400 Bad Request");
    CHECK(garbage.status == 3);
    CHECK(garbage.err == "superctl: the reply from /c.sock is not JSON: HTTP/1.0 400 Bad Request\n");
    for (const char* odd : {"[1,2]", R"({"message":"x"})", R"({"ok":"yes"})"}) {
        INFO(odd);
        auto outcome = superctl::present(invocation, odd);
        CHECK(outcome.status == 3);
        CHECK_THAT(outcome.err, Catch::Contains("is not a JSON object with \"ok\""));
    }
    auto incomplete = superctl::present(invocation, R"({"ok":true})");
    CHECK(incomplete.status == 3);
    CHECK_THAT(incomplete.err, Catch::StartsWith("superctl: unexpected reply from /c.sock: "));

    // --json: the line as it came, whatever superd said.
    auto as_json = *read_command_line({"--json", "pause", "echo"});
    std::string odd_spacing = R"({ "message" : "paused",   "ok":true })";
    CHECK(superctl::present(as_json, odd_spacing).out == odd_spacing + "\n");
    auto json_refused = superctl::present(as_json, R"({"ok":false,"error":"no"})");
    CHECK(json_refused.status == 1);
    CHECK(json_refused.out == "{\"ok\":false,\"error\":\"no\"}\n");
    CHECK(json_refused.err == "superctl: no\n");
}

// The binary against a fake superd.

namespace {

// A unix stream socket listening at `path`.
UniqueFd listen_unix(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof sun.sun_path);
    std::memcpy(sun.sun_path, path.data(), path.size());
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    REQUIRE(::listen(fd.get(), 8) == 0);
    return fd;
}

bool readable(int fd, std::chrono::milliseconds limit)
{
    pollfd p = {fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

// superd's stand-in: takes one connection, reads its request line, and
// then answers it as told. Every wait is bounded (10 s); the thread is
// joined by the destructor at the latest.
class FakeSuperd {
public:
    enum class Answer {
        Reply,  // the reply line, then close
        Close,  // close without a word
        Silent, // say nothing until the client goes away
    };

    FakeSuperd(const TempDir& dir, Answer answer, std::string reply = "")
        : path_((dir.path() / "control.sock").string()), listener_(listen_unix(path_))
    {
        thread_ = std::thread([this, answer, reply = std::move(reply)] { serve(answer, reply); });
    }
    ~FakeSuperd() { finish(); }

    const std::string& path() const { return path_; }
    // What the client sent, once the exchange is over.
    std::string request()
    {
        finish();
        return request_;
    }

private:
    void finish()
    {
        if (thread_.joinable())
            thread_.join();
    }

    void serve(Answer answer, const std::string& reply)
    {
        if (!readable(listener_.get(), 10s))
            return;
        UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        char buffer[4096];
        while (request_.find('\n') == std::string::npos && readable(client.get(), 10s)) {
            ssize_t n = ::read(client.get(), buffer, sizeof buffer);
            if (n <= 0)
                break;
            request_.append(buffer, static_cast<size_t>(n));
        }
        if (answer == Answer::Reply) {
            std::string line = reply + "\n";
            [[maybe_unused]] ssize_t sent = ::send(client.get(), line.data(), line.size(), MSG_NOSIGNAL);
        } else if (answer == Answer::Silent) {
            while (readable(client.get(), 10s) && ::read(client.get(), buffer, sizeof buffer) > 0) {
            }
        }
    }

    std::string path_;
    UniqueFd listener_;
    std::string request_;
    std::thread thread_;
};

struct Run {
    int status = -1;
    std::string out;
    std::string err;
};

std::string read_text(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Runs the superctl binary with `args`, $SUPERD_CONTROL set to
// `environment` (unset when empty), its stdout and stderr apart.
Run run_superctl(const std::vector<std::string>& args, const std::string& environment = "")
{
    TempDir dir;
    std::string err = (dir.path() / "stderr").string();
    std::vector<std::string> argv = {"/usr/bin/env", "-u", "SUPERD_CONTROL"};
    if (!environment.empty())
        argv.push_back("SUPERD_CONTROL=" + environment);
    argv.insert(argv.end(), {"/bin/sh", "-c", "err=$1; shift; exec \"$@\" 2>\"$err\"", "sh", err, SUPERCTL_BINARY});
    argv.insert(argv.end(), args.begin(), args.end());
    auto finished = run_command(argv, 30s);
    return {finished.status, finished.output, read_text(err)};
}

} // namespace

TEST_CASE("superctl sends one request line and shows the reply, exit 0", "[superctl][integration]")
{
    TempDir dir;
    FakeSuperd fake(dir, FakeSuperd::Answer::Reply, kServices);
    auto run = run_superctl({"-s", fake.path(), "services"});
    CHECK(fake.request() == "services\n");
    CHECK(run.status == 0);
    CHECK(run.err.empty());
    CHECK(run.out == formatted(Shape::Services, kServices));
}

TEST_CASE("superctl's request line holds the command and its arguments as given", "[superctl][integration]")
{
    TempDir dir;
    {
        FakeSuperd fake(dir, FakeSuperd::Answer::Reply, R"({"ok":true,"message":"sent SIGHUP to pid=4242"})");
        auto run = run_superctl({"kill", "4242", "hup", "-s", fake.path()});
        CHECK(fake.request() == "kill 4242 hup\n");
        CHECK(run.status == 0);
        CHECK(run.out == "sent SIGHUP to pid=4242\n");
    }
    std::filesystem::remove(dir.path() / "control.sock");
    {
        // From $SUPERD_CONTROL.
        FakeSuperd fake(dir, FakeSuperd::Answer::Reply, kChildren);
        auto run = run_superctl({"children", "echo"}, fake.path());
        CHECK(fake.request() == "children echo\n");
        CHECK(run.status == 0);
        CHECK_THAT(run.out, Catch::StartsWith(" PID  SERVICE"));
    }
}

TEST_CASE("superctl --json prints the reply as it came, one line on stdout", "[superctl][integration]")
{
    TempDir dir;
    std::string reply = R"json({ "ok": true,  "message": "log level debug (was info)", "extra": [1, 2] })json";
    {
        FakeSuperd fake(dir, FakeSuperd::Answer::Reply, reply);
        auto run = run_superctl({"-s", fake.path(), "--json", "log-level", "debug"});
        CHECK(fake.request() == "log-level debug\n");
        CHECK(run.status == 0);
        CHECK(run.out == reply + "\n");
        CHECK(run.err.empty());
    }
    std::filesystem::remove(dir.path() / "control.sock");
    {
        std::string refusal = R"({"ok":false,"error":"no service 'x'"})";
        FakeSuperd fake(dir, FakeSuperd::Answer::Reply, refusal);
        auto run = run_superctl({"-s", fake.path(), "--json", "pause", "x"});
        CHECK(run.status == 1);
        CHECK(run.out == refusal + "\n");
        CHECK(run.err == "superctl: no service 'x'\n");
    }
}

TEST_CASE("superctl exits 1 with superd's message when superd refuses", "[superctl][integration]")
{
    TempDir dir;
    FakeSuperd fake(dir, FakeSuperd::Answer::Reply,
                    R"({"ok":false,"error":"/etc/superd/superd.toml:7: service 'x': unknown key 'colour'"})");
    auto run = run_superctl({"-s", fake.path(), "reload"});
    CHECK(fake.request() == "reload\n");
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err == "superctl: /etc/superd/superd.toml:7: service 'x': unknown key 'colour'\n");
}

TEST_CASE("superctl exits 2 with its usage for a bad command line, without connecting", "[superctl][integration]")
{
    TempDir dir;
    std::string path = (dir.path() / "control.sock").string();
    UniqueFd listener = listen_unix(path);
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{{"-s", path},
                                               {"-s", path, "kill", "abc"},
                                               {"-s", path, "pause"},
                                               {"-s", path, "frob"},
                                               {"-s", path, "--bogus", "status"},
                                               {"-s", path, "-t", "0", "status"}}) {
        auto run = run_superctl(args);
        INFO(run.err);
        CHECK(run.status == 2);
        CHECK(run.out.empty());
        CHECK_THAT(run.err, Catch::StartsWith("superctl: ") && Catch::Contains("usage: superctl [-s SOCKET]"));
    }
    CHECK_FALSE(readable(listener.get(), 0ms)); // nobody connected

    auto help = run_superctl({"--help"});
    CHECK(help.status == 0);
    CHECK_THAT(help.out, Catch::StartsWith("usage: superctl"));
    auto version = run_superctl({"--version"});
    CHECK(version.status == 0);
    CHECK_THAT(version.out, Catch::StartsWith("superctl ") && Catch::EndsWith("\n"));
}

TEST_CASE("superctl exits 3 when superd cannot be reached, and says which way", "[superctl][integration]")
{
    TempDir dir;
    std::string missing = (dir.path() / "none.sock").string();
    auto no_socket = run_superctl({"-s", missing, "status"});
    CHECK(no_socket.status == 3);
    CHECK(no_socket.err == "superctl: cannot connect to " + missing + ": No such file or directory\n");
    // The default, or $SUPERD_CONTROL's, names the path it tried.
    auto from_environment = run_superctl({"status"}, missing);
    CHECK(from_environment.status == 3);
    CHECK(from_environment.err == no_socket.err);

    {
        FakeSuperd closes(dir, FakeSuperd::Answer::Close);
        auto run = run_superctl({"-s", closes.path(), "status"});
        CHECK(closes.request() == "status\n");
        CHECK(run.status == 3);
        CHECK(run.err == "superctl: " + closes.path() + " closed the connection without a reply\n");
    }
    std::filesystem::remove(dir.path() / "control.sock");
    {
        FakeSuperd silent(dir, FakeSuperd::Answer::Silent);
        auto run = run_superctl({"-s", silent.path(), "-t", "1", "services"});
        CHECK(silent.request() == "services\n");
        CHECK(run.status == 3);
        CHECK(run.err == "superctl: no reply from " + silent.path() + " within 1 s\n");
    }
    std::filesystem::remove(dir.path() / "control.sock");
    {
        FakeSuperd garbage(dir, FakeSuperd::Answer::Reply, "SSH-2.0-OpenSSH_9.2");
        auto run = run_superctl({"-s", garbage.path(), "status"});
        CHECK(run.status == 3);
        CHECK(run.out.empty());
        CHECK(run.err == "superctl: the reply from " + garbage.path() + " is not JSON: SSH-2.0-OpenSSH_9.2\n");
    }
}

TEST_CASE("superctl drives a real superd: every command, as columns and as JSON", "[superctl][integration]")
{
    uint16_t port = free_port(), daytime = free_port();
    std::string services = service_toml("echo", {loopback(port)}, service_binary("echo")) + "timeout = \"60s\"\n"
                           + "[service.daytime]\nlisten = [\"" + loopback(daytime) + "\"]\nbuiltin = \"daytime\"\n";
    Superd superd(services);
    const std::string socket = superd.control_path();
    auto human = [&](const std::vector<std::string>& args) {
        std::vector<std::string> argv = {"-s", socket};
        argv.insert(argv.end(), args.begin(), args.end());
        return run_superctl(argv);
    };
    auto as_json = [&](const std::vector<std::string>& args) {
        std::vector<std::string> argv = {"-s", socket, "--json"};
        argv.insert(argv.end(), args.begin(), args.end());
        Run run = run_superctl(argv);
        INFO(run.out << run.err);
        REQUIRE_FALSE(run.out.empty());
        CHECK(run.out.back() == '\n');
        return std::pair<int, json>(run.status, json::parse(run.out));
    };

    UniqueFd client = connect_tcp(port);
    send_all(client.get(), "hi\n");
    REQUIRE(read_n(client.get(), 3) == "hi\n");

    Run status = human({"status"});
    CHECK(status.status == 0);
    CHECK_THAT(status.out, Catch::Contains("pid:          " + std::to_string(superd.pid()) + "\n")
                               && Catch::Contains("services:     2\n") && Catch::Contains("running:      1\n")
                               && Catch::Contains("control:      " + socket + "\n")
                               && Catch::Contains("last reload:  none since start\n"));
    auto [status_code, status_json] = as_json({"status"});
    CHECK(status_code == 0);
    CHECK(status_json["pid"] == superd.pid());

    Run table = human({"services"});
    CHECK(table.status == 0);
    CHECK_THAT(table.out, Catch::StartsWith("NAME     KIND     LISTEN ")
                              && Catch::Matches("(.|\n)*\necho +program +127\\.0\\.0\\.1:" + std::to_string(port)
                                                + " +serving +1 +1 +0\n(.|\n)*")
                              && Catch::Contains("daytime  builtin"));
    CHECK(as_json({"services"}).second["services"][1]["name"] == "daytime");

    auto [children_code, children] = as_json({"children"});
    CHECK(children_code == 0);
    REQUIRE(children["children"].size() == 1);
    std::string pid = std::to_string(children["children"][0]["pid"].get<int>());
    Run rows = human({"children", "echo"});
    CHECK(rows.status == 0);
    CHECK_THAT(rows.out,
               Catch::Matches("(.|\n)*\n *" + pid + " +echo +127\\.0\\.0\\.1:\\d+ +[0-9.]+s +[0-9.]+s +running\n"));
    Run unknown = human({"children", "nope"});
    CHECK(unknown.status == 1);
    CHECK(unknown.err == "superctl: no service 'nope'\n");

    Run pause = human({"pause", "echo"});
    CHECK(pause.status == 0);
    CHECK(pause.out == "paused service=echo listeners=1\n");
    CHECK_THAT(human({"services"}).out, Catch::Contains("paused"));
    CHECK(as_json({"resume", "echo"}).second["message"] == "resumed service=echo listeners=1");

    CHECK(human({"log-level", "debug"}).out == "log level debug (was info)\n");
    CHECK(as_json({"log-level", "info"}).second["message"] == "log level info (was debug)");

    Run reload = human({"reload"});
    CHECK(reload.status == 0);
    CHECK(reload.out == "reloaded services=2 listeners=2 kept=2 opened=0 closed=0\n");
    superd.rewrite_config(services + "[service.broken]\nlisten = [\"" + loopback(free_port())
                          + "\"]\nprogram = \"nope\"\n");
    std::string file = (superd.dir().path() / "superd.toml").string();
    Run refused = human({"reload"});
    CHECK(refused.status == 1);
    CHECK_THAT(refused.err, Catch::StartsWith("superctl: " + file + ":"));
    auto [refused_code, refused_json] = as_json({"reload"});
    CHECK(refused_code == 1);
    CHECK(refused_json["ok"] == false);
    CHECK_THAT(human({"status"}).out, Catch::Contains(": failed: " + file + ":"));

    CHECK(human({"kill", "1"}).status == 1);
    Run kill = human({"kill", pid});
    CHECK(kill.status == 0);
    CHECK(kill.out == "sent SIGTERM to pid=" + pid + " service=echo\n");
    CHECK(read_to_eof(client.get()).empty());
    CHECK(eventually([&] { return as_json({"children"}).second["children"].empty(); }));
}

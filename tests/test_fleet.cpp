// The README's fleet, as shipped: etc/fleet/haproxy.cfg in front of two
// superd running etc/fleet/superd.toml, the same files with only their
// port numbers replaced, so that runs side by side never collide. Real
// HAProxy (Debian's package), real superd, loopback only.
#include "tests/harness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

using namespace harness;

namespace {

std::string source_file(const std::string& path)
{
    std::ifstream in(std::string(SOURCE_DIR) + "/" + path);
    INFO(path);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// `text` with each whole word of `replace` replaced, every one of which
// must be there: a file that no longer says what the test replaces fails
// here rather than run on the README's ports.
std::string rewrite(std::string text, const std::map<std::string, std::string>& replace)
{
    for (const auto& [from, to] : replace) {
        std::regex word("\\b" + std::regex_replace(from, std::regex("\\."), "\\.") + "\\b");
        INFO(from << " is not in the file");
        REQUIRE(std::regex_search(text, word));
        text = std::regex_replace(text, word, to);
    }
    return text;
}

// One client of whoami through HAProxy, off the test's thread (no Catch2
// there): the reply, or "" if none came within 5 s.
std::string ask(uint16_t port)
{
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval limit{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
        return "";
    std::string reply;
    char buffer[256];
    for (ssize_t n; (n = ::recv(fd.get(), buffer, sizeof buffer, 0)) > 0;)
        reply.append(buffer, static_cast<size_t>(n));
    return reply;
}

// The new superd of an upgrade, ended by pid: it outlives the old one,
// whose Superd ends only what is still its child.
struct Successor {
    pid_t pid = -1;
    ~Successor() { kill_and_reap(pid); }
};

} // namespace

TEST_CASE("The README's fleet is the files in etc/fleet, as they are", "[fleet]")
{
    const std::string readme = source_file("README.md");
    for (std::string name : {"haproxy.cfg", "superd.toml"}) {
        INFO("README.md does not quote etc/fleet/" << name << " whole");
        CHECK(readme.find("\n" + source_file("etc/fleet/" + name) + "```\n") != std::string::npos);
    }
}

TEST_CASE("The README's fleet: HAProxy spreads clients over two superd, which see the real client",
          "[fleet][proxy][integration]")
{
    const std::string haproxy = "/usr/sbin/haproxy";
    INFO("haproxy (Debian's package; scripts/install-deps installs it) is not at " << haproxy);
    REQUIRE(::access(haproxy.c_str(), X_OK) == 0);
    // superd's ports, and HAProxy's own (7000) besides.
    std::map<std::string, std::string> ports{{"7100", std::to_string(free_port())},
                                             {"7101", std::to_string(free_port())}};
    const std::string config = rewrite(source_file("etc/fleet/superd.toml"), ports);
    ports["7000"] = std::to_string(free_port());
    Superd a(config);
    Superd b(rewrite(config, {{"127.0.0.11", "127.0.0.12"}}));

    TempDir dir;
    std::string cfg = dir.write("haproxy.cfg", rewrite(source_file("etc/fleet/haproxy.cfg"), ports));
    auto check = run_command({haproxy, "-c", "-f", cfg});
    INFO(check.output);
    REQUIRE(check.status == 0);
    Process server({haproxy, "-db", "-f", cfg});
    uint16_t front = static_cast<uint16_t>(std::stoi(ports.at("7000")));
    REQUIRE(eventually([&] { return server.exited() || !refused(front); }));
    REQUIRE_FALSE(server.exited());

    // Each instance's health checks come and pass (HAProxy's first within
    // its `inter` of 1 s), and spawn nothing.
    for (Superd* instance : {&a, &b}) {
        INFO("HAProxy: " << server.output() << "\nsuperd: " << instance->log());
        CHECK(eventually([&] { return counter(instance->counters("health"), "accepted") >= 1; }, 5s));
        std::string health = instance->counters("health");
        CHECK(counter(health, "refused_proxy") == 0);
        CHECK(counter(health, "spawned") == 0);
    }

    // Round robin over both; each client is told its own address and port,
    // not HAProxy's. (The probe for HAProxy's port above went through too,
    // and was served long since.)
    auto spawned = [](Superd& instance) { return counter(instance.counters("whoami"), "spawned"); };
    long before_a = spawned(a), before_b = spawned(b);
    for (int i = 0; i < 4; ++i) {
        UniqueFd client = connect_tcp(front, "127.0.0.1", "127.0.0.2");
        std::string wanted = "you are 127.0.0.2 port " + std::to_string(local_port(client.get())) + "\n";
        INFO("HAProxy: " << server.output() << "\nsuperd a: " << a.log() << "\nsuperd b: " << b.log());
        CHECK(read_to_eof(client.get()) == wanted);
    }
    long on_a = spawned(a) - before_a, on_b = spawned(b) - before_b;
    CHECK(on_a >= 1);
    CHECK(on_b >= 1);
    CHECK(on_a + on_b == 4);

    // The checks are logged at debug: no line of a check's at info (the
    // counters' lines name no peer).
    for (Superd* instance : {&a, &b}) {
        INFO(instance->log());
        CHECK(instance->count_in_log("service=health peer=") == 0);
    }

    // Rolling an upgrade as the README does, one instance at a time with
    // superctl, while clients keep coming through HAProxy: not one fails.
    std::atomic<bool> rolling{true};
    std::atomic<int> served{0}, failed{0};
    std::thread clients([&] {
        while (rolling)
            ++(ask(front).starts_with("you are 127.0.0.1 port ") ? served : failed);
    });
    Successor successors[2];
    int next = 0;
    for (Superd* instance : {&a, &b}) {
        auto rolled = run_command({SUPERCTL_BINARY, "-s", instance->control_path(), "upgrade"}, 30s);
        INFO(rolled.output << "\nsuperd: " << instance->log());
        std::smatch m;
        REQUIRE(std::regex_search(rolled.output, m, std::regex("^upgraded: pid ([0-9]+) serves\n")));
        successors[next++].pid = static_cast<pid_t>(std::stol(m[1]));
        CHECK(rolled.status == 0);
        CHECK(instance->wait_exit() == 0);
    }
    int before = served;
    REQUIRE(eventually([&] { return served >= before + 10; }));
    rolling = false;
    clients.join();
    INFO("HAProxy: " << server.output());
    CHECK(failed == 0);
    CHECK(server.output().find(" is DOWN") == std::string::npos);
}

// Smoke runs of the benchmark's tools, so they never rot: a few hundred
// connections each, checked for errors and output format, never for speed
// (bench/compare measures that, side by side).
#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <csignal>
#include <random>
#include <regex>
#include <thread>

using namespace harness;

namespace {

std::string bench(const std::string& tool) { return std::string(BENCH_DIR) + "/" + tool; }

// `connections` round trips through loadgen, all of them without an error.
// The duration only bounds a run that ends at its count: 100 TLS handshakes
// under ASan on a loaded machine once took more than 20 s.
void check_run(uint16_t port, const std::vector<std::string>& extra = {}, int connections = 300)
{
    const std::string count = std::to_string(connections);
    std::vector<std::string> argv{
        bench("loadgen"),    "--port", std::to_string(port), "--concurrency", "8", "--duration", "50",
        "--max-connections", count};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto run = run_command(argv, 60s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(std::regex_search(run.output, std::regex("conn_per_s=[0-9.]+ completed=" + count
                                                   + R"( errors=0 p50_us=\d+ p99_us=\d+ max_us=\d+)")));
}

// A reference server started by the test, ended by pid.
struct Reference {
    pid_t pid;
    explicit Reference(std::vector<std::string> argv)
    {
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        pid = ::fork();
        if (pid == 0) {
            ::execv(args[0], args.data());
            ::_exit(127);
        }
    }
    ~Reference() { kill_and_reap(pid); }
};

void wait_listening(uint16_t port)
{
    for (int i = 0; i < 200; ++i) {
        try {
            connect_tcp(port);
            return;
        } catch (const std::exception&) {
            std::this_thread::sleep_for(20ms);
        }
    }
    FAIL("nothing listens on port " << port);
}

// A fetch run's summary line, for `bytes` in all over `connections`, without errors.
std::regex fetch_summary(long long bytes, int connections)
{
    return std::regex("bytes=" + std::to_string(bytes) + R"( seconds=[0-9.]+ mb_per_s=[0-9.]+ connections=)"
                      + std::to_string(connections) + " errors=0");
}

std::string random_bytes(size_t size)
{
    std::mt19937 gen(13);
    std::uniform_int_distribution<int> byte(0, 255);
    std::string out(size, '\0');
    for (auto& c : out)
        c = static_cast<char>(byte(gen));
    return out;
}

// A self-signed ECDSA P-256 certificate for localhost in `dir`: NAME.pem
// (its own CA, for the clients' --tls) and NAME.key, made 0600 as superd
// requires. Returns the certificate's path.
std::string self_signed(const TempDir& dir, const std::string& name)
{
    const std::string cert = (dir.path() / (name + ".pem")).string(), key = (dir.path() / (name + ".key")).string();
    auto made = run_command({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-nodes", "-days", "30", "-subj", "/CN=localhost", "-keyout", key, "-out", cert});
    INFO(made.output);
    REQUIRE(made.status == 0);
    ::chmod(key.c_str(), 0600);
    return cert;
}

} // namespace

TEST_CASE("The load generator drives superd's spawned and builtin services", "[bench][integration]")
{
    uint16_t cat = free_port(), echo = free_port();
    Superd superd(service_toml("cat", {loopback(cat)}, "/bin/cat") + "[service.echo]\nlisten = [\"" + loopback(echo)
                  + "\"]\nbuiltin = \"echo\"\n");
    check_run(cat);
    check_run(echo);
    CHECK(superd.settled_count("spawned service=cat", 300) == 300);
}

TEST_CASE("The load generator's PROXY headers name its made-up client to superd", "[bench][proxy][integration]")
{
    uint16_t v1 = free_port(), v2 = free_port();
    auto proxied = [](const std::string& name, uint16_t port, const std::string& version) {
        return service_toml(name, {loopback(port)}, "/bin/cat") + "proxy_protocol = \"" + version
               + "\"\nproxy_from = [\"127.0.0.1/32\"]\n";
    };
    Superd superd(proxied("v1", v1, "v1") + proxied("v2", v2, "v2"));
    check_run(v1, {"--proxy", "v1"}, 50);
    check_run(v2, {"--proxy", "v2"}, 50);
    CHECK(superd.settled_count("spawned service=v1 pid=", 50) == 50);
    CHECK(superd.settled_count("spawned service=v2 pid=", 50) == 50);
    // Every one of them from the header's client.
    CHECK(superd.count_in_log("peer=192.0.2.1:40000") >= 100);
    CHECK(superd.count_in_log("peer=127.0.0.1:") == 0);
}

TEST_CASE("The reference servers answer the load generator", "[bench][integration]")
{
    uint16_t spawn_port = free_port(), echo_port = free_port();
    Reference spawner({bench("ref_spawn"), std::to_string(spawn_port), "/bin/cat"});
    Reference echoer({bench("ref_echo"), std::to_string(echo_port)});
    wait_listening(spawn_port);
    wait_listening(echo_port);
    check_run(spawn_port);
    check_run(echo_port);
    check_run(echo_port, {"--no-shutdown"});
}

TEST_CASE("The file reference serves its file whole by sendfile and by copy, and fetch counts it",
          "[bench][integration]")
{
    TempDir dir;
    const std::string content = random_bytes(3'000'000);
    const std::string path = dir.write("file", content);
    for (std::string mode : {"", "--copy"}) {
        INFO("ref_file " << mode);
        uint16_t port = free_port();
        std::vector<std::string> argv{bench("ref_file"), std::to_string(port), path};
        if (!mode.empty())
            argv.push_back(mode);
        Reference server(argv);
        wait_listening(port);

        UniqueFd fd = connect_tcp(port);
        CHECK(read_to_eof(fd.get()) == content);

        auto run =
            run_command({bench("fetch"), "--port", std::to_string(port), "--connections", "4", "--repeat", "2"}, 60s);
        INFO(run.output);
        CHECK(run.status == 0);
        CHECK(std::regex_search(run.output, fetch_summary(8 * 3'000'000LL, 8)));
    }
}

TEST_CASE("fetch sends, half-closes and counts the echo, and reports a refused port", "[bench][integration]")
{
    uint16_t port = free_port();
    Reference echoer({bench("ref_echo"), std::to_string(port)});
    wait_listening(port);
    auto run =
        run_command({bench("fetch"), "--port", std::to_string(port), "--connections", "2", "--send", "1000000"}, 60s);
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(std::regex_search(run.output, fetch_summary(2'000'000, 2)));

    auto refused = run_command({bench("fetch"), "--port", std::to_string(free_port()), "--connections", "3"}, 30s);
    INFO(refused.output);
    CHECK(refused.status == 1);
    CHECK_THAT(refused.output, Catch::Contains("errors=3"));
}

TEST_CASE("The load generator counts a refused port as errors and does not hang", "[bench][integration]")
{
    auto run = run_command({bench("loadgen"), "--port", std::to_string(free_port()), "--duration", "1",
                            "--max-connections", "20", "--timeout", "2"},
                           30s);
    CHECK(run.status == 1);
    CHECK_THAT(run.output, Catch::Contains("errors=20"));
}

TEST_CASE("The load generator and fetch speak TLS to superd, and fail where the certificate is not trusted",
          "[bench][integration]")
{
    TempDir dir;
    const std::string cert = self_signed(dir, "server"), stranger = self_signed(dir, "stranger");
    uint16_t port = free_port();
    Superd superd(service_toml("tls-cat", {loopback(port)}, "/bin/cat") + "[service.tls-cat.tls]\ncert = \"" + cert
                  + "\"\nkey = \"" + (dir.path() / "server.key").string() + "\"\n");
    check_run(port, {"--tls", cert}, 100);
    check_run(port, {"--tls", cert, "--no-shutdown"}, 100);

    auto bulk = run_command(
        {bench("fetch"), "--port", std::to_string(port), "--connections", "2", "--send", "1000000", "--tls", cert},
        60s);
    INFO(bulk.output);
    CHECK(bulk.status == 0);
    CHECK(std::regex_search(bulk.output, fetch_summary(2'000'000, 2)));

    auto untrusted = run_command({bench("loadgen"), "--port", std::to_string(port), "--duration", "20",
                                  "--max-connections", "20", "--tls", stranger},
                                 60s);
    INFO(untrusted.output);
    CHECK(untrusted.status == 1);
    CHECK_THAT(untrusted.output, Catch::Contains("tls=20") && Catch::Contains("certificate verify failed"));
}

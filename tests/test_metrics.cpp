// The metrics page: the writer of Prometheus' text format and the process
// facts (unit), the HTTP side of the metrics builtin (unit), and the real
// superd's page compared with the connections a test made (integration),
// checked by promtool.
#include "superd/builtin_metrics.h"
#include "superd/metrics.h"
#include "tests/harness.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

using namespace superd;
using namespace harness;

TEST_CASE("Metric label values and HELP text are escaped as the text format wants", "[metrics]")
{
    CHECK(escape_label_value("plain") == "plain");
    CHECK(escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    CHECK(escape_label_value("tab\tstays, UTF-8 too: é") == "tab\tstays, UTF-8 too: é");
    // HELP text leaves double quotes alone.
    CHECK(escape_help("a\\b\"c\nd") == "a\\\\b\"c\\nd");
}

TEST_CASE("Metric numbers: integers exact, doubles shortest round-trip, infinities as +Inf", "[metrics]")
{
    CHECK(metric_number(uint64_t{0}) == "0");
    CHECK(metric_number(std::numeric_limits<uint64_t>::max()) == "18446744073709551615");
    CHECK(metric_number(0.005) == "0.005");
    CHECK(metric_number(3600.0) == "3600");
    CHECK(metric_number(-2.5) == "-2.5");
    CHECK(metric_number(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(metric_number(-std::numeric_limits<double>::infinity()) == "-Inf");
    CHECK(metric_number(std::nan("")) == "NaN");
    for (double d : {1.0 / 3, 0.1 + 0.2, 1e300, 5e-324, 1781234567.123456}) {
        std::string text = metric_number(d);
        INFO(text);
        CHECK(std::strtod(text.c_str(), nullptr) == d);
        CHECK(text.size() <= 24); // shortest, not 17 digits and padding
    }
    CHECK(metric_number(0.1 + 0.2) == "0.30000000000000004");
}

TEST_CASE("A metrics page writes families, labelled samples and histograms", "[metrics]")
{
    MetricsPage page;
    page.family("x_total", MetricsPage::Type::kCounter, "Things\nthat \\happened.");
    page.sample("x_total", {{"service", "a\"b"}, {"reason", "acl"}}, uint64_t{7});
    page.sample("x_total", {}, 0.5);
    CHECK(page.text()
          == "# HELP x_total Things\\nthat \\\\happened.\n# TYPE x_total counter\n"
             "x_total{service=\"a\\\"b\",reason=\"acl\"} 7\nx_total 0.5\n");

    DurationHistogram h;
    h.observe(std::chrono::milliseconds(3));
    h.observe(std::chrono::milliseconds(200));
    h.observe(std::chrono::hours(2));
    MetricsPage hist;
    hist.family("t_seconds", MetricsPage::Type::kHistogram, "Times.");
    hist.histogram("t_seconds", {{"service", "s"}}, h);
    std::vector<std::string> lines;
    std::istringstream in(hist.text());
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    REQUIRE(lines.size() == 2 + DurationHistogram::kBounds.size() + 3);
    CHECK(lines[1] == "# TYPE t_seconds histogram");
    CHECK(lines[2] == "t_seconds_bucket{service=\"s\",le=\"0.005\"} 1");
    CHECK(lines[6] == "t_seconds_bucket{service=\"s\",le=\"0.1\"} 1");
    CHECK(lines[7] == "t_seconds_bucket{service=\"s\",le=\"0.25\"} 2");
    CHECK(lines[15] == "t_seconds_bucket{service=\"s\",le=\"3600\"} 2");
    CHECK(lines[16] == "t_seconds_bucket{service=\"s\",le=\"+Inf\"} 3");
    CHECK(lines[17] == "t_seconds_sum{service=\"s\"} " + metric_number(0.003 + 0.2 + 7200));
    CHECK(lines[18] == "t_seconds_count{service=\"s\"} 3");
}

TEST_CASE("/proc/self/stat gives the process facts, whatever the command's name", "[metrics]")
{
    // A command may hold spaces and parentheses: fields count from the last ')'.
    std::string stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 "
                       "123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";
    auto facts = parse_proc_stat(stat, 100, 4096, 1700000000);
    REQUIRE(facts);
    CHECK(facts->cpu_seconds == 3.0);                 // (250 + 50) ticks
    CHECK(facts->start_time_seconds == 1700000010.0); // boot + 1000 ticks
    CHECK(facts->virtual_bytes == 123456789u);
    CHECK(facts->resident_bytes == 300u * 4096);
    CHECK_FALSE(parse_proc_stat("4242 (a) S 1 2 3", 100, 4096, 0));
    CHECK_FALSE(parse_proc_stat("no parenthesis here", 100, 4096, 0));
    CHECK_FALSE(parse_proc_stat(stat, 0, 4096, 0));
}

TEST_CASE("This process's facts agree with getrlimit and /proc", "[metrics]")
{
    auto before = read_process_facts();
    REQUIRE(before);
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    CHECK(before->max_fds == limit.rlim_cur);
    UniqueFd extra(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(extra);
    auto after = read_process_facts();
    REQUIRE(after);
    CHECK(after->open_fds == before->open_fds + 1);
    CHECK(after->open_fds >= 4); // 0-2 and the one just opened
    CHECK(after->resident_bytes > 0);
    CHECK(after->resident_bytes < after->virtual_bytes);
    // VmRSS in kB, read the other way, is within a few pages of it.
    auto vm_rss = std::stoull(proc_status(::getpid(), "VmRSS")) * 1024;
    CHECK(std::llabs(static_cast<long long>(vm_rss) - static_cast<long long>(after->resident_bytes)) < 4 * 1024 * 1024);
    CHECK(after->cpu_seconds >= before->cpu_seconds);
    auto now = static_cast<double>(std::time(nullptr));
    CHECK(after->start_time_seconds <= now + 1);
    // The test binary started before this test: no longer ago than the boot.
    std::ifstream uptime("/proc/uptime");
    double up = 0;
    uptime >> up;
    CHECK(after->start_time_seconds >= now - up - 2);
    CHECK(after->start_time_seconds == before->start_time_seconds);
}

namespace {

std::string page() { return "# HELP m A metric.\n# TYPE m gauge\nm 1\n"; }

std::string respond(const std::string& request)
{
    auto reply = http::metrics_response(request, page);
    return reply ? *reply : "(waiting)";
}

std::string status_line(const std::string& response) { return response.substr(0, response.find("\r\n")); }

} // namespace

TEST_CASE("The metrics builtin answers GET and HEAD of /metrics and nothing else", "[metrics]")
{
    std::string ok = respond("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    CHECK(ok
          == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: "
                 + std::to_string(page().size()) + "\r\nConnection: close\r\n\r\n" + page());
    CHECK(respond("HEAD /metrics HTTP/1.1\r\n\r\n") == ok.substr(0, ok.size() - page().size()));
    CHECK(respond("GET /metrics?name[]=m HTTP/1.0\r\n\r\n") == ok);
    CHECK(respond("\r\nGET /metrics HTTP/1.0\n\n") == ok); // bare LFs, a leading empty line

    CHECK(status_line(respond("GET / HTTP/1.1\r\n\r\n")) == "HTTP/1.1 404 Not Found");
    CHECK(status_line(respond("GET /metrics/ HTTP/1.1\r\n\r\n")) == "HTTP/1.1 404 Not Found");
    std::string post = respond("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    CHECK(status_line(post) == "HTTP/1.1 405 Method Not Allowed");
    CHECK_THAT(post, Catch::Contains("\r\nAllow: GET, HEAD\r\n"));
    for (std::string bad : {"GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
                            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n",
                            "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", "\x16\x03\x01\x02\x01\r\n\r\n"}) {
        INFO(bad);
        CHECK(status_line(respond(bad)) == "HTTP/1.1 400 Bad Request");
    }
    // Every response says how long it is and that the connection closes.
    for (const std::string& response : {ok, post, respond("GET /x HTTP/1.1\r\n\r\n")}) {
        CHECK_THAT(response, Catch::Contains("\r\nConnection: close\r\n"));
        auto body = response.substr(response.find("\r\n\r\n") + 4);
        CHECK_THAT(response, Catch::Contains("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"));
    }
}

TEST_CASE("The metrics builtin waits for the whole head, up to 8 KiB", "[metrics]")
{
    CHECK(respond("") == "(waiting)");
    CHECK(respond("GET /metrics HTTP/1.1\r\nHost: x\r\n") == "(waiting)");
    std::string filler = "X-Filler: " + std::string(8000, 'a') + "\r\n";
    std::string prefix = "GET /metrics HTTP/1.1\r\nY: ";
    std::string under = prefix + std::string(http::kMaxRequestHead - prefix.size() - 4, 'b') + "\r\n\r\n";
    REQUIRE(under.size() == http::kMaxRequestHead); // its blank line the last of 8 KiB
    CHECK(status_line(respond(under)) == "HTTP/1.1 200 OK");
    std::string over = "GET /metrics HTTP/1.1\r\n" + filler + filler;
    CHECK(status_line(respond(over)) == "HTTP/1.1 431 Request Header Fields Too Large");
    CHECK(respond(over.substr(0, http::kMaxRequestHead - 1)) == "(waiting)");
}

// Against the real superd.
namespace {

// The page's samples: "name{labels}" as written, and its value.
std::map<std::string, double> samples(const std::string& body)
{
    std::map<std::string, double> out;
    std::istringstream in(body);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#')
            continue;
        size_t space = line.rfind(' ');
        out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
    }
    return out;
}

std::string exchange(uint16_t port, const std::string& request)
{
    UniqueFd fd = connect_tcp(port);
    send_all(fd.get(), request);
    ::shutdown(fd.get(), SHUT_WR);
    return read_to_eof(fd.get());
}

// The page's body, from GET /metrics.
std::string scrape(uint16_t port)
{
    std::string response = exchange(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    REQUIRE(status_line(response) == "HTTP/1.1 200 OK");
    return response.substr(response.find("\r\n\r\n") + 4);
}

// `promtool check metrics` on `body`: its exit status and what it said.
Finished promtool_check(const std::string& body)
{
    bool found = false;
    std::istringstream path(std::getenv("PATH") ? std::getenv("PATH") : "");
    for (std::string dir; std::getline(path, dir, ':');)
        found = found || ::access((std::filesystem::path(dir) / "promtool").c_str(), X_OK) == 0;
    INFO("promtool (Debian's prometheus package; scripts/install-deps installs it) is not on PATH");
    REQUIRE(found);
    TempDir dir;
    std::string file = dir.write("page.txt", body);
    return run_command({"/bin/sh", "-c", "promtool check metrics < '" + file + "'"});
}

// One echo exchange from `source`, to completion.
std::string echo_from(uint16_t port, const std::string& source, const std::string& text)
{
    UniqueFd fd = connect_tcp(port, "127.0.0.1", source);
    send_all(fd.get(), text);
    ::shutdown(fd.get(), SHUT_WR);
    return read_to_eof(fd.get());
}

std::string metrics_toml(uint16_t port)
{
    return "[service.metrics]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"metrics\"\n\n";
}

std::string allowed_echo_toml(uint16_t port)
{
    return "[service.echo]\nlisten = [\"" + loopback(port) + "\"]\nprogram = \"" + service_binary("echo")
           + "\"\nallow = [\"127.0.0.3\"]\n\n";
}

std::string daytime_toml(uint16_t port)
{
    return "[service.daytime]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"daytime\"\n\n";
}

} // namespace

TEST_CASE("GET /metrics counts what the test did, and promtool accepts the page", "[metrics][integration]")
{
    uint16_t metrics = free_port(), echo = free_port(), daytime = free_port();
    Superd superd(metrics_toml(metrics) + allowed_echo_toml(echo) + daytime_toml(daytime));
    for (int i = 0; i < 3; ++i)
        CHECK(echo_from(echo, "127.0.0.3", "hello\n") == "hello\n");
    CHECK(echo_from(echo, "127.0.0.1", "refused\n") == ""); // not on the allow list
    for (int i = 0; i < 2; ++i)
        CHECK_FALSE(exchange(daytime, "").empty());

    // A child is counted as exited just after its reply: wait for all three.
    std::map<std::string, double> m;
    CHECK(eventually([&] {
        m = samples(scrape(metrics));
        return m["superd_children_exited_total{service=\"echo\",outcome=\"ok\"}"] == 3
               && m["superd_service_running{service=\"echo\"}"] == 0
               && m["superd_service_running{service=\"daytime\"}"] == 0;
    }));
    CHECK(m.at("superd_connections_accepted_total{service=\"echo\"}") == 4);
    CHECK(m.at("superd_children_spawned_total{service=\"echo\"}") == 3);
    CHECK(m.at("superd_connections_refused_total{service=\"echo\",reason=\"acl\"}") == 1);
    for (const char* reason : {"limit", "source", "rate", "fds"})
        CHECK(m.at("superd_connections_refused_total{service=\"echo\",reason=\"" + std::string(reason) + "\"}") == 0);
    CHECK(m.at("superd_children_exited_total{service=\"echo\",outcome=\"error\"}") == 0);
    CHECK(m.at("superd_children_exited_total{service=\"echo\",outcome=\"signal\"}") == 0);
    CHECK(m.at("superd_spawn_failures_total{service=\"echo\"}") == 0);
    CHECK(m.at("superd_children_timed_out_total{service=\"echo\"}") == 0);
    CHECK(m.at("superd_child_run_seconds_count{service=\"echo\"}") == 3);
    CHECK(m.at("superd_child_run_seconds_bucket{service=\"echo\",le=\"+Inf\"}") == 3);
    CHECK(m.at("superd_child_run_seconds_sum{service=\"echo\"}") > 0);
    CHECK(m.at("superd_connections_accepted_total{service=\"daytime\"}") == 2);
    CHECK(m.at("superd_children_spawned_total{service=\"daytime\"}") == 0);
    CHECK(m.at("superd_child_run_seconds_count{service=\"daytime\"}") == 0);
    // This scrape is itself a connection of the metrics service, running.
    CHECK(m.at("superd_service_running{service=\"metrics\"}") == 1);
    CHECK(m.at("superd_connections_accepted_total{service=\"metrics\"}") >= 1);
    CHECK(m.at("superd_services") == 3);
    CHECK(m.at("superd_listeners") == 3);
    CHECK(m.at("superd_children") == 0);
    CHECK(m.at("superd_reloads_total{result=\"success\"}") == 0);
    CHECK(m.at("superd_reloads_total{result=\"failure\"}") == 0);
    CHECK(m.at("superd_config_last_reload_successful") == 1);
    CHECK(m.at("superd_build_info{version=\"" SUPERD_VERSION "\"}") == 1);

    // superd's own process, as /proc and prlimit see it.
    auto now = static_cast<double>(std::time(nullptr));
    CHECK(m.at("process_start_time_seconds") <= now + 1);
    CHECK(m.at("process_start_time_seconds") >= now - 60);
    CHECK(m.at("superd_config_last_reload_success_timestamp_seconds") >= m.at("process_start_time_seconds") - 1);
    CHECK(m.at("process_resident_memory_bytes") > 0);
    CHECK(m.at("process_virtual_memory_bytes") > m.at("process_resident_memory_bytes"));
    CHECK(m.at("process_cpu_seconds_total") >= 0);
    CHECK(m.at("process_open_fds") >= 3 + 3); // stdio and three listeners
    CHECK(m.count("process_max_fds") == 1);
    auto max_fds = run_command(
        {"/usr/bin/prlimit", "--nofile", "--noheadings", "--output=SOFT", "--pid", std::to_string(superd.pid())});
    CHECK(max_fds.status == 0);
    CHECK(std::strtod(max_fds.output.c_str(), nullptr) == m.at("process_max_fds"));

    auto check = promtool_check(scrape(metrics));
    INFO(check.output);
    CHECK(check.status == 0);
    CHECK(check.output == "");
}

TEST_CASE("The metrics builtin speaks HTTP over a real socket: HEAD, 404, 405, 400, 431", "[metrics][integration]")
{
    uint16_t metrics = free_port();
    Superd superd(metrics_toml(metrics));
    std::string head = exchange(metrics, "HEAD /metrics HTTP/1.0\r\n\r\n");
    CHECK(status_line(head) == "HTTP/1.1 200 OK");
    CHECK_THAT(head, Catch::Contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK_THAT(head, Catch::Contains("\r\nContent-Length: "));
    CHECK(head.ends_with("\r\n\r\n")); // no body
    CHECK(status_line(exchange(metrics, "GET /other HTTP/1.1\r\n\r\n")) == "HTTP/1.1 404 Not Found");
    std::string put = exchange(metrics, "PUT /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(status_line(put) == "HTTP/1.1 405 Method Not Allowed");
    CHECK_THAT(put, Catch::Contains("\r\nAllow: GET, HEAD\r\n"));
    CHECK(status_line(exchange(metrics, "hello there\r\n\r\n")) == "HTTP/1.1 400 Bad Request");
    // Past 8 KiB of head, the answer comes without the client's end of it.
    UniqueFd big = connect_tcp(metrics);
    send_all(big.get(), "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'x'));
    CHECK(status_line(read_to_eof(big.get())) == "HTTP/1.1 431 Request Header Fields Too Large");
    // A client that keeps its end open is answered and closed all the same.
    UniqueFd open = connect_tcp(metrics);
    send_all(open.get(), "GET /metrics HTTP/1.1\r\n\r\n");
    CHECK(status_line(read_to_eof(open.get())) == "HTTP/1.1 200 OK");
}

TEST_CASE("A metrics client that says nothing is closed after the idle timeout, others served meanwhile",
          "[metrics][integration]")
{
    uint16_t metrics = free_port();
    Superd superd(metrics_toml(metrics));
    UniqueFd silent = connect_tcp(metrics);
    UniqueFd slow = connect_tcp(metrics);
    send_all(slow.get(), "GET /metrics HTTP/1.1\r\n"); // and no more
    // Both are connected; a third is served while they wait.
    CHECK_THAT(scrape(metrics), Catch::Contains("superd_service_running{service=\"metrics\"} 3\n"));
    // The row's idle timeout is 10 s.
    CHECK(read_to_eof(silent.get(), 20s) == "");
    CHECK(read_to_eof(slow.get(), 20s) == "");
    CHECK(superd.wait_for_log("idle service=metrics ", 2));
    CHECK_THAT(scrape(metrics), Catch::Contains("superd_service_running{service=\"metrics\"} 1\n"));
}

TEST_CASE("The metrics' counters keep counting across reloads, and reloads are counted", "[metrics][integration]")
{
    uint16_t metrics = free_port(), echo = free_port(), daytime = free_port();
    Superd superd(metrics_toml(metrics) + allowed_echo_toml(echo));
    for (int i = 0; i < 2; ++i)
        CHECK(echo_from(echo, "127.0.0.3", "a\n") == "a\n");
    auto first = samples(scrape(metrics));

    superd.rewrite_config(metrics_toml(metrics) + allowed_echo_toml(echo) + daytime_toml(daytime));
    REQUIRE(superd.reload());
    CHECK(echo_from(echo, "127.0.0.3", "b\n") == "b\n");
    std::map<std::string, double> m;
    CHECK(eventually([&] {
        m = samples(scrape(metrics));
        return m["superd_children_exited_total{service=\"echo\",outcome=\"ok\"}"] == 3;
    }));
    CHECK(m.at("superd_connections_accepted_total{service=\"echo\"}") == 3);
    CHECK(m.at("superd_child_run_seconds_count{service=\"echo\"}") == 3);
    CHECK(m.at("superd_connections_accepted_total{service=\"daytime\"}") == 0);
    CHECK(m.at("superd_reloads_total{result=\"success\"}") == 1);
    CHECK(m.at("superd_config_last_reload_successful") == 1);
    double applied = m.at("superd_config_last_reload_success_timestamp_seconds");
    CHECK(applied >= first.at("superd_config_last_reload_success_timestamp_seconds"));
    CHECK(m.at("superd_services") == 3);

    // A service the reload removes keeps its counts; a refused reload is
    // counted and keeps the time of the last applied one.
    superd.rewrite_config(metrics_toml(metrics));
    REQUIRE(superd.reload());
    superd.rewrite_config(metrics_toml(metrics) + "[service.bad]\nlisten = [\"" + loopback(echo) + "\"]\n");
    CHECK_FALSE(superd.reload());
    m = samples(scrape(metrics));
    CHECK(m.at("superd_connections_accepted_total{service=\"echo\"}") == 3);
    CHECK(m.at("superd_services") == 1);
    CHECK(m.at("superd_reloads_total{result=\"success\"}") == 2);
    CHECK(m.at("superd_reloads_total{result=\"failure\"}") == 1);
    CHECK(m.at("superd_config_last_reload_successful") == 0);
    CHECK(m.at("superd_config_last_reload_success_timestamp_seconds") >= applied);

    auto check = promtool_check(scrape(metrics));
    INFO(check.output);
    CHECK(check.status == 0);
    CHECK(check.output == "");
}

// Tests for log_sink.h: superd's log never blocks its event loop. Unit
// tests drive a LogSink into pipes they control; integration tests give the
// real superd a stderr pipe that nobody reads.
#include "superd/log.h"
#include "superd/log_sink.h"
#include "tests/harness.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

using namespace harness;
using superd::LogSink;

namespace {

struct SinkPipe {
    UniqueFd read_end;
    UniqueFd write_end; // blocking, as a shell's pipe is
};

// A pipe that holds one page, so that a few lines fill it.
SinkPipe small_pipe()
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    SinkPipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
    REQUIRE(::fcntl(p.read_end.get(), F_SETPIPE_SZ, 4096) >= 0);
    ::fcntl(p.read_end.get(), F_SETFL, O_NONBLOCK);
    return p;
}

std::string read_available(int fd)
{
    std::string out;
    char buffer[65536];
    for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;)
        out.append(buffer, static_cast<size_t>(n));
    return out;
}

std::string read_file_text(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

// If a write ever blocked, the test binary would end on SIGALRM instead of
// hanging the suite.
struct BlockGuard {
    BlockGuard() { ::alarm(20); }
    ~BlockGuard() { ::alarm(0); }
};

// "line N ...": the numbers of the lines in `text`, in the order written.
std::vector<int> line_numbers(const std::string& text)
{
    std::vector<int> numbers;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        // "info line 7 ..." or, from a child, "line=\"line 7 ...\"".
        auto at = line.rfind("line ");
        if (at != std::string::npos && std::isdigit(static_cast<unsigned char>(line[at + 5])))
            numbers.push_back(std::stoi(line.substr(at + 5)));
    }
    return numbers;
}

uint64_t dropped_in(const std::string& text)
{
    static const std::regex notice(" warning dropped ([0-9]+) log lines\n");
    uint64_t total = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), notice), end; it != end; ++it)
        total += std::stoull((*it)[1]);
    return total;
}

const std::string kPadding(40, '.');

// A sink on a small pipe that nobody reads yet, given `lines` numbered
// lines: the pipe is full and the rest queued (or dropped past `limit`).
struct StuckLog {
    SinkPipe pipe = small_pipe();
    std::shared_ptr<LogSink> sink;
    std::shared_ptr<spdlog::logger> logger;

    explicit StuckLog(int lines, size_t limit = LogSink::kQueueBytes)
        : sink(std::make_shared<LogSink>(superd::open_log_fd(pipe.write_end.get()), limit)),
          logger(superd::make_logger(sink, spdlog::level::info))
    {
        for (int i = 1; i <= lines; ++i)
            logger->info("line {} {}", i, kPadding);
        REQUIRE(sink->queued_bytes() > 0);
    }
};

} // namespace

TEST_CASE("a pipe is written through a description of superd's own, the shared one stays blocking", "[log_sink]")
{
    SinkPipe p = small_pipe();
    superd::LogFd out = superd::open_log_fd(p.write_end.get());
    REQUIRE(out.owned);
    CHECK(out.fd != p.write_end.get());
    CHECK(nonblocking(out.fd));
    CHECK_FALSE(nonblocking(p.write_end.get()));
    CHECK((::fcntl(out.fd, F_GETFD) & FD_CLOEXEC) != 0);

    auto logger = superd::make_logger(std::make_shared<LogSink>(std::move(out)), spdlog::level::info);
    logger->info("hello {}", 1);
    logger->debug("not at info");
    std::string text = read_available(p.read_end.get());
    // The format is the one superd always had, with no colour codes.
    CHECK(std::regex_match(text, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} info hello 1\n)")));
}

TEST_CASE("a terminal keeps its blocking mode: superd writes through its own description", "[log_sink]")
{
    int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(master >= 0);
    UniqueFd master_fd(master);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    UniqueFd terminal(::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC));
    REQUIRE(terminal);

    superd::LogFd out = superd::open_log_fd(terminal.get());
    CHECK(out.owned);
    CHECK(nonblocking(out.fd));
    CHECK_FALSE(nonblocking(terminal.get())); // the shell's terminal is untouched
}

TEST_CASE("a regular file is written as given, a socket with send", "[log_sink]")
{
    TempDir dir;
    UniqueFd file(::open(dir.write("log", "").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    superd::LogFd to_file = superd::open_log_fd(file.get());
    CHECK(to_file.fd == file.get());
    CHECK_FALSE(to_file.owned);
    CHECK_FALSE(to_file.socket);

    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd ours(pair[0]), theirs(pair[1]);
    superd::LogFd to_socket = superd::open_log_fd(ours.get());
    CHECK(to_socket.fd == ours.get());
    CHECK(to_socket.socket);
    CHECK_FALSE(nonblocking(ours.get()));
    auto logger = superd::make_logger(std::make_shared<LogSink>(std::move(to_socket)), spdlog::level::info);
    logger->info("over a socket");
    std::string line = "2000-01-01T00:00:00.000 info over a socket\n";
    CHECK(read_n(theirs.get(), line.size()).substr(23) == line.substr(23));
}

TEST_CASE("a log file that stopped growing for a while takes lines again once it can", "[log_sink]")
{
    // A full disk, made with RLIMIT_FSIZE in a child so that nothing else
    // of the test process is limited: the file takes part of a line, then
    // nothing, then everything again once the limit is lifted.
    TempDir dir;
    std::string path = (dir.path() / "superd.log").string();
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        rlimit small{200, RLIM_INFINITY};
        if (fd < 0 || ::setrlimit(RLIMIT_FSIZE, &small) != 0)
            ::_exit(2);
        auto sink = std::make_shared<LogSink>(superd::open_log_fd(fd));
        auto logger = superd::make_logger(sink, spdlog::level::info);
        for (int i = 0; i < 10; ++i)
            logger->info("line {} while the disk is full", i);
        rlimit large{RLIM_INFINITY, RLIM_INFINITY};
        ::setrlimit(RLIMIT_FSIZE, &large);
        logger->info("line 100 after space came back");
        logger->info("line 101 after space came back");
        ::_exit(sink->queued_bytes() == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    std::string text = read_file_text(path);
    INFO(text);
    CHECK(text.find("line 100 after space came back") != std::string::npos);
    CHECK(text.find("line 101 after space came back") != std::string::npos);
    CHECK(dropped_in(text) > 0);
}

TEST_CASE("a full pipe never blocks: lines queue up to the limit, then are dropped and counted, once the reader "
          "reads, the queue drains in order and one line says how many were dropped",
          "[log_sink]")
{
    BlockGuard guard;
    constexpr size_t kLimit = 16384;
    constexpr int kLines = 2000; // about 100 KB, twenty-five times the pipe
    StuckLog log(kLines, kLimit);
    auto& p = log.pipe;
    auto& sink = log.sink;
    CHECK(sink->queued_bytes() > 0);
    CHECK(sink->queued_bytes() <= kLimit);
    uint64_t dropped = sink->dropped();
    CHECK(dropped > 0);

    // Attached to a loop, what waits is written as the pipe takes it.
    std::unique_ptr<event_base, superd::EventBaseDeleter> base(event_base_new());
    sink->attach(base.get());
    std::string text;
    CHECK(eventually([&] {
        text += read_available(p.read_end.get());
        event_base_loop(base.get(), EVLOOP_NONBLOCK);
        return sink->queued_bytes() == 0 && text.find(" log lines\n") != std::string::npos;
    }));
    text += read_available(p.read_end.get());

    std::vector<int> numbers = line_numbers(text);
    CHECK(numbers.size() + dropped == kLines);
    CHECK(std::is_sorted(numbers.begin(), numbers.end()));
    CHECK(std::adjacent_find(numbers.begin(), numbers.end()) == numbers.end()); // none twice
    CHECK(numbers.front() == 1);
    // The notice comes after the lines, in the usual format, once.
    CHECK(dropped_in(text) == dropped);
    CHECK(std::regex_search(text, std::regex(R"(\n\d{4}-\d\d-\d\dT[0-9:.]+ warning dropped \d+ log lines\n$)")));
    CHECK(sink->dropped() == 0);

    // Drained, lines go straight through again.
    log.logger->info("line {} after", kLines + 1);
    CHECK(read_available(p.read_end.get()).find(" line 2001 after\n") != std::string::npos);
    sink->detach();
}

TEST_CASE("a log whose reader is gone drops and counts, and never kills superd", "[log_sink]")
{
    BlockGuard guard;
    auto old = ::signal(SIGPIPE, SIG_IGN); // as superd has it (process.cpp)
    {
        SinkPipe p = small_pipe();
        auto sink = std::make_shared<LogSink>(superd::open_log_fd(p.write_end.get()));
        auto logger = superd::make_logger(sink, spdlog::level::info);
        logger->info("read");
        CHECK(read_available(p.read_end.get()).find(" info read\n") != std::string::npos);

        p.read_end.reset();
        for (int i = 0; i < 5; ++i)
            logger->info("line {}", i);
        CHECK(sink->dropped() == 5);
        CHECK(sink->queued_bytes() == 0);
        sink->finish(0ms);
        CHECK(sink->dropped() == 5); // no notice: nothing was written since
    }
    ::signal(SIGPIPE, old);
}

TEST_CASE("at exit, a stuck reader is waited for only as long as the limit", "[log_sink]")
{
    BlockGuard guard;
    StuckLog log(500);
    auto& sink = log.sink;

    auto start = std::chrono::steady_clock::now();
    sink->finish(100ms);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(sink->queued_bytes() == 0);
    CHECK(sink->dropped() > 0);
}

TEST_CASE("at exit, what is queued is written when the reader keeps reading", "[log_sink]")
{
    BlockGuard guard;
    StuckLog log(500);
    auto& p = log.pipe;
    auto& sink = log.sink;

    // A reader that drains the pipe while finish() waits, as a logger would.
    pid_t reader = ::fork();
    REQUIRE(reader >= 0);
    if (reader == 0) {
        p.write_end.reset();
        ::fcntl(p.read_end.get(), F_SETFL, 0);
        char buffer[4096];
        while (::read(p.read_end.get(), buffer, sizeof buffer) > 0) {
        }
        ::_exit(0);
    }
    sink->finish(10s);
    CHECK(sink->queued_bytes() == 0);
    CHECK(sink->dropped() == 0);
    kill_and_reap(reader);
}

namespace {

std::string echo_toml(uint16_t port)
{
    return "[service.echo]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"echo\"\n";
}

// Echo on `port`, and a service that writes `lines` numbered lines to its
// stderr (stderr = "log", with a budget that lets all of them through).
std::string echo_and_flood(uint16_t port, uint16_t flood_port, int lines)
{
    return echo_toml(port) + "[service.flood]\nlisten = [\"" + loopback(flood_port)
           + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"seq -f 'line %g " + kPadding + "' "
           + std::to_string(lines) + " >&2\"]\nstderr = \"log\"\nstderr_rate = \"1000000/s\"\nstderr_burst = 1000000\n";
}

// One echo exchange, bounded: true when the echo came back in time.
bool echoes(uint16_t port)
{
    try {
        UniqueFd fd = connect_tcp(port);
        send_all(fd.get(), "ping\n");
        return read_n(fd.get(), 5, 2s) == "ping\n";
    } catch (const std::exception&) {
        return false; // a deadline passed
    }
}

} // namespace

TEST_CASE("superd keeps serving and stops on SIGTERM when nobody reads its stderr", "[log_sink][integration]")
{
    uint16_t port = free_port();
    StartOptions options;
    options.stderr_pipe_unread = true;
    Superd superd(echo_toml(port), options);
    REQUIRE(::fcntl(superd.stderr_pipe(), F_SETPIPE_SZ, 4096) >= 0);

    // Each connection logs a line; 400 of them are ten times the pipe.
    int answered = 0;
    for (int i = 0; i < 400 && echoes(port); ++i)
        ++answered;
    CHECK(answered == 400);
    CHECK(echoes(port));
    // The log's end is stuck: superd waits for it at most a second.
    CHECK(superd.stop(5s) == 0);
}

TEST_CASE("a log that overflows superd's queue loses lines, in order, and says how many once it drains",
          "[log_sink][integration]")
{
    uint16_t port = free_port(), flood_port = free_port();
    StartOptions options;
    options.stderr_pipe_unread = true;
    constexpr int kLines = 30000; // about 3 MB of log, three times the queue
    Superd superd(echo_and_flood(port, flood_port, kLines), options);

    // The flood's child exits once superd has read what it wrote.
    CHECK(round_trip(flood_port, "") == "");
    CHECK(echoes(port));

    // Read now, every line of the flood is either in the log or counted.
    std::string text;
    std::vector<int> numbers;
    uint64_t dropped = 0;
    CHECK(eventually(
        [&] {
            std::string more = read_available(superd.stderr_pipe());
            text += more;
            if (!more.empty() && text.find(" log lines\n") != std::string::npos) {
                numbers = line_numbers(text); // parsed only when it may have changed
                dropped = dropped_in(text);
            }
            return numbers.size() + dropped >= static_cast<size_t>(kLines);
        },
        20s));
    // The notices count every line lost, the flood's and the few others
    // (spawned, exited, closed) alike.
    CHECK(numbers.size() + dropped <= static_cast<size_t>(kLines) + 4);
    CHECK(std::is_sorted(numbers.begin(), numbers.end()));
    CHECK(std::adjacent_find(numbers.begin(), numbers.end()) == numbers.end());
    CHECK(numbers.size() < static_cast<size_t>(kLines));
    CHECK(dropped > 0);
    CHECK(superd.stop(5s) == 0);
}

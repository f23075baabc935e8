#include "tests/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace harness {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void fail(const std::string& what)
{
    throw std::runtime_error(what + (errno ? std::string(": ") + std::strerror(errno) : std::string()));
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Waits up to `limit` for `pid` to exit; returns its status as an exit code
// (128+signal when killed), or -1 if it is still running.
int wait_exit(pid_t pid, std::chrono::milliseconds limit)
{
    auto deadline = Clock::now() + limit;
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0 && errno != EINTR)
            return -1;
        if (Clock::now() >= deadline)
            return -1;
        std::this_thread::sleep_for(5ms);
    }
}

// Starts `args` (superd unless `command` is set), stdout and stderr to `log_path`.
pid_t start_process(const std::vector<std::string>& args, const std::string& log_path, bool hostile_signals,
                    bool command = false, unsigned long max_fds = 0, const std::vector<std::string>& wrapper = {},
                    int stderr_fd = -1, const std::vector<int>& inherit_fds = {},
                    const std::vector<std::string>& extra_env = {}, int stdin_fd = -1)
{
    // Orphaned services become ours, so they can be reaped by pid at the end.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);

    std::vector<std::string> all = wrapper;
    if (!command)
        all.push_back(superd_binary());
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    // The environment is built before fork (setenv is not for a forked
    // child): the test's own, less what `extra_env` replaces, then
    // `extra_env`. Only LISTEN_PID, which must be the child's own pid (as a
    // service manager sets it), is filled in after.
    auto has = [&](const std::string& name) {
        return std::any_of(extra_env.begin(), extra_env.end(),
                           [&](const std::string& e) { return e.rfind(name + "=", 0) == 0; });
    };
    std::vector<std::string> env_strings = extra_env;
    bool set_listen_pid = !inherit_fds.empty() && !has("LISTEN_PID");
    if (!inherit_fds.empty() && !has("LISTEN_FDS"))
        env_strings.push_back("LISTEN_FDS=" + std::to_string(inherit_fds.size()));
    std::string listen_pid(64, '\0');
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) {
        std::string_view existing(*e);
        std::string name(existing.substr(0, existing.find('=')));
        auto replaced = std::any_of(env_strings.begin(), env_strings.end(),
                                    [&](const std::string& added) { return added.rfind(name + "=", 0) == 0; });
        if (!replaced && !(set_listen_pid && name == "LISTEN_PID"))
            envp.push_back(*e);
    }
    for (std::string& e : env_strings)
        envp.push_back(e.data());
    if (set_listen_pid)
        envp.push_back(listen_pid.data());
    envp.push_back(nullptr);
    std::vector<int> moved(inherit_fds.size());

    pid_t pid = ::fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec. If the test
        // process dies (a timeout kills it, say), so does this one.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (log < 0 || null < 0)
            ::_exit(126);
        ::dup2(stdin_fd >= 0 ? stdin_fd : null, 0);
        ::dup2(log, 1);
        ::dup2(stderr_fd >= 0 ? stderr_fd : log, 2);
        if (hostile_signals) {
            ::signal(SIGINT, SIG_IGN);
            ::signal(SIGQUIT, SIG_IGN);
            sigset_t blocked;
            sigemptyset(&blocked);
            sigaddset(&blocked, SIGUSR2);
            sigaddset(&blocked, SIGINT);
            ::sigprocmask(SIG_BLOCK, &blocked, nullptr);
        }
        if (max_fds) {
            rlimit limit{max_fds, max_fds};
            if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
                ::_exit(125); // the test asked for what this machine cannot give
        }
        if (set_listen_pid) {
            char digits[24];
            int n = 0;
            for (pid_t self = ::getpid(); self > 0; self /= 10)
                digits[n++] = static_cast<char>('0' + self % 10);
            char* out = std::strcpy(listen_pid.data(), "LISTEN_PID=") + std::strlen("LISTEN_PID=");
            while (n > 0)
                *out++ = digits[--n];
            *out = '\0';
        }
        // Each inherited socket to its place, through copies above every
        // place, so that none overwrites another still to be moved.
        int above = 3 + static_cast<int>(inherit_fds.size());
        for (size_t i = 0; i < inherit_fds.size(); ++i)
            if ((moved[i] = ::fcntl(inherit_fds[i], F_DUPFD_CLOEXEC, above)) < 0)
                ::_exit(124);
        for (size_t i = 0; i < moved.size(); ++i)
            if (::dup2(moved[i], 3 + static_cast<int>(i)) < 0) // the copy at 3+i is not close-on-exec
                ::_exit(124);
        ::execve(argv[0], argv.data(), envp.data());
        ::_exit(127);
    }
    return pid;
}

} // namespace

uint16_t kernel_port(int family);

std::string superd_binary() { return SUPERD_BINARY; }
std::string service_binary(const std::string& name) { return std::string(SERVICES_DIR) + "/" + name; }
std::string probe_binary() { return PROBE_BINARY; }
std::string waiter_binary() { return WAITER_BINARY; }

TempDir::TempDir()
{
    std::string pattern = (fs::temp_directory_path() / "superd-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
        fail("mkdtemp");
    path_ = pattern;
}

TempDir::~TempDir()
{
    std::error_code ignored;
    fs::remove_all(path_, ignored);
}

std::string TempDir::write(const std::string& name, const std::string& contents) const
{
    fs::path file = path_ / name;
    fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << contents;
    if (!out)
        fail("write " + file.string());
    return file.string();
}

uint16_t free_port(int family)
{
    static std::set<uint16_t> given; // the kernel may hand a closed port out again
    for (int attempt = 0; attempt < 100; ++attempt) {
        uint16_t port = kernel_port(family);
        if (given.insert(port).second)
            return port;
    }
    fail("no fresh port");
}

uint16_t kernel_port(int family)
{
    UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        fail("socket");
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET6) {
        auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = in6addr_loopback;
        len = sizeof sin6;
    } else {
        auto& sin = reinterpret_cast<sockaddr_in&>(ss);
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof sin;
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
        fail("bind");
    len = sizeof ss;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        fail("getsockname");
    return ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port); // same offset in sockaddr_in6
}

Finished run_superd(const std::vector<std::string>& args, std::chrono::milliseconds limit)
{
    TempDir dir;
    std::string log_path = (dir.path() / "output").string();
    pid_t pid = start_process(args, log_path, false);
    Finished result;
    result.status = wait_exit(pid, limit);
    if (result.status < 0) {
        kill_and_reap(pid);
        fail("superd did not finish in time");
    }
    result.output = read_file(log_path);
    return result;
}

Superd::Superd(const std::string& config_text, StartOptions options)
{
    std::vector<std::string> args;
    if (!options.binary.empty())
        args.push_back(options.binary);
    if (!options.config_file.empty())
        args.insert(args.end(), {"--config", options.config_file});
    else if (!config_text.empty() || options.inetd_conf.empty())
        args.insert(args.end(), {"--config", dir_.write("superd.toml", config_text)});
    if (!options.inetd_conf.empty()) {
        args.push_back("--inetd-conf");
        args.push_back(options.inetd_conf);
    }
    log_path_ = (dir_.path() / "superd.log").string();
    if (options.control)
        control_path_ = *options.control;
    else if (options.wrapper.empty())
        control_path_ = (dir_.path() / "control.sock").string();
    if (!options.control_from_config)
        args.insert(args.end(), {"--control", control_path_});
    if (!options.wrapper.empty()) {
        // Readable by everyone, writable by root only: superd as root
        // refuses a config in a folder others may write to.
        fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec
                                         | fs::perms::others_read | fs::perms::others_exec);
        for (const auto& entry : fs::directory_iterator(dir_.path()))
            fs::permissions(entry.path(), fs::perms::owner_all | fs::perms::others_read);
    }
    UniqueFd stderr_write;
    if (options.stderr_pipe_unread) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            fail("pipe2");
        stderr_pipe_.reset(fds[0]);
        stderr_write.reset(fds[1]);
        ::fcntl(stderr_pipe_.get(), F_SETFL, O_NONBLOCK);
    }
    pid_ = start_process(args, log_path_, options.hostile_signals, !options.binary.empty(), options.max_fds,
                         options.wrapper, stderr_write.get(), options.inherit_fds, options.env);
    stderr_write.reset();
    auto deadline = Clock::now() + 10s;
    // A port free_port() gave can be taken meanwhile as the local port of a
    // connection another test process makes (the kernel hands out both from
    // one range). That is the machine's, not superd's: start again once the
    // connection has gone, a few times.
    int collisions = 0;
    for (;;) {
        pump_stderr();
        if (count_in_log(" ready ") > 0)
            break;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (code == 1 && !options.stderr_pipe_unread && collisions < 20
                && count_in_log("Address already in use") > 0) {
                ++collisions;
                std::this_thread::sleep_for(250ms);
                pid_ = start_process(args, log_path_, options.hostile_signals, !options.binary.empty(), options.max_fds,
                                     options.wrapper, -1, options.inherit_fds, options.env);
                deadline = Clock::now() + 10s;
                continue;
            }
            throw std::runtime_error("superd exited with status " + std::to_string(code) + " before it was ready:\n"
                                     + log());
        }
        if (Clock::now() >= deadline) {
            kill_and_reap(pid_);
            pid_ = -1;
            throw std::runtime_error("superd was not ready in time:\n" + log());
        }
        std::this_thread::sleep_for(5ms);
    }
}

Superd::~Superd()
{
    adopt_children();
    if (pid_ > 0)
        kill_and_reap(pid_);
    // Services run in their own sessions and outlive superd; this process is
    // their subreaper, so it can end and reap each by pid.
    for (pid_t child : orphans_)
        kill_and_reap(child);
}

void Superd::adopt_children()
{
    for (pid_t child : children())
        if (std::find(orphans_.begin(), orphans_.end(), child) == orphans_.end())
            orphans_.push_back(child);
}

std::string Superd::log() const { return read_file(log_path_); }

void Superd::pump_stderr() const
{
    if (!stderr_pipe_)
        return;
    std::ofstream out(log_path_, std::ios::app | std::ios::binary);
    char buffer[4096];
    for (ssize_t n; (n = ::read(stderr_pipe_.get(), buffer, sizeof buffer)) > 0;)
        out.write(buffer, n);
}

size_t Superd::count_in_log(const std::string& needle) const
{
    std::string text = log();
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size()))
        ++n;
    return n;
}

bool Superd::wait_for_log(const std::string& needle, size_t times, std::chrono::milliseconds limit) const
{
    return eventually([&] { return count_in_log(needle) >= times; }, limit);
}

size_t Superd::settled_count(const std::string& needle, size_t expected, std::chrono::milliseconds limit) const
{
    wait_for_log(needle, expected, limit);
    return count_in_log(needle);
}

void Superd::rewrite_config(const std::string& config_text) const { dir_.write("superd.toml", config_text); }

bool Superd::reload(std::chrono::milliseconds limit) const
{
    size_t applied = count_in_log(" reloaded "), failed = count_in_log(" reload failed ");
    ::kill(pid_, SIGHUP);
    auto deadline = Clock::now() + limit;
    for (;;) {
        if (count_in_log(" reloaded ") > applied)
            return true;
        if (count_in_log(" reload failed ") > failed)
            return false;
        if (Clock::now() >= deadline)
            throw std::runtime_error("no outcome of the reload in time:\n" + log());
        std::this_thread::sleep_for(5ms);
    }
}

int Superd::stop(std::chrono::milliseconds limit)
{
    if (pid_ <= 0)
        fail("superd is not running");
    adopt_children();
    ::kill(pid_, SIGTERM);
    return Superd::wait_exit(limit);
}

int Superd::wait_exit(std::chrono::milliseconds limit)
{
    if (pid_ <= 0)
        fail("superd is not running");
    int status = harness::wait_exit(pid_, limit);
    if (status >= 0)
        pid_ = -1;
    return status;
}

std::string Superd::counters(const std::string& service)
{
    std::string needle = "counters service=" + service + " ";
    size_t before = count_in_log(needle);
    ::kill(pid_, SIGUSR1);
    if (!wait_for_log(needle, before + 1))
        throw std::runtime_error("no counters for " + service + ":\n" + log());
    std::string text = log();
    size_t at = text.rfind(needle) + needle.size();
    return text.substr(at, text.find('\n', at) - at);
}

std::string Superd::daemon_counters()
{
    settle();
    const std::string needle = "counters ";
    std::string text = log();
    size_t at = text.rfind("counters children=") + needle.size();
    return text.substr(at, text.find('\n', at) - at);
}

void Superd::settle()
{
    const std::string needle = "counters children=";
    for (int turn = 0; turn < 2; ++turn) {
        size_t before = count_in_log(needle);
        ::kill(pid_, SIGUSR1);
        if (!wait_for_log(needle, before + 1))
            throw std::runtime_error("superd did not answer SIGUSR1:\n" + log());
    }
}

std::vector<pid_t> Superd::children() const
{
    std::vector<pid_t> result;
    if (pid_ <= 0)
        return result;
    for (const auto& entry : fs::directory_iterator("/proc")) {
        const std::string name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::string stat = read_file("/proc/" + name + "/stat");
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        size_t close = stat.rfind(')');
        if (close == std::string::npos)
            continue;
        std::istringstream fields(stat.substr(close + 1));
        std::string state;
        pid_t ppid = 0;
        fields >> state >> ppid;
        if (ppid == pid_)
            result.push_back(std::stoi(name));
    }
    return result;
}

std::string service_toml(const std::string& name, const std::vector<std::string>& listen, const std::string& program)
{
    std::string text = "[service." + name + "]\nlisten = [";
    for (size_t i = 0; i < listen.size(); ++i)
        text += (i ? ", \"" : "\"") + listen[i] + "\"";
    text += "]\nprogram = \"" + program + "\"\n\n";
    return text;
}

superd::SocketAddress socket_address(const std::string& host, uint16_t port)
{
    superd::SocketAddress a;
    if (host.find(':') != std::string::npos) {
        a = superd::SocketAddress::any_ipv6(port);
        ::inet_pton(AF_INET6, host.c_str(), &reinterpret_cast<sockaddr_in6&>(a.storage).sin6_addr);
    } else {
        a = superd::SocketAddress::any_ipv4(port);
        ::inet_pton(AF_INET, host.c_str(), &reinterpret_cast<sockaddr_in&>(a.storage).sin_addr);
    }
    return a;
}

std::string loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

uint16_t local_port(int fd)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return 0;
    return ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port); // same offset in sockaddr_in6
}

UniqueFd connect_tcp(uint16_t port, const std::string& host, const std::string& source)
{
    superd::SocketAddress to = socket_address(host, port);
    UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        fail("socket");
    timeval timeout{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (!source.empty()) {
        superd::SocketAddress from = socket_address(source, 0);
        if (::bind(fd.get(), from.get(), from.length) != 0)
            fail("bind to " + source);
    }
    if (::connect(fd.get(), to.get(), to.length) != 0)
        fail("connect to " + host + " port " + std::to_string(port));
    return fd;
}

bool refused(uint16_t port)
{
    try {
        connect_tcp(port);
        return false;
    } catch (const std::exception&) {
        return true;
    }
}

void send_all(int fd, const std::string& data)
{
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("send");
        }
        sent += static_cast<size_t>(n);
    }
}

namespace {

// Reads what is available within the deadline: appends to `out`, returns
// false at EOF.
bool read_some(int fd, std::string& out, Clock::time_point deadline, size_t most = 16384)
{
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
        errno = 0;
        fail("read: deadline passed with " + std::to_string(out.size()) + " bytes read");
    }
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno != EINTR)
        fail("poll");
    if (ready <= 0)
        return true;
    char buffer[16384];
    ssize_t n = ::recv(fd, buffer, std::min(sizeof buffer, most), 0);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return true;
        if (errno == ECONNRESET)
            return false;
        fail("recv");
    }
    out.append(buffer, static_cast<size_t>(n));
    return n > 0;
}

} // namespace

std::string read_to_eof(int fd, std::chrono::milliseconds limit)
{
    auto deadline = Clock::now() + limit;
    std::string out;
    while (read_some(fd, out, deadline)) {
    }
    return out;
}

std::string read_n(int fd, size_t n, std::chrono::milliseconds limit)
{
    auto deadline = Clock::now() + limit;
    std::string out;
    while (out.size() < n && read_some(fd, out, deadline, n - out.size())) {
    }
    return out;
}

bool quiet_for(int fd, std::chrono::milliseconds time)
{
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(time.count())) == 0;
}

std::string round_trip(uint16_t port, const std::string& request, const std::string& host)
{
    UniqueFd fd = connect_tcp(port, host);
    send_all(fd.get(), request);
    ::shutdown(fd.get(), SHUT_WR);
    return read_to_eof(fd.get());
}

std::string random_bytes(size_t n, unsigned seed)
{
    std::mt19937_64 generate(seed);
    std::string out(n, '\0');
    for (size_t at = 0; at < n; at += 8) {
        uint64_t word = generate();
        std::memcpy(out.data() + at, &word, std::min<size_t>(8, n - at));
    }
    return out;
}

std::vector<std::string> lines_with_prefix(const std::string& text, const std::string& prefix)
{
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0)
            out.push_back(line.substr(prefix.size()));
    return out;
}

std::string udp_exchange(uint16_t port, const std::string& data, const std::string& host, uint16_t source_port,
                         std::chrono::milliseconds limit)
{
    superd::SocketAddress to = socket_address(host, port);
    superd::SocketAddress from = socket_address(to.family() == AF_INET6 ? "::1" : "127.0.0.1", source_port);
    UniqueFd fd(::socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        fail("socket");
    if (::bind(fd.get(), from.get(), from.length) != 0)
        fail("bind");
    if (::sendto(fd.get(), data.data(), data.size(), 0, to.get(), to.length) < 0)
        fail("sendto");
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0)
        return {};
    char buffer[65536];
    ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

UniqueFd listen_tcp(uint16_t port)
{
    superd::SocketAddress at = socket_address("127.0.0.1", port);
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::bind(fd.get(), at.get(), at.length) != 0 || ::listen(fd.get(), 1) != 0)
        fail("listen on port " + std::to_string(port));
    return fd;
}

FullListener listen_tcp_full(uint16_t port)
{
    FullListener full;
    superd::SocketAddress at = socket_address("127.0.0.1", port);
    full.listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!full.listener || ::bind(full.listener.get(), at.get(), at.length) != 0
        || ::listen(full.listener.get(), 0) != 0)
        fail("listen on port " + std::to_string(port));
    // For a listener, TCP_INFO gives the accept queue's length (unacked) and
    // its limit (sacked); the kernel drops a SYN once length > limit.
    auto queue_length = [&] {
        tcp_info info{};
        socklen_t len = sizeof info;
        if (::getsockopt(full.listener.get(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
            fail("TCP_INFO");
        return std::pair{info.tcpi_unacked, info.tcpi_sacked};
    };
    for (;;) {
        auto [length, limit] = queue_length();
        if (length > limit)
            return full;
        if (full.queued.size() >= 8)
            fail("the accept queue of port " + std::to_string(port) + " does not fill");
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd || (::connect(fd.get(), at.get(), at.length) != 0 && errno != EINPROGRESS))
            fail("connect to port " + std::to_string(port));
        full.queued.push_back(std::move(fd));
        if (!eventually([&] { return queue_length().first > length; }, 5s))
            fail("a connection to port " + std::to_string(port) + " was not queued");
    }
}

UniqueFd connect_unix(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0)
        fail("connect to " + path);
    timeval timeout{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

unsigned long listening_inode(uint16_t port)
{
    std::ifstream in("/proc/net/tcp");
    char wanted[32];
    std::snprintf(wanted, sizeof wanted, "0100007F:%04X", port);
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout;
        unsigned long inode = 0;
        fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
        if (local == wanted && state == "0A")
            return inode;
    }
    return 0;
}

Finished run_command(const std::vector<std::string>& argv, std::chrono::milliseconds limit)
{
    TempDir dir;
    std::string log_path = (dir.path() / "output").string();
    pid_t pid = start_process(argv, log_path, false, true);
    Finished result;
    result.status = wait_exit(pid, limit);
    if (result.status < 0) {
        kill_and_reap(pid);
        fail(argv.front() + " did not finish in time");
    }
    result.output = read_file(log_path);
    return result;
}

void kill_and_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    ::kill(-pid, SIGKILL); // a service leads its own session and group
    ::kill(pid, SIGKILL);
    wait_exit(pid, 5s);
}

Process::Process(const std::vector<std::string>& argv, bool with_input) : log_path_((dir_.path() / "output").string())
{
    UniqueFd read_end;
    if (with_input) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
            fail("socketpair");
        read_end.reset(fds[0]);
        input_.reset(fds[1]);
    }
    pid_ = start_process(argv, log_path_, false, true, 0, {}, -1, {}, {}, read_end.get());
}

Process::~Process()
{
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGTERM);
    if (harness::wait_exit(pid_, 5s) < 0)
        kill_and_reap(pid_);
}

std::string Process::output() const { return read_file(log_path_); }

bool Process::exited()
{
    if (pid_ > 0 && harness::wait_exit(pid_, 0ms) >= 0)
        pid_ = -1;
    return pid_ <= 0;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit)
{
    auto deadline = Clock::now() + limit;
    while (!condition()) {
        if (Clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

std::string proc_status(pid_t pid, const std::string& field)
{
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string prefix = field + ":";
    for (std::string line; std::getline(status, line);)
        if (line.rfind(prefix, 0) == 0)
            return line.substr(line.find_first_not_of(" \t", prefix.size()));
    return "";
}

size_t fd_count(pid_t pid)
{
    auto entries = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd");
    return static_cast<size_t>(std::distance(fs::begin(entries), fs::end(entries)));
}

long counter(const std::string& counters, const std::string& name)
{
    std::smatch m;
    if (!std::regex_search(counters, m, std::regex("(^| )" + name + "=(\\d+)")))
        return -1;
    return std::stol(m[2]);
}

} // namespace harness

// Test harness: temporary folders, free loopback ports, a real superd
// process, and blocking socket clients with deadlines.
//
// Every wait here is bounded, and every process a test starts is ended by
// pid when its owner goes out of scope, so a failing test cannot hang the
// suite or leave processes behind.
#pragma once

#include "superd/address.h"
#include "superd/fd.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace harness {

using namespace std::chrono_literals;
using superd::UniqueFd;

// Paths of the binaries under test, fixed at build time.
std::string superd_binary();
std::string service_binary(const std::string& name); // build/services/NAME
std::string probe_binary();
std::string waiter_binary();

class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    // Writes `contents` to a file in the folder; returns its path.
    std::string write(const std::string& name, const std::string& contents) const;

private:
    std::filesystem::path path_;
};

// A port that is free on the loopback address of `family` right now,
// chosen by the kernel so that concurrent test runs do not collide, and
// never one this process was given before.
uint16_t free_port(int family = 2 /* AF_INET */);

// The result of running superd to completion.
struct Finished {
    int status = -1;    // exit status, or 128+signal
    std::string output; // stdout and stderr together
};
// Runs superd with `args` and waits up to `limit`; killed past that.
Finished run_superd(const std::vector<std::string>& args, std::chrono::milliseconds limit = 10s);

struct StartOptions {
    // Start superd the way a careless parent might: SIGINT and SIGQUIT
    // ignored, SIGUSR2 and SIGINT blocked.
    bool hostile_signals = false;
    // Also serve this inetd.conf (--inetd-conf); with no config text, only it.
    std::string inetd_conf;
    // Start superd with this RLIMIT_NOFILE (soft and hard); 0: inherited.
    unsigned long max_fds = 0;
    // Run superd through these commands (each must exec the rest, keeping
    // the pid), e.g. {"/usr/bin/setpriv", "--reuid=nobody", ...}; the
    // folder with the config is then readable by everyone.
    std::vector<std::string> wrapper;
    // superd's stderr is a pipe that the harness reads only until superd is
    // ready (into log()); then nobody reads it: a logger that stopped.
    bool stderr_pipe_unread = false;
    // Sockets superd inherits as a service manager hands them (socket
    // activation): on fds 3, 4, ..., with LISTEN_FDS and LISTEN_PID (superd's
    // pid) set, unless `env` sets them.
    std::vector<int> inherit_fds;
    // More environment for superd, "NAME=value", each replacing the test's
    // own variable of that name.
    std::vector<std::string> env;
    // Run this superd binary (an installed one) instead of the build's.
    std::string binary;
    // Run on this config file (with no config text), not one of the test's.
    std::string config_file;
    // superd's control socket (--control): unset, control.sock in the
    // test's folder (none under a wrapper, whose user may not write there);
    // "" for none.
    std::optional<std::string> control;
    // No --control at all: the config's [superd] control decides.
    bool control_from_config = false;
};

// A superd started on a config file, ready when it has logged "ready".
class Superd {
public:
    explicit Superd(const std::string& config_text, StartOptions options = {});
    ~Superd();
    Superd(const Superd&) = delete;
    Superd& operator=(const Superd&) = delete;

    pid_t pid() const { return pid_; }
    const TempDir& dir() const { return dir_; }
    // The control socket's path; empty when it has none.
    const std::string& control_path() const { return control_path_; }
    std::string log() const;
    size_t count_in_log(const std::string& needle) const;
    // Waits until `needle` appears `times` times in the log.
    bool wait_for_log(const std::string& needle, size_t times = 1, std::chrono::milliseconds limit = 10s) const;
    // How often `needle` is in the log once it has appeared `expected` times
    // (or the limit passed). superd logs a spawn after the child may already
    // have answered, so a count taken right after a reply can be one short.
    size_t settled_count(const std::string& needle, size_t expected, std::chrono::milliseconds limit = 10s) const;

    // Replaces the config file (superd reads it at the next reload).
    void rewrite_config(const std::string& config_text) const;
    // SIGHUP, then waits for the reload's outcome; true if it was applied.
    bool reload(std::chrono::milliseconds limit = 10s) const;

    // SIGTERM, then waits; returns the exit status (128+signal if killed).
    int stop(std::chrono::milliseconds limit = 10s);
    // Waits for superd to exit by itself (after a signal the test sent).
    int wait_exit(std::chrono::milliseconds limit = 10s);

    // Sends SIGUSR1 and waits for the counters of `service`, as logged:
    // "running=0 accepted=3 ...".
    std::string counters(const std::string& service);
    // The daemon's own counters once settled (see settle()), as logged:
    // "children=0 lingering=0 builtin_connections=0 ...".
    std::string daemon_counters();
    // Returns once superd has handled everything that was ready when it was
    // called: two SIGUSR1 round trips. Events ready together are handled in
    // one turn of the loop, in any order, so only the second answer comes
    // from a later turn. A test shows that something did not happen with
    // this rather than by sleeping.
    void settle();

    // Pids of superd's children (zombies included), from /proc.
    std::vector<pid_t> children() const;
    // With stderr_pipe_unread: the pipe's read end (non-blocking), for the
    // test to read (or to shrink with F_SETPIPE_SZ).
    int stderr_pipe() const { return stderr_pipe_.get(); }

private:
    // Remembers superd's children, which outlive it, to end them by pid.
    void adopt_children();
    // With stderr_pipe_unread: appends what the pipe holds to the log.
    void pump_stderr() const;

    TempDir dir_;
    std::string log_path_;
    std::string control_path_;
    pid_t pid_ = -1;
    std::vector<pid_t> orphans_;
    UniqueFd stderr_pipe_;
};

// A socket address from a numeric host, as a peer might have (unlike a
// listen address, IPv4-mapped IPv6 is allowed).
superd::SocketAddress socket_address(const std::string& host, uint16_t port);

// A [service.NAME] table; `listen` entries are written as given.
std::string service_toml(const std::string& name, const std::vector<std::string>& listen, const std::string& program);
// "127.0.0.1:PORT"
std::string loopback(uint16_t port);

// Client side, all with deadlines.
UniqueFd connect_tcp(uint16_t port, const std::string& host = "127.0.0.1", const std::string& source = "");
// The local port of a connected TCP socket (IPv4 or IPv6).
uint16_t local_port(int fd);
// True when nothing listens on 127.0.0.1:`port` (connect fails).
bool refused(uint16_t port);
void send_all(int fd, const std::string& data);
// Reads until EOF (or the deadline, which fails the test).
std::string read_to_eof(int fd, std::chrono::milliseconds limit = 10s);
// Reads exactly `n` bytes (fewer only at EOF or the deadline).
std::string read_n(int fd, size_t n, std::chrono::milliseconds limit = 10s);
// True when nothing arrives on `fd` (no data, no EOF) for `time`.
bool quiet_for(int fd, std::chrono::milliseconds time);
// One whole exchange: connect, send, half-close, read to EOF.
std::string round_trip(uint16_t port, const std::string& request, const std::string& host = "127.0.0.1");

// `n` pseudo-random bytes, the same for the same `seed` on every run.
std::string random_bytes(size_t n, unsigned seed);

// The rest of each line of `text` that starts with `prefix` (for probe reports).
std::vector<std::string> lines_with_prefix(const std::string& text, const std::string& prefix);

// Sends `data` from a UDP socket (bound to `source_port` if not 0) and waits
// up to `limit` for one reply; empty when none came.
std::string udp_exchange(uint16_t port, const std::string& data, const std::string& host = "127.0.0.1",
                         uint16_t source_port = 0, std::chrono::milliseconds limit = 2s);
UniqueFd connect_unix(const std::string& path);
// A socket listening on 127.0.0.1:`port`, to take a port away from superd.
UniqueFd listen_tcp(uint16_t port);
// A listener on 127.0.0.1:`port` whose accept queue is full: listen(fd, 0),
// then connections nobody accepts, added until one stays unanswered. The
// kernel then drops every further SYN, so a connect to it hangs until the
// connecting side gives up (a non-routable address would instead fail at
// once in a container). The connections last as long as the listener.
struct FullListener {
    UniqueFd listener;
    std::vector<UniqueFd> queued;
};
FullListener listen_tcp_full(uint16_t port);
// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
unsigned long listening_inode(uint16_t port);
// Runs a command to completion (killed past `limit`).
Finished run_command(const std::vector<std::string>& argv, std::chrono::milliseconds limit = 10s);

// Kills `pid` and its process group, and reaps `pid` if it is our child.
void kill_and_reap(pid_t pid);

// A helper process a test starts (a backend, a server to compare with, a
// client), its stdout and stderr in a file of its own, its stdin /dev/null
// or, `with_input`, a socket the test writes to with send_all() (a socket
// rather than a pipe: if the process has gone, that fails instead of
// raising SIGPIPE). When it goes out of scope it gets SIGTERM, then SIGKILL
// if it has not exited within 5 s, and is reaped.
class Process {
public:
    explicit Process(const std::vector<std::string>& argv, bool with_input = false);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    pid_t pid() const { return pid_; }
    // What it has written so far.
    std::string output() const;
    // True once it has exited (it is reaped then).
    bool exited();
    // With `with_input`: the test's end of its stdin; close_input() is its EOF.
    int input() const { return input_.get(); }
    void close_input() { input_.reset(); }

private:
    TempDir dir_;
    std::string log_path_;
    pid_t pid_ = -1;
    UniqueFd input_;
};

// Sets environment variables for a scope and removes them again at its
// end, whatever the code under test did with them.
struct ScopedEnv {
    ScopedEnv(std::initializer_list<std::pair<std::string, std::string>> vars) : vars_(vars)
    {
        for (const auto& [name, value] : vars_)
            ::setenv(name.c_str(), value.c_str(), 1);
    }
    ~ScopedEnv()
    {
        for (const auto& [name, value] : vars_)
            ::unsetenv(name.c_str());
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
    std::vector<std::pair<std::string, std::string>> vars_;
};

// Asks `condition` every 10 ms until it holds (true) or `limit` passes (false).
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s);
// The value of `field` ("VmRSS", "SigBlk") in /proc/PID/status; empty if none.
std::string proc_status(pid_t pid, const std::string& field);
// How many descriptors `pid` holds: the entries of /proc/PID/fd.
size_t fd_count(pid_t pid);
// The counter `name` in a counters line ("running=0 accepted=3 ..."), or -1
// when the line has none.
long counter(const std::string& counters, const std::string& name);

} // namespace harness

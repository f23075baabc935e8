// Launcher: the Spawner that starts one service's program, for one
// connection or (wait services) for its listening socket.
//
// Everything that does not depend on the connection is built once, when the
// service is loaded: argv, the fixed part of the environment, the identity
// to switch to. A spawn writes the client's and server's addresses into
// preallocated slots and starts the child with a vfork-style clone
// (CLONE_VM | CLONE_VFORK, as musl's posix_spawn does): no page tables are
// copied, so its cost does not grow with the daemon's memory, and nothing is
// allocated.
//
// The child gets, with the inetd convention, the socket on fds 0 and 1 and
// its stderr target on fd 2; with the systemd convention, /dev/null on 0 and
// 1, stderr on 2 and the socket on fd 3 with LISTEN_FDS=1, LISTEN_PID and
// LISTEN_FDNAMES. No other descriptor, an empty signal mask, every signal at
// its default disposition, a session of its own, then nice, resource
// limits, groups, group, user, cwd and umask as configured. Its environment
// is the service's (PATH, env, pass_env) plus PROTO and, for a connection,
// the client and server under systemd's names (REMOTE_ADDR, REMOTE_PORT) and
// UCSPI's (TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP, TCPLOCALPORT; for unix
// sockets UNIXREMOTEPID, UNIXREMOTEEUID, UNIXREMOTEEGID).
//
// Each child comes with a pidfd (CLONE_PIDFD), so the daemon can reap it
// by pid: waitpid(-1) makes the kernel walk every child, which with
// thousands alive costs more than the spawn. The child gets the soft
// RLIMIT_NOFILE superd started with, not the raised one (see process.h).
//
// A sandboxed service's children come from its spawn helper instead: a
// fork of superd, made at the service's first spawn, that enters the
// sandbox once (sandbox.h) with the service's identity, nice and fd limit,
// then forks each child from there with CLONE_PARENT, so that the child is
// superd's to reap like any other and inherits the sandbox rather than
// building it again. superd hands it the connection's fds and variables
// over a socketpair and waits for the child's pid and pidfd, as it waits
// for a vfork'd child; the child still makes its session, fds and limits
// itself. The helper dies with superd (PR_SET_PDEATHSIG) and with its
// Launcher; one that has ended is started again at the next spawn. It shows
// as "superd-sandbox" in ps.
//
// Why not glibc's posix_spawn: its child sets glibc's internal signals (32
// and 33) to SIG_IGN, which survives exec, so a service would start with
// signals ignored; and it cannot switch user or group.
//
// Not thread-safe: spawn() reuses the launcher's buffers.
#pragma once

#include "superd/address.h"
#include "superd/config.h"
#include "superd/fd.h"
#include "superd/sandbox.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace superd {

struct ChildPlan;
struct HelperReply;

// The descriptors a spawn hands over; none of them may be 0, 1 or 2 (the
// daemon keeps those open).
struct SpawnIo {
    int socket = -1;    // the connection, or the listening socket
    int stderr_fd = -1; // where fd 2 goes; -1: the socket
    int null_fd = -1;   // /dev/null, for the systemd convention's fds 0 and 1
};

// Who is on the other end; empty for a wait service's listening socket.
struct Peer {
    const SocketAddress* remote = nullptr;
    const SocketAddress* local = nullptr;
    std::optional<ucred> credentials; // unix sockets (SO_PEERCRED)
    // More "NAME=value" for this connection's program (TLS's facts).
    std::span<const std::string> environment;
};

struct SpawnResult {
    pid_t pid = -1;
    int error = 0;         // an errno value when the spawn failed
    const char* step = ""; // what failed: "clone", "setuid", "chdir", "exec", ...
    UniqueFd pidfd;        // readable when the child exits; none on kernels before 5.2
};

// What the daemon needs of a launcher; tests put a fake in its place.
class Spawner {
public:
    virtual ~Spawner() = default;
    // A program that cannot be executed is reported here, as an error, and
    // leaves no child behind.
    virtual SpawnResult spawn(const SpawnIo& io, const Peer& peer) = 0;
    virtual const std::string& program() const = 0;
};

class Launcher final : public Spawner {
public:
    // `child_nofile`: the RLIMIT_NOFILE to give children (superd's own may
    // have been raised; see process.h).
    explicit Launcher(const ServiceConfig& config, std::optional<rlimit> child_nofile = std::nullopt);
    ~Launcher() override; // ends the spawn helper, if there is one
    Launcher(const Launcher&) = delete;
    Launcher& operator=(const Launcher&) = delete;

    SpawnResult spawn(const SpawnIo& io, const Peer& peer) override;
    const std::string& program() const override { return program_; }

private:
    // "NAME=value" in a fixed buffer: large enough for any numeric address.
    using EnvSlot = std::array<char, 96>;
    static constexpr size_t kMaxSlots = 6;

    size_t used_slots() const;
    ChildPlan process_plan() const;

    // The spawn helper (above): superd's side.
    SpawnResult spawn_in_sandbox(const SpawnIo& io, std::span<const std::string> environment);
    int start_helper();
    void stop_helper();
    int read_reply(HelperReply& reply, UniqueFd* pidfd);
    // Its own side, in the fork.
    [[noreturn]] void run_helper(int socket, pid_t superd);
    const char* enter_sandbox(int socket, pid_t superd);
    void serve_one(std::vector<char>& request);

    std::string name_;
    std::string program_;
    std::vector<std::string> args_;
    std::vector<char*> argv_;
    std::vector<std::string> fixed_env_;
    std::vector<char*> connection_envp_; // envp_ and a connection's own, when it has any
    std::array<EnvSlot, kMaxSlots> slots_{};
    EnvSlot listen_pid_{}; // "LISTEN_PID=", completed by the child
    std::vector<char*> envp_;
    size_t fixed_vars_ = 0; // envp_'s entries before the connection's slots

    Protocol protocol_;
    bool per_connection_; // nowait: the peer's variables are set
    bool systemd_;
    std::optional<Identity> identity_;
    std::string cwd_;
    int umask_ = -1;
    std::optional<int> nice_;
    std::vector<ResourceLimit> rlimits_;
    std::shared_ptr<const Sandbox> sandbox_; // or null; holds its namespaces open
    struct Helper {
        pid_t pid = -1;
        UniqueFd pidfd; // none on kernels before 5.3
        UniqueFd socket;
    };
    std::optional<Helper> helper_;
    int helper_error_ = 0; // why the last helper could not start, and when
    std::chrono::steady_clock::time_point helper_failed_at_;
    std::array<char, 40> step_text_{}; // a step the helper named, for SpawnResult::step
    std::vector<char> request_;
    // Signals the child must put back to SIG_DFL: those superd handles or
    // ignores, read when the launcher is made (after superd has set up its
    // own), and glibc's internal 32 and 33.
    std::vector<int> reset_signals_;
    std::optional<rlimit> child_nofile_;
    bool share_files_ = true; // CLONE_FILES + CLOSE_RANGE_UNSHARE work here
};

} // namespace superd

#include "superd/launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <linux/close_range.h>

#include <spdlog/spdlog.h>

namespace superd {

namespace {

// The child runs on this much of the parent's stack until it execs.
constexpr size_t kChildStack = 32 * 1024;

// The kernel's own struct sigaction (x86_64, arm64): glibc's sigaction()
// refuses signals 32 and 33, which a child must get back at SIG_DFL too.
// Read and written by raw syscalls; its layout only matters for `handler`.
struct KernelSigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
};
constexpr int kLastSignal = 64;

// Everything the child needs, prepared by the parent before the clone.
struct ChildPlan {
    const char* program;
    char* const* argv;
    char* const* envp;
    SpawnIo io;
    bool systemd;
    char* listen_pid; // "LISTEN_PID=" to complete, or null
    const Identity* identity;
    const Sandbox* sandbox; // or null
    const char* cwd;        // or null
    int umask;              // or -1
    bool set_nice;
    int nice;
    const ResourceLimit* rlimits;
    size_t rlimit_count;
    const int* reset_signals;
    size_t reset_count;
    bool shared_files;  // cloned with CLONE_FILES: unshare before touching any fd
    uint64_t nofile[2]; // soft and hard RLIMIT_NOFILE to give the child, or zeros
    // Set by the child when it cannot get as far as exec.
    int error;
    const char* step;
};

// Appends the decimal `value` and a NUL at `out`; no libc involved.
void write_decimal(char* out, long value)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = static_cast<char>('0' + value % 10);
    while ((value /= 10) > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out = '\0';
}

// Runs in the child, on the parent's stack and in the parent's memory, until
// execve. The parent is suspended meanwhile (CLONE_VFORK). Raw system calls
// only: no allocation, no locks, nothing that touches libc's state. Returns
// only on failure, with plan->error and plan->step set.
[[gnu::no_sanitize_address]] void child_setup(ChildPlan* plan)
{
    auto failed = [plan](const char* step) {
        plan->error = errno;
        plan->step = step;
    };

    // Back to SIG_DFL while every signal is still blocked, so no handler of
    // the daemon can ever run here. Only what is not at SIG_DFL already:
    // a syscall per signal is a real part of a spawn's cost.
    KernelSigaction dfl{};
    dfl.handler = SIG_DFL;
    for (size_t i = 0; i < plan->reset_count; ++i)
        ::syscall(SYS_rt_sigaction, plan->reset_signals[i], &dfl, nullptr, sizeof dfl.mask);

    // The sandbox's first step, while the namespaces' fds (kept up high)
    // are still in reach: joining them only reads the fd table.
    const Sandbox* sandbox = plan->sandbox;
    if (sandbox)
        if (const char* step = sandbox->enter(plan->identity && plan->identity->change_user))
            return failed(step);

    const SpawnIo& io = plan->io;
    int ruleset = sandbox ? sandbox->ruleset_fd() : -1;
    if (plan->shared_files) {
        // The fd table is still the parent's. Take a private copy of just
        // its bottom, up to the highest fd needed here: the copy no longer
        // grows with the daemon's listeners and children.
        unsigned highest = static_cast<unsigned>(std::max({io.socket, io.stderr_fd, io.null_fd, ruleset, 3}));
        if (::syscall(SYS_close_range, highest + 1, ~0U, CLOSE_RANGE_UNSHARE) < 0)
            return failed("close_range");
    }

    if (::syscall(SYS_setsid) < 0)
        return failed("setsid");

    int err = io.stderr_fd >= 0 ? io.stderr_fd : io.socket;
    int in = plan->systemd ? io.null_fd : io.socket;
    if (::syscall(SYS_dup3, in, 0, 0) < 0 || ::syscall(SYS_dup3, in, 1, 0) < 0 || ::syscall(SYS_dup3, err, 2, 0) < 0)
        return failed("dup");
    int first_unused = 3;
    if (plan->systemd) {
        // fd 3 may already be the socket; then it only loses close-on-exec.
        long rc = io.socket == 3 ? ::syscall(SYS_fcntl, 3, F_SETFD, 0) : ::syscall(SYS_dup3, io.socket, 3, 0);
        if (rc < 0)
            return failed("dup");
        first_unused = 4;
        if (plan->listen_pid)
            write_decimal(plan->listen_pid + sizeof "LISTEN_PID=" - 1, ::syscall(SYS_getpid));
    }
    // Landlock's ruleset is needed after the user switch: it moves to the
    // first free fd (it is never 0-3) and stays close-on-exec.
    if (ruleset >= 0) {
        if (ruleset != first_unused && ::syscall(SYS_dup3, ruleset, first_unused, O_CLOEXEC) < 0)
            return failed("dup");
        ruleset = first_unused++;
    }
    // Every fd superd holds is close-on-exec already; this also keeps out any
    // a library opened without it. Its failure is no reason to fail: kernels
    // before 5.9 lack close_range, and seccomp filters may refuse it.
    ::syscall(SYS_close_range, first_unused, ~0U, 0U);

    // Priority first: lowering nice needs the privileges dropped below.
    if (plan->set_nice && ::syscall(SYS_setpriority, PRIO_PROCESS, 0, plan->nice) < 0)
        return failed("setpriority");
    // Before the switch too: raising a hard limit needs root. First the
    // soft fd limit superd was started with, then the service's own.
    if (plan->nofile[0] != 0 && ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, plan->nofile, nullptr) < 0)
        return failed("setrlimit");
    for (size_t i = 0; i < plan->rlimit_count; ++i) {
        const ResourceLimit& limit = plan->rlimits[i];
        uint64_t both[2] = {limit.value, limit.value};
        if (::syscall(SYS_prlimit64, 0, limit.resource, both, nullptr) < 0)
            return failed("setrlimit");
    }
    if (const Identity* id = plan->identity) {
        if (::syscall(SYS_setgroups, id->groups.size(), id->groups.data()) < 0)
            return failed("setgroups");
        if (::syscall(SYS_setgid, id->gid) < 0)
            return failed("setgid");
        if (id->change_user && ::syscall(SYS_setuid, id->uid) < 0)
            return failed("setuid");
    }
    // After the switch, so the service's own rights decide.
    if (plan->cwd && ::syscall(SYS_chdir, plan->cwd) < 0)
        return failed("chdir");
    if (plan->umask >= 0)
        ::syscall(SYS_umask, plan->umask);
    // The rest of the sandbox, seccomp last: capabilities, no_new_privs,
    // Landlock, seccomp (sandbox.h).
    if (sandbox)
        if (const char* step = sandbox->restrict(ruleset))
            return failed(step);

    uint64_t none = 0;
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
    ::syscall(SYS_execve, plan->program, plan->argv, plan->envp);
    failed("exec");
}

[[gnu::no_sanitize_address]] int run_child(void* arg)
{
    child_setup(static_cast<ChildPlan*>(arg));
    ::syscall(SYS_exit_group, 127);
    return 127;
}

template <size_t N>
void put(std::array<char, N>& slot, const char* name, const char* value)
{
    size_t n = std::strlen(name);
    size_t m = std::min(std::strlen(value), N - n - 2);
    std::memcpy(slot.data(), name, n);
    slot[n] = '=';
    std::memcpy(slot.data() + n + 1, value, m);
    slot[n + 1 + m] = '\0';
}

template <size_t N>
void put(std::array<char, N>& slot, const char* name, long value)
{
    std::array<char, 24> text;
    write_decimal(text.data(), value);
    put(slot, name, text.data());
}

} // namespace

Launcher::Launcher(const ServiceConfig& config, std::optional<rlimit> child_nofile)
    : program_(config.program), args_(config.args), fixed_env_(config.env), protocol_(config.protocol),
      per_connection_(config.mode == Mode::kNowait), systemd_(config.fd_convention == FdConvention::kSystemd),
      identity_(config.identity), cwd_(config.cwd), umask_(config.umask ? static_cast<int>(*config.umask) : -1),
      nice_(config.nice), rlimits_(config.rlimits), sandbox_(config.sandbox_prepared), child_nofile_(child_nofile)
{
    if (sandbox_)
        for (const std::string& warning : sandbox_->warnings())
            spdlog::warn("service={} sandbox=\"{}\"", config.name, warning);
    for (std::string& arg : args_)
        argv_.push_back(arg.data());
    argv_.push_back(nullptr);

    for (int sig = 1; sig <= kLastSignal; ++sig) {
        KernelSigaction current{};
        bool internal = sig == 32 || sig == 33; // glibc may set these up at any time
        if (internal
            || (::syscall(SYS_rt_sigaction, sig, nullptr, &current, sizeof current.mask) == 0
                && current.handler != SIG_DFL))
            reset_signals_.push_back(sig);
    }

    const char* proto = protocol_ == Protocol::kUdp    ? "PROTO=UDP"
                        : protocol_ == Protocol::kUnix ? "PROTO=UNIX"
                                                       : "PROTO=TCP";
    fixed_env_.push_back(proto);
    if (systemd_) {
        fixed_env_.push_back("LISTEN_FDS=1");
        fixed_env_.push_back("LISTEN_FDNAMES=" + config.name);
    }
    for (std::string& var : fixed_env_)
        envp_.push_back(var.data());
    if (systemd_) {
        put(listen_pid_, "LISTEN_PID", "");
        envp_.push_back(listen_pid_.data());
    }
    if (per_connection_) {
        size_t used = protocol_ == Protocol::kUnix ? 3 : 6;
        for (size_t i = 0; i < used; ++i)
            envp_.push_back(slots_[i].data());
    }
    envp_.push_back(nullptr);
}

SpawnResult Launcher::spawn(const SpawnIo& io, const Peer& peer)
{
    if (per_connection_ && protocol_ == Protocol::kUnix) {
        const ucred cred = peer.credentials.value_or(ucred{0, static_cast<uid_t>(-1), static_cast<gid_t>(-1)});
        put(slots_[0], "UNIXREMOTEPID", static_cast<long>(cred.pid));
        put(slots_[1], "UNIXREMOTEEUID", static_cast<long>(cred.uid));
        put(slots_[2], "UNIXREMOTEEGID", static_cast<long>(cred.gid));
    } else if (per_connection_ && peer.remote && peer.local) {
        HostText host;
        PortText port;
        format_host(*peer.remote, host);
        format_port(*peer.remote, port);
        put(slots_[0], "REMOTE_ADDR", host.data());
        put(slots_[1], "REMOTE_PORT", port.data());
        put(slots_[2], "TCPREMOTEIP", host.data());
        put(slots_[3], "TCPREMOTEPORT", port.data());
        format_host(*peer.local, host);
        format_port(*peer.local, port);
        put(slots_[4], "TCPLOCALIP", host.data());
        put(slots_[5], "TCPLOCALPORT", port.data());
    }

    ChildPlan plan{};
    plan.program = program_.c_str();
    plan.argv = argv_.data();
    plan.envp = envp_.data();
    if (!peer.environment.empty()) {
        connection_envp_.assign(envp_.begin(), envp_.end() - 1);
        for (const std::string& var : peer.environment)
            connection_envp_.push_back(const_cast<char*>(var.c_str()));
        connection_envp_.push_back(nullptr);
        plan.envp = connection_envp_.data();
    }
    plan.io = io;
    plan.systemd = systemd_;
    plan.listen_pid = systemd_ ? listen_pid_.data() : nullptr;
    plan.identity = identity_ ? &*identity_ : nullptr;
    plan.sandbox = sandbox_.get();
    plan.cwd = cwd_.empty() ? nullptr : cwd_.c_str();
    plan.umask = umask_;
    plan.set_nice = nice_.has_value();
    plan.nice = nice_.value_or(0);
    plan.rlimits = rlimits_.data();
    plan.rlimit_count = rlimits_.size();
    plan.reset_signals = reset_signals_.data();
    plan.reset_count = reset_signals_.size();
    if (child_nofile_) {
        plan.nofile[0] = child_nofile_->rlim_cur;
        plan.nofile[1] = child_nofile_->rlim_max;
    }

    sigset_t all, previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    alignas(16) std::array<char, kChildStack> stack;
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    plan.shared_files = share_files_;
    pid_t pid = ::clone(run_child, stack.data() + stack.size(), flags | (share_files_ ? CLONE_FILES : 0) | CLONE_PIDFD,
                        &plan, &pidfd);
    // Without a pidfd (a kernel before 5.2, or no fd left for it), the child
    // is reaped through SIGCHLD instead.
    if (pid < 0 && (errno == EINVAL || errno == EMFILE || errno == ENFILE)) {
        pidfd = -1;
        pid = ::clone(run_child, stack.data() + stack.size(), flags | (share_files_ ? CLONE_FILES : 0), &plan);
    }
    if (pid > 0 && plan.error != 0 && std::strcmp(plan.step, "close_range") == 0) {
        // A kernel without CLOSE_RANGE_UNSHARE (before 5.9): copy the whole
        // table at clone, as fork does, from now on.
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        if (pidfd >= 0)
            ::close(pidfd);
        share_files_ = false;
        plan.error = 0;
        plan.shared_files = false;
        pidfd = -1;
        pid = ::clone(run_child, stack.data() + stack.size(), flags | CLONE_PIDFD, &plan, &pidfd);
    }
    int clone_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pidfd >= 0)
        pidfd = move_high(pidfd);

    SpawnResult result;
    result.pidfd.reset(pid < 0 ? -1 : pidfd);
    if (pid < 0) {
        result.error = clone_error;
        result.step = "clone";
        return result;
    }
    if (plan.error != 0) {
        // CLONE_VFORK resumed us only once the child had exited: reap it now,
        // so a failed spawn leaves no zombie and no pid for the reaper.
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        result.error = plan.error;
        result.step = plan.step;
        result.pidfd.reset();
        return result;
    }
    result.pid = pid;
    return result;
}

} // namespace superd

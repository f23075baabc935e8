#include "superd/launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace superd {

// Everything the child needs, prepared by the parent before the clone.
struct ChildPlan {
    const char* program;
    char* const* argv;
    char* const* envp;
    SpawnIo io;
    bool systemd;
    char* listen_pid; // "LISTEN_PID=" to complete, or null
    const Identity* identity;
    const Sandbox* sandbox; // entered by the helper: its child filter is left
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

// The spawn helper's protocol, on a SOCK_SEQPACKET socketpair: one message
// each way per spawn. superd sends a Request and the connection's fds (its
// socket, then stderr's and /dev/null if the flags say so) as SCM_RIGHTS;
// the helper answers with a Reply and, for a child, its pidfd. The helper's
// first Reply, before any Request, says whether it entered the sandbox.
struct HelperRequest {
    uint32_t vars = 0; // NUL-terminated "NAME=value" that follow: the connection's
    uint8_t has_stderr = 0;
    uint8_t has_null = 0;
};
struct HelperReply {
    int32_t pid = 0;   // the child, or -1 (0: the helper's first answer)
    int32_t error = 0; // an errno value when the spawn or the helper failed
    char step[40] = {};
};
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

// Puts back to SIG_DFL, while every signal is still blocked so that no
// handler of the daemon can ever run in a child, what is not there already:
// a syscall per signal is a real part of a spawn's cost.
[[gnu::no_sanitize_address]] void reset_signals(const ChildPlan* plan)
{
    KernelSigaction dfl{};
    dfl.handler = SIG_DFL;
    for (size_t i = 0; i < plan->reset_count; ++i)
        ::syscall(SYS_rt_sigaction, plan->reset_signals[i], &dfl, nullptr, sizeof dfl.mask);
}

// Priority and resource limits, before the switch of user: lowering nice
// and raising a hard limit need root. First the soft fd limit superd was
// started with, then the service's own.
[[gnu::no_sanitize_address]] const char* set_limits(const ChildPlan* plan)
{
    if (plan->set_nice && ::syscall(SYS_setpriority, PRIO_PROCESS, 0, plan->nice) < 0)
        return "setpriority";
    if (plan->nofile[0] != 0 && ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, plan->nofile, nullptr) < 0)
        return "setrlimit";
    for (size_t i = 0; i < plan->rlimit_count; ++i) {
        const ResourceLimit& limit = plan->rlimits[i];
        uint64_t both[2] = {limit.value, limit.value};
        if (::syscall(SYS_prlimit64, 0, limit.resource, both, nullptr) < 0)
            return "setrlimit";
    }
    return nullptr;
}

// Groups, group and user; then cwd and umask, so that the service's own
// rights decide.
[[gnu::no_sanitize_address]] const char* take_identity(const ChildPlan* plan)
{
    if (const Identity* id = plan->identity) {
        if (::syscall(SYS_setgroups, id->groups.size(), id->groups.data()) < 0)
            return "setgroups";
        if (::syscall(SYS_setgid, id->gid) < 0)
            return "setgid";
        if (id->change_user && ::syscall(SYS_setuid, id->uid) < 0)
            return "setuid";
    }
    if (plan->cwd && ::syscall(SYS_chdir, plan->cwd) < 0)
        return "chdir";
    if (plan->umask >= 0)
        ::syscall(SYS_umask, plan->umask);
    return nullptr;
}

// Runs in the child, on the parent's stack and in the parent's memory, until
// execve. The parent (superd, or a sandboxed service's helper) is suspended
// meanwhile (CLONE_VFORK). Raw system calls only: no allocation, no locks,
// nothing that touches libc's state. Returns only on failure, with
// plan->error and plan->step set.
[[gnu::no_sanitize_address]] void child_setup(ChildPlan* plan)
{
    auto failed = [plan](const char* step) {
        plan->error = errno;
        plan->step = step;
    };

    reset_signals(plan);
    const SpawnIo& io = plan->io;
    if (plan->shared_files) {
        // The fd table is still the parent's. Take a private copy of just
        // its bottom, up to the highest fd needed here: the copy no longer
        // grows with the daemon's listeners and children.
        unsigned highest = static_cast<unsigned>(std::max({io.socket, io.stderr_fd, io.null_fd, 3}));
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
    // Every fd superd holds is close-on-exec already; this also keeps out any
    // a library opened without it. Its failure is no reason to fail: kernels
    // before 5.9 lack close_range.
    ::syscall(SYS_close_range, first_unused, ~0U, 0U);

    if (const char* step = set_limits(plan))
        return failed(step);
    if (const char* step = take_identity(plan))
        return failed(step);
    if (plan->sandbox)
        if (const char* step = plan->sandbox->restrict_child())
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

constexpr size_t kMaxRequest = 64 * 1024;
constexpr size_t kMaxHelperVars = 256;
constexpr int kHelperSocket = 3; // where the helper keeps its end
// Long enough for any spawn on a machine that still works; a helper that
// says nothing for this long is killed and started anew.
constexpr int kHelperTimeoutSeconds = 5;
// A helper that could not enter its sandbox is not forked again sooner.
constexpr auto kHelperRetry = std::chrono::seconds(1);

SpawnResult spawn_failure(int error, const char* step)
{
    SpawnResult result;
    result.error = error;
    result.step = step;
    return result;
}

void copy_step(char* out, size_t size, const char* step)
{
    size_t n = std::min(std::strlen(step), size - 1);
    std::memcpy(out, step, n);
    out[n] = '\0';
}

// Sends `size` bytes at `data` with `fds` (at most 3) as SCM_RIGHTS.
ssize_t send_with_fds(int socket, const void* data, size_t size, std::span<const int> fds)
{
    iovec iov{const_cast<void*>(data), size};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))] = {};
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
        std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
    }
    ssize_t n;
    do
        n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

// Receives one message into `data` and up to 3 fds (close-on-exec) into
// `fds`, their number into `nfds`; `flags` gets the message's: MSG_TRUNC
// when it was cut short, MSG_CTRUNC when fds were lost (superd out of fds:
// then none is kept).
ssize_t receive_with_fds(int socket, void* data, size_t size, int* fds, size_t& nfds, int& flags)
{
    iovec iov{data, size};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do
        n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    nfds = 0;
    flags = n < 0 ? 0 : msg.msg_flags;
    if (n < 0)
        return n;
    for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg))
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count && nfds < 3; ++i)
                std::memcpy(&fds[nfds++], CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        }
    if (flags & MSG_CTRUNC) {
        for (size_t i = 0; i < nfds; ++i)
            ::close(fds[i]);
        nfds = 0;
    }
    return n;
}

} // namespace

Launcher::Launcher(const ServiceConfig& config, std::optional<rlimit> child_nofile)
    : name_(config.name), program_(config.program), args_(config.args), fixed_env_(config.env),
      protocol_(config.protocol), per_connection_(config.mode == Mode::kNowait),
      systemd_(config.fd_convention == FdConvention::kSystemd), identity_(config.identity), cwd_(config.cwd),
      umask_(config.umask ? static_cast<int>(*config.umask) : -1), nice_(config.nice), rlimits_(config.rlimits),
      sandbox_(config.sandbox_prepared), child_nofile_(child_nofile)
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
    fixed_vars_ = envp_.size();
    if (per_connection_)
        for (size_t i = 0; i < used_slots(); ++i)
            envp_.push_back(slots_[i].data());
    envp_.push_back(nullptr);
}

Launcher::~Launcher() { stop_helper(); }

size_t Launcher::used_slots() const { return !per_connection_ ? 0 : protocol_ == Protocol::kUnix ? 3 : 6; }

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
    if (sandbox_)
        return spawn_in_sandbox(io, peer.environment);

    ChildPlan plan = process_plan();
    plan.envp = envp_.data();
    if (!peer.environment.empty()) {
        connection_envp_.assign(envp_.begin(), envp_.end() - 1);
        for (const std::string& var : peer.environment)
            connection_envp_.push_back(const_cast<char*>(var.c_str()));
        connection_envp_.push_back(nullptr);
        plan.envp = connection_envp_.data();
    }
    plan.io = io;

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

// What every child of this service takes on itself, the connection aside.
ChildPlan Launcher::process_plan() const
{
    ChildPlan plan{};
    plan.program = program_.c_str();
    plan.argv = argv_.data();
    plan.systemd = systemd_;
    plan.listen_pid = systemd_ ? const_cast<char*>(listen_pid_.data()) : nullptr;
    plan.identity = identity_ ? &*identity_ : nullptr;
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
    return plan;
}

// ---- The spawn helper: superd's side ----

SpawnResult Launcher::spawn_in_sandbox(const SpawnIo& io, std::span<const std::string> environment)
{
    size_t slots = used_slots();
    if (slots + environment.size() > kMaxHelperVars)
        return spawn_failure(E2BIG, "sandbox helper");
    HelperRequest header;
    header.vars = static_cast<uint32_t>(slots + environment.size());
    header.has_stderr = io.stderr_fd >= 0;
    header.has_null = io.null_fd >= 0;
    request_.assign(reinterpret_cast<const char*>(&header), reinterpret_cast<const char*>(&header) + sizeof header);
    for (size_t i = 0; i < slots; ++i)
        request_.insert(request_.end(), slots_[i].data(), slots_[i].data() + std::strlen(slots_[i].data()) + 1);
    for (const std::string& var : environment)
        request_.insert(request_.end(), var.c_str(), var.c_str() + var.size() + 1);
    if (request_.size() > kMaxRequest)
        return spawn_failure(E2BIG, "sandbox helper");
    int fds[3], nfds = 0;
    fds[nfds++] = io.socket;
    if (io.stderr_fd >= 0)
        fds[nfds++] = io.stderr_fd;
    if (io.null_fd >= 0)
        fds[nfds++] = io.null_fd;

    // A helper that has ended (killed by someone, say) is found out here,
    // before anything was spawned: one new helper, then the request again.
    for (int attempt = 0;; ++attempt) {
        if (!helper_)
            if (int error = start_helper())
                return spawn_failure(error, step_text_.data());
        if (send_with_fds(helper_->socket.get(), request_.data(), request_.size(), {fds, size_t(nfds)}) >= 0)
            break;
        int error = errno;
        stop_helper();
        if (attempt > 0 || (error != EPIPE && error != ECONNRESET && error != ENOTCONN))
            return spawn_failure(error, "sandbox helper");
    }

    HelperReply reply;
    SpawnResult result;
    if (int error = read_reply(reply, &result.pidfd)) {
        stop_helper();
        return spawn_failure(error, "sandbox helper");
    }
    if (reply.error != 0) {
        // The child ended before exec, a zombie of superd's (the helper
        // clones with CLONE_PARENT): reaped now, as a failed spawn's is.
        if (reply.pid > 0)
            while (::waitpid(reply.pid, nullptr, 0) < 0 && errno == EINTR) {
            }
        copy_step(step_text_.data(), step_text_.size(), reply.step);
        return spawn_failure(reply.error, step_text_.data());
    }
    result.pid = reply.pid;
    return result;
}

// 0, or an errno value (ETIMEDOUT when the helper said nothing in time).
int Launcher::read_reply(HelperReply& reply, UniqueFd* pidfd)
{
    int fds[3];
    size_t nfds = 0;
    int flags = 0;
    ssize_t n = receive_with_fds(helper_->socket.get(), &reply, sizeof reply, fds, nfds, flags);
    int error = n < 0 ? (errno == EAGAIN ? ETIMEDOUT : errno) : n == 0 ? EPIPE : 0;
    // A pidfd lost to a full fd table (MSG_CTRUNC) is no error: the child
    // is then reaped through SIGCHLD, as one spawned without a pidfd.
    if (error == 0 && (n != static_cast<ssize_t>(sizeof reply) || (flags & MSG_TRUNC)))
        error = EPROTO;
    reply.step[sizeof reply.step - 1] = '\0';
    for (size_t i = 0; i < nfds; ++i)
        if (i == 0 && pidfd && error == 0)
            pidfd->reset(move_high(fds[i]));
        else
            ::close(fds[i]);
    return error;
}

// 0 once the helper has entered the sandbox and waits for requests; else
// an errno value, with the step that failed in step_text_.
int Launcher::start_helper()
{
    auto now = std::chrono::steady_clock::now();
    if (helper_error_ != 0 && now - helper_failed_at_ < kHelperRetry)
        return helper_error_;
    auto failed = [&](int error, const char* step) {
        copy_step(step_text_.data(), step_text_.size(), step);
        helper_error_ = error;
        helper_failed_at_ = now;
        return error;
    };
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
        return failed(errno, "socketpair");
    UniqueFd ours(pair[0]), theirs(pair[1]);
    pid_t superd = ::getpid();

    // No handler of superd's may run in the helper: every signal stays
    // blocked there until it has put them all back to their defaults.
    sigset_t all, previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t pid = ::fork();
    if (pid == 0)
        run_helper(theirs.get(), superd);
    int fork_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    theirs.reset();
    if (pid < 0)
        return failed(fork_error, "fork");

    helper_.emplace(Helper{pid, UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))), std::move(ours)});
    timeval timeout{kHelperTimeoutSeconds, 0};
    ::setsockopt(helper_->socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(helper_->socket.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    HelperReply ready;
    int error = read_reply(ready, nullptr);
    const char* step = error != 0 ? "sandbox helper" : ready.step;
    if (error == 0)
        error = ready.error;
    if (error != 0) {
        stop_helper();
        return failed(error, step);
    }
    helper_error_ = 0;
    spdlog::info("sandbox service={} helper={} (forks the service's programs inside the sandbox)", name_, pid);
    return 0;
}

// Kills the helper, if there is one, and reaps it. The children it forked
// are superd's, and live on.
void Launcher::stop_helper()
{
    if (!helper_)
        return;
    helper_->socket.reset();
    if (helper_->pidfd) {
        // By its pidfd: its pid may already be reaped and another's.
        ::syscall(SYS_pidfd_send_signal, helper_->pidfd.get(), SIGKILL, nullptr, 0);
        siginfo_t info;
        while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(helper_->pidfd.get()), &info, WEXITED) < 0
               && errno == EINTR) {
        }
    }
    // Without a pidfd (a kernel before 5.3), the helper ends at the closed
    // socket and superd's reaper takes it.
    helper_.reset();
}

// ---- The spawn helper: its own side, in a fork of superd ----

[[noreturn]] void Launcher::run_helper(int socket, pid_t superd)
{
    // Everything the loop uses is allocated now: once the sandbox's filter
    // is in place the helper allocates nothing (a deny list may refuse brk
    // or mmap).
    std::vector<char> request(kMaxRequest);
    connection_envp_.reserve(fixed_vars_ + kMaxHelperVars + 1);
    HelperReply ready;
    if (const char* step = enter_sandbox(socket, superd)) {
        ready.error = errno;
        copy_step(ready.step, sizeof ready.step, step);
    }
    if (send_with_fds(kHelperSocket, &ready, sizeof ready, {}) < 0 || ready.error != 0)
        ::syscall(SYS_exit_group, 1);
    for (;;)
        serve_one(request);
}

// The sandbox entered once, for the helper and every child it will fork:
// signals, session, namespaces, fds, limits, identity, then capabilities,
// no_new_privs, Landlock and seccomp (sandbox.h). Null, or the step that
// failed with errno set.
const char* Launcher::enter_sandbox(int socket, pid_t superd)
{
    ChildPlan plan = process_plan();
    reset_signals(&plan);
    if (::setsid() < 0)
        return "setsid";
    if (const char* step = sandbox_->enter(identity_ && identity_->change_user))
        return step;
    // Only its socket and the Landlock ruleset (never 0-3) stay open, and
    // superd's stdin, stdout and stderr.
    if (socket != kHelperSocket && ::dup3(socket, kHelperSocket, O_CLOEXEC) < 0)
        return "dup";
    int ruleset = sandbox_->ruleset_fd();
    if (ruleset > kHelperSocket + 1)
        ::syscall(SYS_close_range, kHelperSocket + 1, ruleset - 1, 0U);
    ::syscall(SYS_close_range, std::max(ruleset, kHelperSocket) + 1, ~0U, 0U);

    // The service's limits are its children's, set by each; the helper only
    // raises the hard limits they need while it still may.
    plan.rlimits = nullptr;
    plan.rlimit_count = 0;
    if (const char* step = set_limits(&plan))
        return step;
    for (const ResourceLimit& limit : rlimits_) {
        rlimit current{};
        if (::getrlimit(limit.resource, &current) == 0 && limit.value > current.rlim_max) {
            current.rlim_max = limit.value;
            if (::setrlimit(limit.resource, &current) != 0)
                return "setrlimit";
        }
    }
    if (const char* step = take_identity(&plan))
        return step;
    // Ends with superd, even killed: after the switch of user, which clears it.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != superd)
        return "prctl";
    ::prctl(PR_SET_NAME, "superd-sandbox");
    if (const char* step = sandbox_->restrict(ruleset))
        return step;
    if (ruleset >= 0)
        ::close(ruleset);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    return nullptr;
}

// One request: the connection's fds and variables in, a child forked into
// superd's care (CLONE_PARENT) inside the sandbox, its pid and pidfd out.
void Launcher::serve_one(std::vector<char>& request)
{
    int fds[3];
    size_t nfds = 0;
    int flags = 0;
    ssize_t n = receive_with_fds(kHelperSocket, request.data(), request.size(), fds, nfds, flags);
    if (n <= 0)
        ::syscall(SYS_exit_group, 0); // superd has closed its end
    HelperReply reply;
    HelperRequest header;
    bool valid = n >= static_cast<ssize_t>(sizeof header) && !(flags & (MSG_TRUNC | MSG_CTRUNC));
    if (valid)
        std::memcpy(&header, request.data(), sizeof header);
    valid = valid && header.vars <= kMaxHelperVars && nfds == 1u + header.has_stderr + header.has_null;

    connection_envp_.assign(envp_.begin(), envp_.begin() + static_cast<std::ptrdiff_t>(fixed_vars_));
    const char* end = request.data() + n;
    const char* var = request.data() + sizeof header;
    for (uint32_t i = 0; valid && i < header.vars; ++i) {
        const char* nul = static_cast<const char*>(std::memchr(var, '\0', static_cast<size_t>(end - var)));
        valid = nul != nullptr;
        if (valid)
            connection_envp_.push_back(const_cast<char*>(var));
        var = nul ? nul + 1 : end;
    }
    connection_envp_.push_back(nullptr);

    int pidfd = -1;
    if (!valid) {
        reply.pid = -1;
        reply.error = flags & (MSG_TRUNC | MSG_CTRUNC) ? EMSGSIZE : EPROTO;
        copy_step(reply.step, sizeof reply.step, "sandbox helper");
    } else {
        ChildPlan plan{};
        plan.program = program_.c_str();
        plan.argv = argv_.data();
        plan.envp = connection_envp_.data();
        plan.io.socket = fds[0];
        plan.io.stderr_fd = header.has_stderr ? fds[1] : -1;
        plan.io.null_fd = header.has_null ? fds[nfds - 1] : -1;
        plan.systemd = systemd_;
        plan.listen_pid = systemd_ ? listen_pid_.data() : nullptr;
        plan.sandbox = sandbox_.get();
        plan.umask = -1;
        plan.rlimits = rlimits_.data();
        plan.rlimit_count = rlimits_.size();
        alignas(16) std::array<char, kChildStack> stack;
        int clone_flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD;
        pid_t pid = ::clone(run_child, stack.data() + stack.size(), clone_flags | CLONE_PIDFD, &plan, &pidfd);
        if (pid < 0 && errno == EINVAL) {
            pidfd = -1;
            pid = ::clone(run_child, stack.data() + stack.size(), clone_flags, &plan);
        }
        reply.pid = pid;
        reply.error = pid < 0 ? errno : plan.error;
        copy_step(reply.step, sizeof reply.step, pid < 0 ? "clone" : plan.error != 0 ? plan.step : "");
    }
    int sent[1] = {pidfd};
    send_with_fds(kHelperSocket, &reply, sizeof reply, {sent, pidfd >= 0 ? 1u : 0u});
    if (pidfd >= 0)
        ::close(pidfd);
    for (size_t i = 0; i < nfds; ++i)
        ::close(fds[i]);
}

} // namespace superd

#include "superd/spawn.h"

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

namespace superd {

namespace {

constexpr const char* kPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The child runs on this much of the parent's stack until it execs.
constexpr size_t kChildStack = 32 * 1024;

// The kernel's own struct sigaction (x86_64, arm64): glibc's sigaction()
// refuses signals 32 and 33, which a child must get back at SIG_DFL too.
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
    int connection;
    int error; // set by the child when it cannot get as far as exec
};

// Runs in the child, on the parent's stack and in the parent's memory, until
// execve. The parent is suspended meanwhile (CLONE_VFORK). Raw system calls
// only: no allocation, no locks, nothing that touches libc's state.
[[gnu::no_sanitize_address]] int run_child(void* arg)
{
    auto* plan = static_cast<ChildPlan*>(arg);

    // Back to SIG_DFL while every signal is still blocked, so no handler of
    // the daemon can ever run here. SIGKILL and SIGSTOP refuse; that is fine.
    KernelSigaction dfl{};
    dfl.handler = SIG_DFL;
    for (int sig = 1; sig <= kLastSignal; ++sig)
        ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof dfl.mask);

    if (::syscall(SYS_setsid) < 0)
        goto fail;
    for (int target = 0; target <= 2; ++target)
        if (::syscall(SYS_dup3, plan->connection, target, 0) < 0)
            goto fail;
    // Every fd superd holds is close-on-exec already; this also keeps out any
    // a library opened without it. Kernels before 5.9 lack close_range.
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) < 0 && errno != ENOSYS)
        goto fail;
    {
        uint64_t none = 0;
        ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
    }
    ::syscall(SYS_execve, plan->program, plan->argv, plan->envp);
fail:
    plan->error = errno;
    ::syscall(SYS_exit_group, 127);
    return 127;
}

void put(std::array<char, 96>& slot, const char* name, const char* value)
{
    size_t n = std::strlen(name);
    size_t m = std::min(std::strlen(value), slot.size() - n - 2);
    std::memcpy(slot.data(), name, n);
    slot[n] = '=';
    std::memcpy(slot.data() + n + 1, value, m);
    slot[n + 1 + m] = '\0';
}

} // namespace

Launcher::Launcher(std::string program, std::vector<std::string> args)
    : program_(std::move(program)), args_(std::move(args)), fixed_env_{kPath, "PROTO=TCP"}
{
    for (std::string& arg : args_)
        argv_.push_back(arg.data());
    argv_.push_back(nullptr);

    for (std::string& var : fixed_env_)
        envp_.push_back(var.data());
    for (EnvSlot& slot : slots_)
        envp_.push_back(slot.data());
    envp_.push_back(nullptr);
}

SpawnResult Launcher::spawn(int connection, const SocketAddress& peer, const SocketAddress& local)
{
    HostText host;
    PortText port;
    format_host(peer, host);
    format_port(peer, port);
    put(slots_[kRemoteAddr], "REMOTE_ADDR", host.data());
    put(slots_[kRemotePort], "REMOTE_PORT", port.data());
    put(slots_[kTcpRemoteIp], "TCPREMOTEIP", host.data());
    put(slots_[kTcpRemotePort], "TCPREMOTEPORT", port.data());
    format_host(local, host);
    format_port(local, port);
    put(slots_[kTcpLocalIp], "TCPLOCALIP", host.data());
    put(slots_[kTcpLocalPort], "TCPLOCALPORT", port.data());

    ChildPlan plan{program_.c_str(), argv_.data(), envp_.data(), connection, 0};

    sigset_t all, previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    alignas(16) std::array<char, kChildStack> stack;
    pid_t pid = ::clone(run_child, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    int clone_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);

    if (pid < 0)
        return {-1, clone_error};
    if (plan.error != 0) {
        // CLONE_VFORK resumed us only once the child had exited: reap it now,
        // so a failed spawn leaves no zombie and no pid for the reaper.
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        return {-1, plan.error};
    }
    return {pid, 0};
}

} // namespace superd

#include "superd/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

namespace superd {

namespace {

// Landlock's access rights: ABI 1 and 2 from the kernel's header; the two
// newer ones by value (fixed by the kernel's ABI), since the headers Debian 12
// builds with stop before them.
constexpr uint64_t kExecute = LANDLOCK_ACCESS_FS_EXECUTE;
constexpr uint64_t kWriteFile = LANDLOCK_ACCESS_FS_WRITE_FILE;
constexpr uint64_t kReadFile = LANDLOCK_ACCESS_FS_READ_FILE;
constexpr uint64_t kReadDir = LANDLOCK_ACCESS_FS_READ_DIR;
constexpr uint64_t kMakeSym = LANDLOCK_ACCESS_FS_MAKE_SYM; // the last of ABI 1
constexpr uint64_t kRefer = LANDLOCK_ACCESS_FS_REFER;      // ABI 2
constexpr uint64_t kTruncate = 1ULL << 14;                 // ABI 3
constexpr uint64_t kIoctlDev = 1ULL << 15;                 // ABI 5

// Every right an ABI knows: all of them are handled, so whatever is not
// granted below is refused.
uint64_t handled_by(int abi)
{
    uint64_t rights = (kMakeSym << 1) - 1;
    if (abi >= 2)
        rights |= kRefer;
    if (abi >= 3)
        rights |= kTruncate;
    if (abi >= 5)
        rights |= kIoctlDev;
    return rights;
}

// What a rule may grant on a file (not a folder); folders take any right.
constexpr uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;
constexpr uint64_t kRead = kReadFile | kReadDir;
// No device nodes: a service that may make one could reach any disk.
constexpr uint64_t kWrite = kRead | kWriteFile | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE
                            | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK
                            | LANDLOCK_ACCESS_FS_MAKE_FIFO | kMakeSym | kRefer | kTruncate | kIoctlDev;
constexpr uint64_t kExec = kRead | kExecute;
static_assert((kWrite & (LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK)) == 0);

// The kernel's structures, only the fields of ABI 1: newer kernels take the
// shorter size.
struct RulesetAttr {
    uint64_t handled_access_fs;
};
struct [[gnu::packed]] PathBeneathAttr {
    uint64_t allowed_access;
    int32_t parent_fd;
};
constexpr int kRulePathBeneath = 1; // LANDLOCK_RULE_PATH_BENEATH

// The "service" preset, modelled on systemd's @system-service: its groups
// @default, @basic-io, @file-system, @io-event, @ipc, @memlock, @network-io,
// @process, @resources, @signal, @sync, @timer, @aio and @chown, and its
// extra calls; less what kService refuses below. clone is allowed only
// without namespace flags, clone3 (whose flags a filter cannot see) answers
// ENOSYS so that libc falls back to clone.
constexpr std::string_view kServicePreset[] = {
    // @default
    "arch_prctl", "brk", "cacheflush", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "execve", "exit", "exit_group", "futex", "futex_time64", "futex_waitv",
    "get_robust_list", "get_thread_area", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getpgid", "getpgrp", "getpid", "getppid", "getrandom", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "getsid", "gettid", "gettimeofday", "getuid", "getuid32", "membarrier",
    "mmap", "mmap2", "mprotect", "munmap", "nanosleep", "pause", "prlimit64", "restart_syscall", "rseq", "rt_sigreturn",
    "sched_getaffinity", "sched_yield", "set_robust_list", "set_thread_area", "set_tid_address", "set_tls", "sigreturn",
    "time", "ugetrlimit",
    // @basic-io
    "_llseek", "close", "close_range", "dup", "dup2", "dup3", "lseek", "pread64", "preadv", "preadv2", "pwrite64",
    "pwritev", "pwritev2", "read", "readv", "write", "writev",
    // @file-system
    "access", "chdir", "chmod", "creat", "faccessat", "faccessat2", "fallocate", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fcntl", "fcntl64", "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64",
    "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "lgetxattr", "link", "linkat",
    "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
    "newfstatat", "open", "openat", "openat2", "readlink", "readlinkat", "removexattr", "rename", "renameat",
    "renameat2", "rmdir", "setxattr", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat",
    "truncate", "truncate64", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    // @io-event
    "_newselect", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd",
    "eventfd2", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select",
    // @ipc
    "ipc", "memfd_create", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "pipe", "pipe2",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    // @memlock
    "mlock", "mlock2", "mlockall", "munlock", "munlockall",
    // @network-io
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown",
    "socket", "socketcall", "socketpair",
    // @process (clone and clone3: see above)
    "capget", "execveat", "fork", "getrusage", "kill", "pidfd_open", "pidfd_send_signal", "prctl", "rt_sigqueueinfo",
    "rt_tgsigqueueinfo", "tgkill", "times", "tkill", "vfork", "wait4", "waitid", "waitpid",
    // @resources
    "ioprio_set", "mbind", "migrate_pages", "move_pages", "nice", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "set_mempolicy", "setpriority", "setrlimit",
    // @signal
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "sigaction", "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending", "sigprocmask", "sigsuspend",
    // @sync
    "fdatasync", "fsync", "msync", "sync", "sync_file_range", "sync_file_range2", "syncfs",
    // @timer
    "alarm", "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64",
    // @aio, without io_uring
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit",
    // @chown
    "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32",
    // @system-service's own
    "capset", "copy_file_range", "fadvise64", "fadvise64_64", "flock", "get_mempolicy", "getcpu", "getpriority",
    "ioctl", "ioprio_get", "madvise", "mremap", "name_to_handle_at", "oldolduname", "olduname", "personality",
    "readahead", "readdir", "remap_file_pages", "sched_get_priority_max", "sched_get_priority_min", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64", "sendfile",
    "sendfile64", "setpgid", "setsid", "splice", "sysinfo", "tee", "umask", "uname", "vmsplice"};

// Refused by name (with everything the preset does not allow): what
// @system-service allows and an ordinary network service has no use for, or
// that helps an attacker more than a service.
constexpr std::string_view kServiceRefused[] = {
    // mounts and namespaces
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "unshare", "setns",
    // modules, kexec, reboot, swap
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    // another process's memory
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    // kernel facilities often used in exploits
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register",
    // switching users: superd sets a service's user, the service does not
    "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32", "setresuid",
    "setresuid32", "setresgid", "setresgid32", "setgroups", "setgroups32", "setfsuid", "setfsuid32", "setfsgid",
    "setfsgid32"};

// What a spawn calls once the helper's filter is attached (launcher.cpp):
// the helper receives a connection's fds, clones a child into superd's
// care and answers with its pidfd; the child moves the fds into place,
// starts a session, closes the rest, sets its limits and execs.
constexpr std::string_view kSpawnCalls[] = {"recvmsg", "sendmsg", "clone",  "close",     "close_range", "dup3",
                                            "fcntl",   "getpid",  "setsid", "prlimit64", "execve",      "exit_group"};

constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                                     | CLONE_NEWPID | CLONE_NEWNET | 0x00000080 /* CLONE_NEWTIME */;

// The helper that makes a namespace: it runs in superd's memory (CLONE_VM,
// CLONE_VFORK) and fd table (CLONE_FILES), so the descriptor it opens on its
// new namespace is superd's when it exits.
struct HelperPlan {
    Namespace::Kind kind;
    int fd = -1;
    int error = 0;
    const char* step = "";
};

// Mounts a fresh tmpfs over `path` unless there is no such folder.
[[gnu::no_sanitize_address]] bool mount_tmpfs(const char* path)
{
    struct stat st;
    if (::syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) < 0 || !S_ISDIR(st.st_mode))
        return true;
    return ::syscall(SYS_mount, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0;
}

[[gnu::no_sanitize_address]] int run_helper(void* arg)
{
    auto* plan = static_cast<HelperPlan*>(arg);
    auto failed = [plan](const char* step) {
        plan->error = errno;
        plan->step = step;
        ::syscall(SYS_exit, 1);
        return 1;
    };
    if (plan->kind == Namespace::Kind::kNetwork) {
        if (::syscall(SYS_unshare, CLONE_NEWNET) < 0)
            return failed("unshare");
        plan->fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    } else {
        if (::syscall(SYS_unshare, CLONE_NEWNS) < 0)
            return failed("unshare");
        // Mounts made on the host after this still reach the service; its
        // own never reach the host.
        if (::syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0)
            return failed("mount /");
        if (!mount_tmpfs("/tmp"))
            return failed("mount /tmp");
        if (!mount_tmpfs("/var/tmp"))
            return failed("mount /var/tmp");
        plan->fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
    }
    if (plan->fd < 0)
        return failed("open /proc/self/ns");
    ::syscall(SYS_exit, 0);
    return 0;
}

using Registry = std::map<std::pair<std::string, Namespace::Kind>, std::weak_ptr<const Namespace>>;

Registry& registry()
{
    static Registry namespaces;
    return namespaces;
}

std::string error_text(int error) { return std::strerror(error); }

} // namespace

int landlock_abi()
{
    if (const char* forced = std::getenv("SUPERD_TEST_LANDLOCK_ABI"))
        return std::atoi(forced);
    long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : static_cast<int>(abi);
}

std::span<const std::string_view> service_preset() { return kServicePreset; }
std::span<const std::string_view> service_preset_refused() { return kServiceRefused; }
std::span<const std::string_view> spawn_calls() { return kSpawnCalls; }

bool known_syscall(const std::string& name) { return seccomp_syscall_resolve_name(name.c_str()) != __NR_SCMP_ERROR; }

std::optional<int> capability_number(std::string name)
{
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name.rfind("cap_", 0) != 0)
        name = "cap_" + name;
    cap_value_t value;
    if (cap_from_name(name.c_str(), &value) != 0)
        return std::nullopt;
    return static_cast<int>(value);
}

int Namespace::type() const { return kind_ == Kind::kNetwork ? CLONE_NEWNET : CLONE_NEWNS; }

Result<UniqueFd> Namespace::make(Kind kind)
{
    HelperPlan plan{kind};
    alignas(16) std::array<char, 16 * 1024> stack;
    // No handler of superd's may run on the helper's borrowed stack.
    sigset_t all, previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t pid = ::clone(run_helper, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &plan);
    int clone_error = errno;
    if (pid > 0)
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pid < 0)
        return Error{"clone: " + error_text(clone_error)};
    if (plan.error != 0) {
        if (plan.fd >= 0)
            ::close(plan.fd);
        return Error{std::string(plan.step) + ": " + error_text(plan.error)};
    }
    return UniqueFd(move_high(plan.fd));
}

Result<std::shared_ptr<const Namespace>> Namespace::shared(const std::string& service, Kind kind)
{
    Registry& namespaces = registry();
    std::erase_if(namespaces, [](const auto& entry) { return entry.second.expired(); });
    auto key = std::make_pair(service, kind);
    if (auto it = namespaces.find(key); it != namespaces.end())
        return it->second.lock();
    auto fd = make(kind);
    if (!fd)
        return Error{fd.error()};
    std::shared_ptr<const Namespace> made(new Namespace(kind, std::move(*fd)));
    namespaces[key] = made;
    return made;
}

Result<UniqueFd> landlock_ruleset(const FilesystemRules& rules, const std::string& program, int abi)
{
    uint64_t handled = handled_by(abi);
    RulesetAttr attr{handled};
    UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0)));
    if (!ruleset)
        return Error{"landlock_create_ruleset: " + error_text(errno)};
    auto allow = [&](const std::string& path, uint64_t access) -> std::optional<Error> {
        UniqueFd at(::open(path.c_str(), O_PATH | O_CLOEXEC));
        struct stat st;
        if (!at || ::fstat(at.get(), &st) != 0)
            return Error{path + ": " + error_text(errno)};
        PathBeneathAttr rule{access & handled & (S_ISDIR(st.st_mode) ? ~0ULL : kFileRights), at.get()};
        if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRulePathBeneath, &rule, 0) < 0)
            return Error{path + ": landlock_add_rule: " + error_text(errno)};
        return std::nullopt;
    };
    const std::pair<const std::vector<std::string>*, uint64_t> lists[] = {
        {&rules.read, kRead}, {&rules.write, kWrite}, {&rules.exec, kExec}};
    for (const auto& [paths, access] : lists)
        for (const std::string& path : *paths)
            if (auto e = allow(path, access))
                return *e;
    if (auto e = allow(program, kExec))
        return *e;
    // The spawn helper keeps it where it is, above its stdio and its socket
    // on fd 3 (launcher.cpp), until it has restricted itself.
    if (ruleset.get() <= 3)
        ruleset.reset(::fcntl(ruleset.get(), F_DUPFD_CLOEXEC, 4));
    return ruleset;
}

Result<std::vector<sock_filter>> syscall_filter(SyscallPreset preset, const std::vector<std::string>& deny,
                                                const std::vector<std::string>& allow)
{
    if (preset == SyscallPreset::kNone && deny.empty())
        return std::vector<sock_filter>{};
    auto denied = [&](std::string_view name) { return std::find(deny.begin(), deny.end(), name) != deny.end(); };
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    scmp_filter_ctx ctx = seccomp_init(preset == SyscallPreset::kService ? refuse : SCMP_ACT_ALLOW);
    if (!ctx)
        return Error{"seccomp_init failed"};
    std::unique_ptr<void, void (*)(scmp_filter_ctx)> owner(ctx, seccomp_release);
    // A call from another architecture (int 0x80 on x86_64) is refused the
    // same way rather than killing the process.
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, refuse);
    // A binary tree of system call numbers rather than a list: a call the
    // kernel's cache does not answer walks a few comparisons, not hundreds.
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    auto add = [&](std::string_view name, uint32_t action, unsigned count, const scmp_arg_cmp* cmp) {
        int nr = seccomp_syscall_resolve_name(std::string(name).c_str());
        if (nr < 0 || rc < 0) // not a call on this architecture
            return;
        rc = seccomp_rule_add_array(ctx, action, nr, count, cmp);
    };
    if (preset == SyscallPreset::kService) {
        for (std::string_view name : kServicePreset)
            if (!denied(name))
                add(name, SCMP_ACT_ALLOW, 0, nullptr);
        scmp_arg_cmp no_namespace = SCMP_A0(SCMP_CMP_MASKED_EQ, kNamespaceFlags, 0);
        if (!denied("clone"))
            add("clone", SCMP_ACT_ALLOW, 1, &no_namespace);
        if (!denied("clone3"))
            add("clone3", SCMP_ACT_ERRNO(ENOSYS), 0, nullptr);
        for (const std::string& name : allow)
            add(name, SCMP_ACT_ALLOW, 0, nullptr);
    } else {
        for (const std::string& name : deny)
            add(name, refuse, 0, nullptr);
    }
    if (rc < 0)
        return Error{"seccomp: " + error_text(-rc)};

    UniqueFd memory(::memfd_create("seccomp", MFD_CLOEXEC));
    if (!memory)
        return Error{"memfd_create: " + error_text(errno)};
    if ((rc = seccomp_export_bpf(ctx, memory.get())) < 0)
        return Error{"seccomp_export_bpf: " + error_text(-rc)};
    off_t size = ::lseek(memory.get(), 0, SEEK_END);
    std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
    if (size <= 0 || ::pread(memory.get(), program.data(), static_cast<size_t>(size), 0) != size)
        return Error{"seccomp: cannot read the compiled filter back"};
    return program;
}

Result<std::shared_ptr<const Sandbox>> Sandbox::prepare(const std::string& service, const SandboxSettings& settings,
                                                        const std::string& program)
{
    std::shared_ptr<Sandbox> sandbox(new Sandbox());
    if (settings.private_network) {
        auto ns = Namespace::shared(service, Namespace::Kind::kNetwork);
        if (!ns)
            return Error{"private_network: cannot make a network namespace: " + ns.error()};
        sandbox->network_ = std::move(*ns);
    }
    if (settings.private_tmp) {
        auto ns = Namespace::shared(service, Namespace::Kind::kTmp);
        if (!ns)
            return Error{"private_tmp: cannot make a mount namespace: " + ns.error()};
        sandbox->tmp_ = std::move(*ns);
    }
    if (settings.filesystem) {
        int abi = landlock_abi();
        if (abi <= 0 && !settings.filesystem_best_effort)
            return Error{"filesystem: this kernel has no Landlock (5.13 or later with it enabled), so the paths "
                         "cannot be enforced; set filesystem_best_effort = true to run without"};
        if (abi <= 0) {
            sandbox->warnings_.push_back("filesystem not enforced: this kernel has no Landlock "
                                         "(filesystem_best_effort = true)");
        } else {
            auto ruleset = landlock_ruleset(*settings.filesystem, program, abi);
            if (!ruleset)
                return Error{"filesystem: " + ruleset.error()};
            sandbox->ruleset_ = std::move(*ruleset);
        }
    }
    // The helper needs the spawn calls (all in the preset) whatever the
    // deny list says; its children refuse those the list names, with a
    // filter of their own, which seccomp() must let them attach: the
    // helper allows it then, the child's filter refuses it where the
    // service's would.
    std::vector<std::string> deny_helper, deny_child;
    for (const std::string& name : settings.syscalls_deny) {
        bool spawn_call = std::find(std::begin(kSpawnCalls), std::end(kSpawnCalls), name) != std::end(kSpawnCalls);
        (spawn_call || name == "seccomp" ? deny_child : deny_helper).push_back(name);
    }
    std::vector<std::string> allow_helper;
    if (!deny_child.empty()) {
        allow_helper.push_back("seccomp");
        if (settings.syscalls == SyscallPreset::kService
            && std::find(deny_child.begin(), deny_child.end(), "seccomp") == deny_child.end())
            deny_child.push_back("seccomp");
    }
    auto filter = syscall_filter(settings.syscalls, deny_helper, allow_helper);
    if (!filter)
        return Error{"syscalls: " + filter.error()};
    auto child_filter = syscall_filter(SyscallPreset::kNone, deny_child);
    if (!child_filter)
        return Error{"syscalls: " + child_filter.error()};
    sandbox->filter_ = std::move(*filter);
    sandbox->program_.len = static_cast<unsigned short>(sandbox->filter_.size());
    sandbox->program_.filter = sandbox->filter_.data();
    sandbox->child_filter_ = std::move(*child_filter);
    sandbox->child_program_.len = static_cast<unsigned short>(sandbox->child_filter_.size());
    sandbox->child_program_.filter = sandbox->child_filter_.data();

    if (settings.capabilities) {
        cap_t own = cap_get_proc();
        if (!own)
            return Error{"capabilities: cap_get_proc: " + error_text(errno)};
        std::unique_ptr<void, int (*)(void*)> owner(own, cap_free);
        auto has = [own](int cap, cap_flag_t set) {
            cap_flag_value_t value = CAP_CLEAR;
            return cap_get_flag(own, static_cast<cap_value_t>(cap), set, &value) == 0 && value == CAP_SET;
        };
        if (!has(CAP_SETPCAP, CAP_EFFECTIVE))
            return Error{"capabilities: superd cannot drop capabilities from a service without CAP_SETPCAP (run "
                         "it as root)"};
        for (int cap : *settings.capabilities) {
            if (!has(cap, CAP_PERMITTED)) {
                char* name = cap_to_name(static_cast<cap_value_t>(cap));
                std::string text = name ? name : std::to_string(cap);
                cap_free(name);
                return Error{"capabilities: superd itself does not have " + text};
            }
            sandbox->keep_ |= 1ULL << cap;
            sandbox->keep_list_.push_back(cap);
        }
        for (int cap = 0; cap < static_cast<int>(cap_max_bits()); ++cap)
            if (!(sandbox->keep_ & (1ULL << cap)) && ::prctl(PR_CAPBSET_READ, cap) == 1)
                sandbox->drop_.push_back(cap);
        sandbox->set_capabilities_ = true;
    }
    sandbox->no_new_privs_ =
        settings.no_new_privileges || sandbox->ruleset_ || !sandbox->filter_.empty() || !sandbox->child_filter_.empty();
    return std::shared_ptr<const Sandbox>(std::move(sandbox));
}

// The functions below run in the spawn helper and its children: raw system
// calls on what prepare() made, nothing allocated (see launcher.cpp).

[[gnu::no_sanitize_address]] const char* Sandbox::enter(bool changes_user) const
{
    if (network_ && ::syscall(SYS_setns, network_->fd(), CLONE_NEWNET) < 0)
        return "setns (private_network)";
    if (tmp_ && ::syscall(SYS_setns, tmp_->fd(), CLONE_NEWNS) < 0)
        return "setns (private_tmp)";
    // setuid() away from root clears the permitted set unless told not to.
    if (set_capabilities_ && changes_user && ::syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return "capabilities";
    return nullptr;
}

[[gnu::no_sanitize_address]] const char* Sandbox::restrict(int ruleset_fd) const
{
    if (set_capabilities_) {
        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (::syscall(SYS_capget, &header, data) < 0)
            return "capabilities";
        // CAP_SETPCAP must be effective to cut the bounding set, which it
        // no longer is after a switch of user.
        data[0].effective = data[0].permitted;
        data[1].effective = data[1].permitted;
        if (::syscall(SYS_capset, &header, data) < 0)
            return "capabilities";
        for (int cap : drop_)
            if (::syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                return "capabilities";
        if (::syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
            return "capabilities";
        for (int i = 0; i < 2; ++i) {
            auto keep = static_cast<uint32_t>(keep_ >> (32 * i));
            data[i].permitted = data[i].effective = data[i].inheritable = keep;
        }
        if (::syscall(SYS_capset, &header, data) < 0)
            return "capabilities";
        // Ambient: what survives exec for a program that is not root.
        for (int cap : keep_list_)
            if (::syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                return "capabilities";
    }
    if (no_new_privs_ && ::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return "no_new_privs";
    if (ruleset_fd >= 0 && ::syscall(SYS_landlock_restrict_self, ruleset_fd, 0) < 0)
        return "landlock";
    if (!filter_.empty() && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program_) < 0)
        return "seccomp";
    return nullptr;
}

[[gnu::no_sanitize_address]] const char* Sandbox::restrict_child() const
{
    if (!child_filter_.empty() && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &child_program_) < 0)
        return "seccomp";
    return nullptr;
}

} // namespace superd

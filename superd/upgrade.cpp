#include "superd/upgrade.h"

#include "superd/log.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>

namespace superd {

namespace {

constexpr std::string_view kReady = "ready";
constexpr size_t kMaxHeard = 4096;
constexpr std::string_view kDeleted = " (deleted)";

std::vector<char*> pointers(std::vector<std::string>& strings)
{
    std::vector<char*> out;
    for (std::string& s : strings)
        out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

// Runs in the forked child until execve: async-signal-safe calls only, on
// memory prepared before the fork. Never returns.
[[noreturn]] void exec_child(const char* program, char* const* argv, char* const* envp, std::span<const int> sources,
                             std::span<int> scratch, char* listen_pid, const std::optional<rlimit>& nofile,
                             char* failure, size_t failure_size)
{
    // The daemon's handlers would run in this copy of it and write to
    // libevent's signal pipe, which the parent shares: every signal goes
    // back to its default while all are still blocked, as the parent left
    // them for the fork. glibc refuses its own two; exec resets them anyway.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s)
        if (s != SIGKILL && s != SIGSTOP)
            ::sigaction(s, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);

    // Each socket to fd 3+i: first out of the way of every target, then
    // into place (dup2 clears close-on-exec on the target only).
    int first_free = 3 + static_cast<int>(sources.size());
    for (size_t i = 0; i < sources.size(); ++i)
        scratch[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, first_free);
    for (size_t i = 0; i < sources.size(); ++i)
        if (scratch[i] < 0 || ::dup2(scratch[i], 3 + static_cast<int>(i)) < 0)
            _exit(127);
    // Exactly these: whatever superd inherited without close-on-exec stays
    // out too (a failure leaves only what is close-on-exec anyway).
    ::syscall(SYS_close_range, first_free, ~0U, 0U);
    if (nofile)
        ::setrlimit(RLIMIT_NOFILE, &*nofile);
    *std::to_chars(listen_pid, listen_pid + 20, static_cast<long>(::getpid())).ptr = '\0';
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(program, argv, envp);

    // The pipe is the last fd placed: say why, as the new process would.
    int err = errno;
    size_t n = std::strlen(failure);
    n = static_cast<size_t>(std::to_chars(failure + n, failure + failure_size - 2, err).ptr - failure);
    failure[n++] = ')';
    failure[n++] = '\n';
    (void)!::write(first_free - 1, failure, n);
    _exit(127);
}

} // namespace

SelfCommand SelfCommand::of_this_process(int argc, char** argv)
{
    SelfCommand self;
    char path[4096];
    ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    self.program = n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string(argc > 0 ? argv[0] : "superd");
    // Replaced by a new file already (dpkg renames the new one into place).
    if (self.program.ends_with(kDeleted))
        self.program.resize(self.program.size() - kDeleted.size());
    for (int i = 0; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--ready-fd") {
            ++i;
            continue;
        }
        if (!arg.starts_with("--ready-fd="))
            self.argv.emplace_back(arg);
    }
    return self;
}

Upgrade::Upgrade(pid_t pid, UniqueFd pidfd, UniqueFd pipe, Done done)
    : pid_(pid), pidfd_(std::move(pidfd)), pipe_(std::move(pipe)), done_(std::move(done))
{
}

Result<std::unique_ptr<Upgrade>> Upgrade::start(event_base* base, Timers& timers, const SelfCommand& command,
                                                std::span<const HandedSocket> sockets,
                                                std::span<const std::string> environment, std::optional<rlimit> nofile,
                                                Done done, std::chrono::milliseconds deadline)
{
    if (::access(command.program.c_str(), X_OK) != 0)
        return Error{"cannot execute " + command.program + ": " + std::strerror(errno)};
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0)
        return Error{std::string("pipe: ") + std::strerror(errno)};
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    set_nonblocking(read_end.get(), true);

    // Everything the child touches is made here, before the fork.
    std::vector<int> sources;
    std::string names;
    for (const HandedSocket& socket : sockets) {
        sources.push_back(socket.fd);
        names += (names.empty() ? "" : ":") + socket.name;
    }
    sources.push_back(write_end.get());
    std::vector<int> scratch(sources.size());
    std::vector<std::string> args = command.argv;
    args.push_back("--ready-fd");
    args.push_back(std::to_string(3 + sockets.size()));
    std::vector<std::string> env(environment.begin(), environment.end());
    env.push_back("LISTEN_FDS=" + std::to_string(sockets.size()));
    env.push_back("LISTEN_FDNAMES=" + names);
    env.push_back("LISTEN_PID=" + std::string(24, '\0'));
    char* listen_pid = env.back().data() + sizeof "LISTEN_PID=" - 1;
    std::vector<char*> argv = pointers(args);
    std::vector<char*> envp = pointers(env);
    char failure[128] = "cannot execute the new superd (errno ";

    sigset_t all, saved;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, &saved);
    pid_t pid = ::fork();
    if (pid == 0)
        exec_child(command.program.c_str(), argv.data(), envp.data(), sources, scratch, listen_pid, nofile, failure,
                   sizeof failure);
    int fork_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (pid < 0)
        return Error{std::string("fork: ") + std::strerror(fork_error)};
    // Before anything reaps it: the pid is still the child's.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    write_end.reset();

    std::unique_ptr<Upgrade> upgrade(new Upgrade(pid, std::move(pidfd), std::move(read_end), std::move(done)));
    Upgrade* self = upgrade.get();
    upgrade->read_event_.reset(event_new(base, self->pipe_.get(), EV_READ | EV_PERSIST, on_readable, self));
    upgrade->deadline_ =
        timers.timer([self, deadline] { self->fail("not ready within " + std::to_string(deadline.count()) + "ms"); });
    if (!upgrade->read_event_ || event_add(upgrade->read_event_.get(), nullptr) != 0 || !upgrade->deadline_->valid()) {
        upgrade->fail("cannot watch its pipe");
        return Error{"cannot watch the new process's pipe"};
    }
    upgrade->deadline_->arm(deadline);
    return upgrade;
}

Upgrade::~Upgrade()
{
    // superd stops while the new process is not ready: it must not go on
    // alone, half started.
    if (pending() && pidfd_)
        ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

void Upgrade::on_readable(evutil_socket_t, short, void* self) { static_cast<Upgrade*>(self)->read_pipe(); }

void Upgrade::read_pipe()
{
    char buffer[512];
    ssize_t n = ::read(pipe_.get(), buffer, sizeof buffer);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            fail(std::string("reading its pipe: ") + std::strerror(errno));
        return;
    }
    heard_.append(buffer, static_cast<size_t>(n));
    size_t newline = heard_.find('\n');
    if (newline != std::string::npos) {
        std::string line = heard_.substr(0, newline);
        if (line == kReady)
            finish(Outcome{true, {}});
        else
            fail(line);
        return;
    }
    if (n == 0)
        fail(heard_.empty() ? "exited before it was ready" : heard_);
    else if (heard_.size() > kMaxHeard)
        fail(heard_.substr(0, kMaxHeard));
}

void Upgrade::fail(std::string reason)
{
    if (!pending())
        return;
    if (!status_) {
        if (pidfd_)
            ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
        else
            ::kill(pid_, SIGKILL);
    }
    finish(Outcome{false, std::move(reason)});
}

void Upgrade::finish(Outcome outcome)
{
    event_del(read_event_.get());
    deadline_->cancel();
    Done done = std::move(done_);
    done_ = nullptr;
    done(outcome);
}

void Upgrade::exited(int status) { status_ = status; }

void ReadyPipe::say(std::string_view line)
{
    if (!fd_)
        return;
    std::string text(line);
    std::replace(text.begin(), text.end(), '\n', ' ');
    text += '\n';
    std::string_view rest = text;
    while (!rest.empty()) {
        ssize_t n = ::write(fd_.get(), rest.data(), rest.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        rest.remove_prefix(static_cast<size_t>(n));
    }
    fd_.reset();
}

} // namespace superd

#include "superd/children.h"

#include "superd/log.h"

#include <dirent.h>
#include <sys/wait.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace superd {

bool Lifetime::session_ended()
{
    if (!session_open_)
        return false;
    session_open_ = false;
    return !relay_open_;
}

bool Lifetime::relay_closed()
{
    if (!relay_open_)
        return false;
    relay_open_ = false;
    return !session_open_;
}

std::string describe_wait_status(int status)
{
    if (WIFEXITED(status))
        return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        std::string s = "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
        if (WCOREDUMP(status))
            s += " core dumped";
        return s;
    }
    return "status " + std::to_string(status);
}

void ChildTable::watch_pidfds(event_base* base, ExitHandler on_exit)
{
    base_ = base;
    on_exit_ = std::move(on_exit);
}

Child* ChildTable::find(pid_t pid)
{
    auto it = children_.find(pid);
    return it == children_.end() ? nullptr : &it->second->child;
}

void ChildTable::each(const std::function<void(pid_t pid, const Child& child)>& visit) const
{
    for (const auto& [pid, entry] : children_)
        visit(pid, entry->child);
}

void ChildTable::add(pid_t pid, Child child, UniqueFd pidfd)
{
    auto entry = std::make_unique<Entry>();
    entry->child = std::move(child);
    entry->table = this;
    entry->pid = pid;
    if (pidfd && base_) {
        entry->pidfd = std::move(pidfd);
        entry->exited.reset(event_new(base_, entry->pidfd.get(), EV_READ, on_pidfd, entry.get()));
        if (!entry->exited || event_add(entry->exited.get(), nullptr) != 0) {
            entry->exited.reset();
            entry->pidfd.reset();
        }
    }
    if (!entry->exited)
        ++untracked_;
    children_[pid] = std::move(entry);
}

ChildExit ChildTable::take(pid_t pid, int status)
{
    ChildExit exit{pid, status, {}, false, 0};
    if (auto it = children_.find(pid); it != children_.end()) {
        if (!it->second->exited)
            --untracked_;
        exit.child = std::move(it->second->child);
        exit.known = true;
        children_.erase(it); // frees its event and closes its pidfd
    }
    return exit;
}

void ChildTable::on_pidfd(evutil_socket_t, short, void* arg)
{
    auto* entry = static_cast<Entry*>(arg);
    ChildTable* table = entry->table;
    int status = 0;
    pid_t pid;
    do
        pid = ::waitpid(entry->pid, &status, WNOHANG);
    while (pid < 0 && errno == EINTR);
    if (pid == 0) { // readable, yet not ended: watch again
        event_add(entry->exited.get(), nullptr);
        return;
    }
    if (pid < 0) { // already reaped elsewhere; nothing to report
        table->take(entry->pid, 0);
        return;
    }
    ChildExit exit = table->take(pid, status);
    table->on_exit_(exit);
}

void ChildTable::reap(const ExitHandler& on_exit)
{
    for (;;) {
        // Which child has ended, left a zombie for now: a zombie still says
        // which process group it was in, which tells the daemon whose
        // connection may have just ended.
        siginfo_t info{};
        if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
            if (errno == EINTR)
                continue;
            return; // ECHILD: no children at all
        }
        if (info.si_pid == 0)
            return; // children remain, none has ended
        pid_t group = ::getpgid(info.si_pid);
        int status = 0;
        pid_t pid;
        do
            pid = ::waitpid(info.si_pid, &status, WNOHANG);
        while (pid < 0 && errno == EINTR);
        if (pid <= 0)
            continue; // reaped elsewhere meanwhile
        ChildExit exit = take(pid, status);
        exit.group = group;
        on_exit(exit);
    }
}

// Only for timeouts, so the walk over every process in /proc is affordable.
void SystemSessions::signal(pid_t sid, int signal)
{
    ::kill(-sid, signal);
    DIR* proc = ::opendir("/proc");
    if (!proc)
        return;
    while (dirent* entry = ::readdir(proc)) {
        pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
        if (pid > 0 && ::getsid(pid) == sid && ::getpgid(pid) != sid)
            ::kill(pid, signal);
    }
    ::closedir(proc);
}

// A child leads its own session and process group (setsid), both numbered by
// its pid. The group outlives the child while anything it started lives on,
// zombies not yet reaped included; EPERM still means somebody is there.
bool SystemSessions::group_alive(pid_t group) { return ::kill(-group, 0) == 0 || errno == EPERM; }

Deadline::Deadline(Timers& timers, Sessions& sessions, pid_t session, std::string service, Limits limits,
                   std::function<void()> on_terminate)
    : timers_(timers), due_(timers.now() + limits.timeout), sessions_(sessions), session_(session),
      service_(std::move(service)), limits_(limits), on_terminate_(std::move(on_terminate)),
      timer_(timers.timer([this] { fire(); }))
{
    timer_->arm(limits_.timeout);
}

void Deadline::fire()
{
    if (!terminated_) {
        terminated_ = true;
        on_terminate_();
        spdlog::warn("timeout service={} pid={} action=SIGTERM grace={}ms", service_, session_, limits_.grace.count());
        sessions_.signal(session_, SIGTERM);
        due_ = timers_.now() + limits_.grace;
        timer_->arm(limits_.grace);
        return;
    }
    spdlog::warn("timeout service={} pid={} action=SIGKILL", service_, session_);
    sessions_.signal(session_, SIGKILL);
}

} // namespace superd

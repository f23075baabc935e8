// ChildTable: the services superd has spawned and not yet reaped.
//
// Keyed by pid; an entry is added right after a successful spawn and removed
// when waitpid() reports the child's end, which is when its exit is handled.
// A child that comes with a pidfd is reaped by pid as soon as its pidfd is
// readable: one waitpid(pid) costs the same with ten children or ten
// thousand, while waitpid(-1) makes the kernel walk them all. reap() does the
// latter for SIGCHLD, which is needed only while some child has no pidfd
// (untracked()); it collects every ended child, so a burst of SIGCHLDs
// (which the kernel merges) can never leave a zombie behind. An entry owns
// its child's Lifetime: the admission ticket and the relay, if any, which
// the daemon moves on when it handles the exit.
//
// Lifetime: a connection is over when its session (the program and what
// lingers of its process group) has ended and its relay has closed,
// whichever comes last, as tmux's job ends when its process has exited and
// its pipe is closed. Without a relay the session's end alone is the end.
//
// Sessions and Deadline: a child's timeout, signalled through a seam so that
// tests check SIGTERM, the grace and SIGKILL in simulated time.
#pragma once

#include "superd/address.h"
#include "superd/admission.h"
#include "superd/clock.h"
#include "superd/connection.h"
#include "superd/event.h"
#include "superd/fd.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

namespace superd {

// What keeps a connection counted once its handler has started. Either
// event may come first; the later one returns true, exactly once, and then
// the ticket is the caller's to end. No allocation when there is no relay.
class Lifetime {
public:
    Lifetime() = default;
    explicit Lifetime(Admission::Ticket ticket, std::unique_ptr<Relay> relay = nullptr)
        : ticket_(std::move(ticket)), relay_(std::move(relay)), relay_open_(relay_ != nullptr)
    {
    }

    // The program has exited and its process group is empty.
    bool session_ended();
    // The relay has reported that it closed. The relay object stays until
    // the lifetime goes: this is called from within its own callback.
    bool relay_closed();
    bool over() const { return !session_open_ && !relay_open_; }

    Relay* relay() const { return relay_.get(); }
    Admission::Ticket& ticket() { return ticket_; }

private:
    Admission::Ticket ticket_; // counts the connection (running, max_per_source) until it is over
    std::unique_ptr<Relay> relay_;
    bool session_open_ = true;
    bool relay_open_ = false;
};

struct Child {
    std::string service;
    SocketAddress endpoint; // what its log lines name: the client, or a wait service's listening address
    Clock::time_point started;
    std::string wait_listener;     // a wait service's listener key, resumed on exit
    uint64_t wait_listener_id = 0; // which socket at that key (Listener::id)
    Lifetime life;                 // its ticket, and its relay if it has one
};

struct ChildExit {
    pid_t pid;
    int status; // as waitpid() reports it
    Child child;
    bool known;      // false for a pid superd did not record
    pid_t group = 0; // its process group, when reap() found it (orphans of a service)
};

// "exit 0", "exit 3", "signal 9 (Killed)".
std::string describe_wait_status(int status);

class ChildTable {
public:
    using ExitHandler = std::function<void(ChildExit&)>;

    // Pidfds are watched on `base`; `on_exit` runs for each child reaped
    // through its pidfd.
    void watch_pidfds(event_base* base, ExitHandler on_exit);

    // Without a valid `pidfd`, the child waits for reap().
    void add(pid_t pid, Child child, UniqueFd pidfd = UniqueFd());
    size_t size() const { return children_.size(); }
    // The running child `pid`, or null.
    Child* find(pid_t pid);
    // Calls `visit` with every running child.
    void each(const std::function<void(pid_t pid, const Child& child)>& visit) const;
    size_t untracked() const { return untracked_; }

    // Reaps every ended child without blocking; calls `on_exit` for each,
    // with the process group it was in.
    void reap(const ExitHandler& on_exit);

private:
    struct Entry {
        Child child;
        ChildTable* table = nullptr;
        pid_t pid = 0;
        UniqueFd pidfd;
        Event exited; // on the pidfd
    };
    static void on_pidfd(evutil_socket_t, short, void* entry);
    ChildExit take(pid_t pid, int status);

    std::unordered_map<pid_t, std::unique_ptr<Entry>> children_;
    size_t untracked_ = 0;
    event_base* base_ = nullptr;
    ExitHandler on_exit_;
};

// Process sessions as the daemon touches them: the seam through which
// tests see what would be signalled, and say which groups still live.
class Sessions {
public:
    virtual ~Sessions() = default;
    // Signals session `sid`: its process group at once, then any member
    // that moved to another group of the session.
    virtual void signal(pid_t sid, int signal) = 0;
    // Whether process group `group` has a member left, zombies included.
    virtual bool group_alive(pid_t group) = 0;
};

class SystemSessions final : public Sessions {
public:
    void signal(pid_t sid, int signal) override;
    bool group_alive(pid_t group) override;
};

// A child's timeout: at `timeout`, SIGTERM to its whole session (the child
// leads one, and everything it started goes with it, also once the child
// itself has exited); if the session is still there `grace` later,
// SIGKILL. Destroying the deadline (the session ended) cancels it.
class Deadline {
public:
    struct Limits {
        std::chrono::milliseconds timeout;
        std::chrono::milliseconds grace;
    };
    // `on_terminate` runs once, at the SIGTERM (to count it).
    Deadline(Timers& timers, Sessions& sessions, pid_t session, std::string service, Limits limits,
             std::function<void()> on_terminate);
    Deadline(const Deadline&) = delete;
    Deadline& operator=(const Deadline&) = delete;
    bool valid() const { return timer_->valid(); }
    // When it acts next: the SIGTERM, or after it the SIGKILL.
    Clock::time_point due() const { return due_; }

private:
    void fire();

    Timers& timers_;
    Clock::time_point due_;
    Sessions& sessions_;
    pid_t session_;
    std::string service_;
    Limits limits_;
    std::function<void()> on_terminate_;
    bool terminated_ = false;
    std::unique_ptr<Timer> timer_;
};

} // namespace superd

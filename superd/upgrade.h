// Upgrade: superd replacing itself with the superd binary now installed at
// its path, without refusing a connection (SIGUSR2, `superctl upgrade`).
//
// The old process starts the new one with every listening socket it holds,
// the control socket included, on fds 3 to 3+N-1 under the LISTEN_FDS
// convention (activation.h is the new one's side), and the write end of a
// pipe on fd 3+N, named by `--ready-fd`. The new process loads the
// configuration as the files are now, adopts the sockets (a socket is one
// object in the kernel: its backlog goes with it), opens what is new and
// writes "ready" on the pipe; or, if it cannot start, the reason, and exits.
// Only after "ready" does the old process stop accepting, so there is no
// moment at which nobody accepts; a connection it accepted meanwhile is its
// own to serve. It then drains: it keeps reaping and timing out its
// children and exits once the last connection has ended (daemon.cpp).
//
// A new process that exits, closes the pipe or says something else before
// "ready", or is not ready within the deadline, has failed: it is killed,
// the reason is given to `done`, and the old process serves on, having
// changed nothing.
//
// An Upgrade belongs to the daemon, which reaps the process (it is a child
// like any other) and tells it through exited(). `done` is the Upgrade's
// last act, run from its own events: the Upgrade may be destroyed once
// `done` has returned, not from within it. Destroyed while still pending
// (superd stops meanwhile), it kills the new process.
#pragma once

#include "superd/clock.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/result.h"

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

// How the new process is started: the binary at superd's own path (as it
// is now on disk) and superd's own arguments, less any --ready-fd.
struct SelfCommand {
    std::string program;
    std::vector<std::string> argv;

    // The command line that started this process: the path of its binary
    // (not /proc/self/exe, which names the running file even once an
    // upgrade has put another at its path) and `argv` as given.
    static SelfCommand of_this_process(int argc, char** argv);
};

// One socket to hand over, and its name for LISTEN_FDNAMES.
struct HandedSocket {
    int fd;
    std::string name;
};

class Upgrade {
public:
    struct Outcome {
        bool ready = false;
        std::string reason; // why it failed
    };
    using Done = std::function<void(const Outcome& outcome)>;

    static constexpr std::chrono::seconds kDeadline{10};

    // Starts the new process. `environment` is what it gets besides the
    // LISTEN_* variables (superd's own environment, and the service
    // manager's variables superd took for itself). `nofile` is the fd limit
    // superd was started with, which the new process must find as its own.
    // The error: the process could not be started at all.
    static Result<std::unique_ptr<Upgrade>> start(event_base* base, Timers& timers, const SelfCommand& command,
                                                  std::span<const HandedSocket> sockets,
                                                  std::span<const std::string> environment,
                                                  std::optional<rlimit> nofile, Done done,
                                                  std::chrono::milliseconds deadline = kDeadline);
    ~Upgrade();
    Upgrade(const Upgrade&) = delete;
    Upgrade& operator=(const Upgrade&) = delete;

    pid_t pid() const { return pid_; }
    // Until `done` has run.
    bool pending() const { return static_cast<bool>(done_); }
    // The daemon reaped the new process with `status`.
    void exited(int status);

private:
    Upgrade(pid_t pid, UniqueFd pidfd, UniqueFd pipe, Done done);
    static void on_readable(evutil_socket_t, short, void* self);
    void read_pipe();
    void fail(std::string reason);
    void finish(Outcome outcome);

    pid_t pid_;
    UniqueFd pidfd_; // signals the process, never another that reused its pid
    UniqueFd pipe_;
    Event read_event_;
    std::unique_ptr<Timer> deadline_;
    std::string heard_; // what the new process has said so far
    std::optional<int> status_;
    Done done_;
};

// The new process's side of the pipe: says "ready" once it serves, or why
// it cannot, and closes the pipe either way. Made without an fd, it tells
// nobody (superd was not started by an upgrade).
class ReadyPipe {
public:
    ReadyPipe() = default;
    explicit ReadyPipe(UniqueFd fd) : fd_(std::move(fd)) {}

    bool active() const { return static_cast<bool>(fd_); }
    void ready() { say("ready"); }
    void failed(std::string_view reason) { say(reason); }

private:
    void say(std::string_view line);
    UniqueFd fd_;
};

} // namespace superd

// ChildTable: the services superd has spawned and not yet reaped.
//
// Keyed by pid; an entry is added right after a successful spawn and removed
// when waitpid() reports the child's end, which is when its exit is logged.
// reap() collects every child that has ended, so a burst of SIGCHLDs (which
// the kernel merges) can never leave a zombie behind.
#pragma once

#include "superd/address.h"
#include "superd/limits.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

namespace superd {

using Clock = std::chrono::steady_clock;

struct Child {
    std::string service;
    SocketAddress peer;        // the client, or the listening address of a wait service
    Clock::time_point started;
    std::string wait_listener; // a wait service's listener key, resumed on exit
    std::optional<SourceKey> source; // counted against max_per_source until the exit
};

struct ChildExit {
    pid_t pid;
    int status; // as waitpid() reports it
    Child child;
    bool known; // false for a pid superd did not record
};

// "exit 0", "exit 3", "signal 9 (Killed)".
std::string describe_wait_status(int status);

class ChildTable {
public:
    void add(pid_t pid, Child child) { children_.emplace(pid, std::move(child)); }
    size_t size() const { return children_.size(); }

    // Reaps every ended child without blocking; calls `on_exit` for each.
    void reap(const std::function<void(const ChildExit&)>& on_exit);

private:
    std::unordered_map<pid_t, Child> children_;
};

} // namespace superd

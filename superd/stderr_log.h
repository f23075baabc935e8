// StderrPipe: carries a spawned program's stderr into superd's log, a line
// at a time, tagged with the service and pid, so diagnostics never reach
// the client and the protocol stays clean (stderr = "log").
//
// The daemon owns each pipe until its read end reaches EOF, which may be
// after the child is reaped (a grandchild can hold the write end): a pipe's
// end and its child's exit are separate events.
#pragma once

#include "superd/event.h"
#include "superd/fd.h"
#include "superd/result.h"

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

namespace superd {

class StderrPipe {
public:
    using ClosedHandler = std::function<void(StderrPipe*)>;

    static Result<std::unique_ptr<StderrPipe>> open(event_base* base, std::string service, ClosedHandler on_closed);
    StderrPipe(const StderrPipe&) = delete;
    StderrPipe& operator=(const StderrPipe&) = delete;

    // The end the child writes to; give it to the spawn, then close it here.
    int write_end() const { return write_end_.get(); }
    void started(pid_t pid);
    void close_write_end() { write_end_.reset(); }

private:
    StderrPipe(UniqueFd read_end, UniqueFd write_end, std::string service, ClosedHandler on_closed);
    static void on_readable(evutil_socket_t, short, void* self);
    void read_available();
    void emit(std::string_view line);

    UniqueFd read_end_;
    UniqueFd write_end_;
    std::string service_;
    pid_t pid_ = 0;
    std::string partial_;
    ClosedHandler on_closed_;
    Event event_;
};

} // namespace superd

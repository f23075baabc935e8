// Process hygiene for the daemon itself, done once at start-up, before any
// other fd is opened.
#pragma once

#include "superd/result.h"

#include <sys/resource.h>

#include <optional>

namespace superd {

// - Fds 0, 1 and 2 are opened on /dev/null if superd was started without
//   them, so no socket can ever land there (a connection on fd 0 could not be
//   dup2'ed into a child's 0/1/2 and then closed).
// - Every other inherited fd becomes close-on-exec in one close_range() call,
//   whatever RLIMIT_NOFILE is, so nothing superd inherited reaches a service.
// - The signal mask is emptied (libevent must see the signals it watches;
//   the daemon itself blocks SIGCHLD while no child needs it) and SIGPIPE
//   is ignored: a client that goes away must not kill the daemon.
// - The soft RLIMIT_NOFILE is raised to the hard limit: a pidfd per live
//   child and a socket per connection need more than the usual 1024. The
//   limit superd was started with comes back, for its children, since
//   programs using select() break above it.
struct StartedWith {
    std::optional<rlimit> nofile; // set when the soft limit was raised
};
Result<StartedWith> prepare_process();

} // namespace superd

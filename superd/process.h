// Process hygiene for the daemon itself, done once at start-up, before any
// other fd is opened.
#pragma once

#include "superd/result.h"

#include <optional>

namespace superd {

// - Fds 0, 1 and 2 are opened on /dev/null if superd was started without
//   them, so no socket can ever land there (a connection on fd 0 could not be
//   dup2'ed into a child's 0/1/2 and then closed).
// - Every other inherited fd becomes close-on-exec in one close_range() call,
//   whatever RLIMIT_NOFILE is, so nothing superd inherited reaches a service.
// - The signal mask is emptied (libevent must see SIGCHLD) and SIGPIPE is
//   ignored: a client that goes away must not kill the daemon.
std::optional<Error> prepare_process();

} // namespace superd

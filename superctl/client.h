// The client end of superd's control socket: one request line out, one
// reply line back, within a time limit.
//
// A unix stream socket, close-on-exec and non-blocking from birth and owned
// by a UniqueFd for the one exchange. The limit bounds the whole exchange
// (connect, send, reply), so superctl never hangs on a superd that is stuck
// or on something else listening at the path. Every way it can fail comes
// back as an error message that names the socket and says what happened
// (cannot connect and why, closed without a reply, no reply in time);
// superctl exits 3 for all of them.
#pragma once

#include "superd/result.h"

#include <chrono>
#include <string>
#include <string_view>

namespace superctl {

// The most of a reply superctl reads: far past the largest superd sends
// (a services list of thousands), yet bounded against a peer that streams.
constexpr size_t kMaxReplyBytes = 64 << 20;

// Sends `request` (one line, without its newline) to the socket at `path`
// and returns the first line that comes back, without its newline (and
// without a '\r' before it).
superd::Result<std::string> exchange(const std::string& path, std::string_view request,
                                     std::chrono::milliseconds timeout);

} // namespace superctl

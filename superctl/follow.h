// Following an upgrade (superd's upgrade.h) to its end. superd answers
// "upgrade" once the new process is started, since the process that would
// answer later may be gone by then; superctl then asks "status", each time
// on a new connection, until the new pid answers (the new process serves
// the control socket) or the old process says the upgrade failed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace superctl {

// What the old superd (pid `old_pid`, or 0 if unknown) said to
// "upgrade": `reply` with "ok": true and the new "pid".
// Returns a reply line of the same form as the control socket's: "ok": true
// and a message once the new pid answers, or "ok": false and why not: the
// upgrade failed (superd's reason), or no word came within `timeout`.
std::string follow_upgrade(const std::string& socket, std::string_view reply, std::chrono::milliseconds timeout);

} // namespace superctl

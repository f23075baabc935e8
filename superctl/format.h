// What superctl prints for superd's reply, and the status it exits with.
//
// With --json the reply line goes to stdout as it came, so that a script
// reads exactly what superd said; otherwise each command's reply becomes
// what a person reads: aligned columns for the lists (services, children),
// "key: value" lines for status, the message line for the rest. A reply
// that is not a JSON object with a boolean "ok", or an ok reply without
// the fields its command promises, is not one superd gives: it is reported
// as such and exits 3, as if superd had not been reached. The field names
// are those of the protocol (doc: superctl(1) and the README).
#pragma once

#include "superctl/cli.h"
#include "superd/result.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace superctl {

// What to print and how to exit.
struct Outcome {
    int status = kExitOk;
    std::string out; // for stdout
    std::string err; // for stderr
};

// For the reply line `reply` (without its newline) that came from
// `invocation.socket`.
Outcome present(const Invocation& invocation, std::string_view reply);

// The human form of an ok reply of a command of `shape`; an error when a
// field it needs is missing or of another type.
superd::Result<std::string> format_reply(Shape shape, const nlohmann::json& reply);

// A span of time, short and with the precision that matters at its size:
// "3.2s", "4m05s", "2h01m", "3d04h".
std::string format_duration(double seconds);

// Rows under a header, each column as wide as its widest cell, two spaces
// apart; the columns whose `right` is true (numbers) aligned right. No line
// ends in spaces.
std::string format_table(const std::vector<std::string>& header, const std::vector<bool>& right,
                         const std::vector<std::vector<std::string>>& rows);

} // namespace superctl

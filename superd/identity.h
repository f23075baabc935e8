// Users and groups: turning "nobody" / "nogroup" into the ids a spawned
// program drops to, once, when the configuration is loaded, so a spawn never
// reads /etc/passwd.
#pragma once

#include "superd/config.h"
#include "superd/result.h"

#include <optional>
#include <string_view>

namespace superd {

// `user` and `group` are names or numeric ids; either may be empty (not
// both). A user, by name or by a uid in the password database, runs with its
// primary group, or with `group` when given, and with the groups
// initgroups(user, that group) sets: that group and every group whose member
// list names the user. A uid not in the password database needs `group` and
// gets no other group. Changing identity needs root: superd running as
// another user gets an error, unless what is asked for is what it already
// is, which needs no change (std::nullopt).
Result<std::optional<Identity>> resolve_identity(std::string_view user, std::string_view group);

// A user's or group's id, by name or number.
Result<uid_t> resolve_uid(std::string_view user);
Result<gid_t> resolve_gid(std::string_view group);

} // namespace superd

// Users and groups: turning "nobody" / "nogroup" into the ids a spawned
// program drops to, once, when the configuration is loaded, so a spawn never
// reads /etc/passwd.
#pragma once

#include "superd/result.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

// Who a spawned program runs as; resolved when the file is loaded.
struct Identity {
    std::string user; // for messages; empty when only the group changes
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups; // supplementary groups from the user's entry
    bool change_user = false;
};

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

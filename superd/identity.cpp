#include "superd/identity.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <string>
#include <vector>

namespace superd {

namespace {

std::optional<unsigned> as_number(std::string_view text)
{
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

// The password database's entry for `name`, or for the uid `name` spells
// (getpwnam_r, then getpwuid_r), with a buffer that grows as needed.
std::optional<passwd> find_user(const std::string& name, std::string& buffer)
{
    auto number = as_number(name);
    passwd entry{}, *found = nullptr;
    for (buffer.resize(1024);; buffer.resize(buffer.size() * 2)) {
        int rc = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (!found && rc != ERANGE && number)
            rc = ::getpwuid_r(static_cast<uid_t>(*number), &entry, buffer.data(), buffer.size(), &found);
        if (rc != ERANGE)
            break;
    }
    if (!found)
        return std::nullopt;
    return entry;
}

// What initgroups(user, base) would set: `base` and every group whose member
// list names the user. The user's primary group from the password entry is
// not added unless it is `base` or lists the user, as with the inetds.
std::vector<gid_t> group_list(const char* user, gid_t base)
{
    int count = 32;
    std::vector<gid_t> groups(static_cast<size_t>(count));
    while (::getgrouplist(user, base, groups.data(), &count) < 0)
        groups.resize(static_cast<size_t>(count));
    groups.resize(static_cast<size_t>(count));
    return groups;
}

} // namespace

Result<uid_t> resolve_uid(std::string_view user)
{
    if (auto number = as_number(user))
        return static_cast<uid_t>(*number);
    std::string buffer;
    if (auto entry = find_user(std::string(user), buffer))
        return entry->pw_uid;
    return Error{"unknown user '" + std::string(user) + "'"};
}

Result<gid_t> resolve_gid(std::string_view group)
{
    if (auto number = as_number(group))
        return static_cast<gid_t>(*number);
    std::string name(group), buffer;
    ::group entry{}, *found = nullptr;
    for (buffer.resize(1024);; buffer.resize(buffer.size() * 2))
        if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != ERANGE)
            break;
    if (!found)
        return Error{"unknown group '" + name + "'"};
    return entry.gr_gid;
}

Result<std::optional<Identity>> resolve_identity(std::string_view user, std::string_view group)
{
    Identity id;
    id.gid = ::getegid();
    std::optional<gid_t> group_id;
    if (!group.empty()) {
        auto gid = resolve_gid(group);
        if (!gid)
            return Error{gid.error()};
        group_id = *gid;
    }
    if (!user.empty()) {
        std::string name(user), buffer;
        auto entry = find_user(name, buffer);
        if (entry) {
            id.uid = entry->pw_uid;
            // The group asked for replaces the primary group before the
            // supplementary list is computed, or the primary group would stay
            // in it (initgroups(user, group), as the inetds do).
            id.gid = group_id.value_or(entry->pw_gid);
            id.groups = group_list(entry->pw_name, id.gid);
        } else if (auto number = as_number(user)) {
            // A uid with no entry has no primary group to inherit: guessing
            // one (the gid of the same number) could hand over an unrelated
            // group, so the group must be given.
            if (!group_id)
                return Error{"uid " + name + " is not in the password database: give its group too"};
            id.uid = static_cast<uid_t>(*number);
            id.gid = *group_id;
        } else {
            return Error{"unknown user '" + name + "'"};
        }
        id.user = name;
        id.change_user = true;
    } else if (group_id) {
        id.gid = *group_id;
    }
    if (id.groups.empty())
        id.groups.push_back(id.gid);
    if (::geteuid() != 0) {
        if ((!id.change_user || id.uid == ::geteuid()) && id.gid == ::getegid())
            return std::optional<Identity>();
        return Error{"user and group need superd to run as root (it runs as uid " + std::to_string(::geteuid()) + ")"};
    }
    return std::optional<Identity>(std::move(id));
}

} // namespace superd

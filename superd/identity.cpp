#include "superd/identity.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <string>

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

// getpwnam_r with a buffer that grows as needed.
std::optional<passwd> find_user(const std::string& name, std::string& buffer)
{
    passwd entry{}, *found = nullptr;
    for (buffer.resize(1024);; buffer.resize(buffer.size() * 2)) {
        int rc = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (rc != ERANGE)
            break;
    }
    if (!found)
        return std::nullopt;
    return entry;
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
    if (!user.empty()) {
        std::string name(user), buffer;
        auto entry = find_user(name, buffer);
        if (!entry) {
            auto number = as_number(user);
            if (!number)
                return Error{"unknown user '" + name + "'"};
            id.uid = static_cast<uid_t>(*number); // a bare uid: no entry, no groups
            id.gid = static_cast<gid_t>(*number);
        } else {
            id.uid = entry->pw_uid;
            id.gid = entry->pw_gid;
            int count = 32;
            std::vector<gid_t> groups(static_cast<size_t>(count));
            while (::getgrouplist(entry->pw_name, entry->pw_gid, groups.data(), &count) < 0)
                groups.resize(static_cast<size_t>(count));
            groups.resize(static_cast<size_t>(count));
            id.groups = std::move(groups);
        }
        id.user = name;
        id.change_user = true;
    }
    if (!group.empty()) {
        auto gid = resolve_gid(group);
        if (!gid)
            return Error{gid.error()};
        id.gid = *gid;
    }
    if (id.groups.empty())
        id.groups.push_back(id.gid);
    if (::geteuid() != 0) {
        if ((!id.change_user || id.uid == ::geteuid()) && id.gid == ::getegid())
            return std::optional<Identity>();
        return Error{"user and group need superd to run as root (it runs as uid " + std::to_string(::geteuid())
                     + ")"};
    }
    return std::optional<Identity>(std::move(id));
}

} // namespace superd

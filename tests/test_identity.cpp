#include "superd/identity.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace {

bool root_or_warn()
{
    if (::geteuid() == 0)
        return true;
    WARN("not run: needs root, identities are switched only by a root superd");
    return false;
}

// The groups whose member list in the group database names `user`.
std::vector<gid_t> listed_member_of(const std::string& user)
{
    std::vector<gid_t> found;
    ::setgrent();
    while (group* g = ::getgrent())
        for (char** m = g->gr_mem; *m; ++m)
            if (user == *m)
                found.push_back(g->gr_gid);
    ::endgrent();
    return found;
}

} // namespace

TEST_CASE("Users and groups resolve by name or number", "[identity]")
{
    if (!root_or_warn())
        return;

    auto nobody = superd::resolve_identity("nobody", "");
    REQUIRE(nobody.ok());
    REQUIRE(nobody->has_value());
    CHECK((*nobody)->uid == 65534);
    CHECK((*nobody)->gid == 65534); // nobody's primary group, nogroup
    CHECK((*nobody)->change_user);
    CHECK_FALSE((*nobody)->groups.empty());

    auto with_group = superd::resolve_identity("nobody", "root");
    REQUIRE(with_group.ok());
    CHECK((*with_group)->gid == 0);

    auto group_only = superd::resolve_identity("", "nogroup");
    REQUIRE(group_only.ok());
    CHECK_FALSE((*group_only)->change_user);
    CHECK((*group_only)->gid == 65534);

    CHECK_THAT(superd::resolve_identity("no-such-user-xyz", "").error(), Catch::Contains("unknown user"));
    CHECK_THAT(superd::resolve_identity("nobody", "no-such-group-xyz").error(), Catch::Contains("unknown group"));
}

TEST_CASE("A group given replaces the user's primary group, also among the supplementary ones", "[identity]")
{
    if (!root_or_warn())
        return;
    passwd* daemon = ::getpwnam("daemon");
    group* mail = ::getgrnam("mail");
    REQUIRE(daemon);
    REQUIRE(mail);
    gid_t daemon_gid = daemon->pw_gid, mail_gid = mail->gr_gid;
    REQUIRE(daemon_gid != mail_gid);
    std::vector<gid_t> listed = listed_member_of("daemon");
    // What initgroups("daemon", mail) sets, as openbsd-inetd and xinetd do.
    std::vector<gid_t> expected = listed;
    expected.push_back(mail_gid);
    std::sort(expected.begin(), expected.end());
    expected.erase(std::unique(expected.begin(), expected.end()), expected.end());

    auto id = superd::resolve_identity("daemon", "mail");
    REQUIRE(id.ok());
    CHECK((*id)->gid == mail_gid);
    std::vector<gid_t> groups = (*id)->groups;
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    CHECK(groups == expected);
    if (std::find(listed.begin(), listed.end(), daemon_gid) == listed.end())
        CHECK(std::find(groups.begin(), groups.end(), daemon_gid) == groups.end());
}

TEST_CASE("A numeric user in the password database gets its entry's group", "[identity]")
{
    if (!root_or_warn())
        return;
    // A user whose primary group's number is not its uid (on Debian, sync
    // is uid 4 with gid 65534), so that the uid taken for a gid shows.
    passwd* user = nullptr;
    for (uid_t uid = 1; uid < 1000 && !user; ++uid) {
        user = ::getpwuid(uid);
        if (user && user->pw_gid == uid)
            user = nullptr;
    }
    REQUIRE(user);
    uid_t uid = user->pw_uid;
    gid_t gid = user->pw_gid;
    std::string name = user->pw_name;

    auto id = superd::resolve_identity(std::to_string(uid), "");
    REQUIRE(id.ok());
    CHECK((*id)->uid == uid);
    CHECK((*id)->gid == gid);
    auto by_name = superd::resolve_identity(name, "");
    REQUIRE(by_name.ok());
    CHECK((*id)->groups == (*by_name)->groups);

    // A uid with no entry has no group to inherit: it must be given.
    REQUIRE(::getpwuid(4242) == nullptr);
    CHECK_THAT(superd::resolve_identity("4242", "").error(), Catch::Contains("give its group"));
    auto unknown = superd::resolve_identity("4242", "nogroup");
    REQUIRE(unknown.ok());
    CHECK((*unknown)->uid == 4242);
    CHECK((*unknown)->gid == 65534);
    CHECK((*unknown)->groups == std::vector<gid_t>{65534});
}

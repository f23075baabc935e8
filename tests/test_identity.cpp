#include "superd/identity.h"

#include <unistd.h>

#include <catch2/catch.hpp>

TEST_CASE("Users and groups resolve by name or number", "[identity]")
{
    if (::geteuid() != 0) {
        WARN("not run: needs root, identities are switched only by a root superd");
        return;
    }

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

    auto numeric = superd::resolve_identity("4242", "");
    REQUIRE(numeric.ok());
    CHECK((*numeric)->uid == 4242);

    CHECK_THAT(superd::resolve_identity("no-such-user-xyz", "").error(), Catch::Contains("unknown user"));
    CHECK_THAT(superd::resolve_identity("nobody", "no-such-group-xyz").error(), Catch::Contains("unknown group"));
}

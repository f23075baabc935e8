// The sandbox's configuration and what it prepares: mistakes at their
// FILE:LINE, the "service" preset's content, and a kernel without Landlock
// (through SUPERD_TEST_LANDLOCK_ABI). tests/test_sandbox_service.cpp runs
// sandboxed programs.
#include "superd/config.h"
#include "superd/sandbox.h"

#include "tests/config_fixture.h"
#include "tests/harness.h"

#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace {

// A service "s" with the sandbox table's lines after it (line 5 on).
struct Fixture : ConfigFixture {
    std::string head = "[service.s]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\n[service.s.sandbox]\n";

    superd::Result<superd::Config> load(const std::string& sandbox_lines)
    {
        return ConfigFixture::load(head + sandbox_lines);
    }
    std::string error_at(const std::string& sandbox_lines, int line)
    {
        return ConfigFixture::error_at(head + sandbox_lines, line);
    }
};

bool allows(std::string_view name)
{
    auto preset = superd::service_preset();
    return std::find(preset.begin(), preset.end(), name) != preset.end();
}

} // namespace

TEST_CASE("sandbox keys are read with their meaning", "[sandbox]")
{
    Fixture f;
    auto config =
        f.load("syscalls = \"service\"\nsyscalls_deny = [\"chmod\"]\ncapabilities = [\"CAP_NET_BIND_SERVICE\", "
               "\"chown\"]\nfilesystem = { read = [\"/usr\"], write = [\"sub\"], exec = [] }\n");
    INFO((config ? "" : config.error()));
    REQUIRE(config.ok());
    const superd::ServiceConfig& s = config->services.front();
    REQUIRE(s.sandbox);
    CHECK(s.sandbox->syscalls == superd::SyscallPreset::kService);
    CHECK(s.sandbox->syscalls_deny == std::vector<std::string>{"chmod"});
    CHECK(s.sandbox->capabilities == std::vector<int>{CAP_NET_BIND_SERVICE, CAP_CHOWN});
    REQUIRE(s.sandbox->filesystem);
    CHECK(s.sandbox->filesystem->read == std::vector<std::string>{"/usr"});
    CHECK(s.sandbox->filesystem->write == std::vector<std::string>{(f.dir.path() / "sub").string()});
    // Implied by syscalls and filesystem, which need it.
    CHECK(s.sandbox->no_new_privileges);
    CHECK_FALSE(s.sandbox->private_network);
    REQUIRE(s.sandbox_prepared);
    CHECK(s.sandbox_prepared->warnings().empty());
}

TEST_CASE("sandbox mistakes are errors at their line", "[sandbox]")
{
    Fixture f;
    CHECK(f.error_at("privat_tmp = true\n", 5) == "service 's': unknown key 'sandbox.privat_tmp'");
    CHECK(f.error_at("private_network = \"yes\"\n", 5) == "service 's': sandbox.private_network must be true or false");
    CHECK(f.error_at("syscalls = \"all\"\n", 5)
          == "service 's': sandbox.syscalls must be one of \"service\", \"none\"");
    CHECK(f.error_at("syscalls_deny = [\"ptrace\",\n  \"no_such_call\"]\n", 6)
          == "service 's': sandbox.syscalls_deny: unknown system call 'no_such_call'");
    CHECK(f.error_at("capabilities = [\"CAP_FLY\"]\n", 5)
          == "service 's': sandbox.capabilities: unknown capability "
             "'CAP_FLY'");
    CHECK(f.error_at("\nfilesystem = { read = [\"/no/such/path\"] }\n", 6)
          == "service 's': sandbox.filesystem.read: /no/such/path does not exist");
    CHECK(f.error_at("filesystem = { rread = [] }\n", 5)
          == "service 's': unknown key 'sandbox.filesystem.rread' (read, write and exec are)");
    CHECK(f.error_at("filesystem_best_effort = true\n", 5)
          == "service 's': sandbox.filesystem_best_effort goes with filesystem");
    CHECK(f.error_at("syscalls = \"service\"\nno_new_privileges = false\n", 6)
          == "service 's': sandbox.no_new_privileges cannot be false with filesystem or syscalls, which imply it");
    CHECK(f.load("").ok()); // an empty table: nothing to sandbox, and no error
    // The fixture's program is in a folder under /tmp (unless $TMPDIR says
    // otherwise), which a private /tmp hides.
    if (f.path.starts_with("/tmp/"))
        CHECK(f.error_at("\nprivate_tmp = true\n", 6)
              == "service 's': sandbox.private_tmp: the program " + (f.dir.path() / "prog").string()
                     + " is under /tmp, which the private /tmp hides from it");

    f.head = "[service.s]\nlisten = [\"127.0.0.1:7000\"]\nprogram = \"prog\"\nsandbox = true\n";
    CHECK(f.error_at("", 4) == "service 's': sandbox must be a table: [service.s.sandbox]");
    f.head = "[service.s]\nlisten = [\"127.0.0.1:7000\"]\nbuiltin = \"echo\"\n[service.s.sandbox]\n";
    CHECK(f.error_at("private_tmp = true\n", 4)
          == "service 's': sandbox does not apply to a builtin (it runs inside superd)");
}

TEST_CASE("a kernel without Landlock refuses filesystem unless best effort is allowed", "[sandbox]")
{
    Fixture f;
    harness::ScopedEnv no_landlock{{"SUPERD_TEST_LANDLOCK_ABI", "0"}};
    CHECK(superd::landlock_abi() == 0);
    CHECK(f.error_at("\n\nfilesystem = { read = [\"/usr\"] }\n", 7)
          == "service 's': sandbox.filesystem: this kernel has no Landlock (5.13 or later with it enabled), so the "
             "paths cannot be enforced; set filesystem_best_effort = true to run without");

    auto config = f.load("filesystem = { read = [\"/usr\"] }\nfilesystem_best_effort = true\n");
    INFO((config ? "" : config.error()));
    REQUIRE(config.ok());
    const auto& prepared = config->services.front().sandbox_prepared;
    REQUIRE(prepared);
    CHECK(prepared->ruleset_fd() < 0);
    REQUIRE(prepared->warnings().size() == 1);
    CHECK_THAT(prepared->warnings().front(), Catch::Contains("filesystem not enforced"));
}

TEST_CASE("a Landlock ruleset is an fd above 3, and a path it cannot open is named", "[sandbox]")
{
    if (superd::landlock_abi() <= 0) {
        WARN("SKIPPED: this kernel has no Landlock");
        return;
    }
    auto ruleset = superd::landlock_ruleset({{"/usr"}, {}, {}}, "/bin/sh", superd::landlock_abi());
    REQUIRE(ruleset.ok());
    CHECK(ruleset->get() > 3);
    auto missing = superd::landlock_ruleset({{}, {"/no/such/dir"}, {}}, "/bin/sh", superd::landlock_abi());
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.error(), Catch::StartsWith("/no/such/dir: "));
}

TEST_CASE("the service preset allows an ordinary program and refuses what the issue names", "[sandbox]")
{
    for (const char* name : {"read", "write", "execve", "openat", "mmap", "mprotect", "accept4", "connect", "sendfile",
                             "epoll_wait", "rt_sigprocmask", "exit_group", "futex", "close_range", "getrandom"})
        CHECK(allows(name));
    for (std::string_view name : superd::service_preset_refused())
        CHECK_FALSE(allows(name));
    auto refused = superd::service_preset_refused();
    for (const char* name : {"mount", "unshare", "setns", "init_module", "finit_module", "kexec_load", "reboot",
                             "ptrace", "keyctl", "bpf", "perf_event_open", "setuid", "swapon"})
        CHECK(std::find(refused.begin(), refused.end(), name) != refused.end());
    // Every name is one libseccomp knows, or it would silently allow nothing.
    for (std::string_view name : superd::service_preset())
        CHECK(superd::known_syscall(std::string(name)));
}

TEST_CASE("the service preset allows every call a spawn makes after the helper's filter", "[sandbox]")
{
    // Else the spawn helper, under the preset, could not fork a child.
    // clone is the preset's too, without namespace flags, as the helper
    // calls it (syscall_filter() adds it with that condition).
    for (std::string_view name : superd::spawn_calls()) {
        INFO(name);
        CHECK((allows(name) || name == "clone"));
        CHECK(superd::known_syscall(std::string(name)));
    }
}

TEST_CASE("the syscall filter is compiled only when there is something to filter", "[sandbox]")
{
    auto none = superd::syscall_filter(superd::SyscallPreset::kNone, {});
    REQUIRE(none.ok());
    CHECK(none->empty());
    auto deny = superd::syscall_filter(superd::SyscallPreset::kNone, {"ptrace"});
    REQUIRE(deny.ok());
    CHECK_FALSE(deny->empty());
    auto service = superd::syscall_filter(superd::SyscallPreset::kService, {});
    REQUIRE(service.ok());
    // An allowlist of some 300 calls is longer than one refusal.
    CHECK(service->size() > deny->size());
}

TEST_CASE("capability names are read with or without CAP_", "[sandbox]")
{
    CHECK(superd::capability_number("CAP_NET_BIND_SERVICE") == CAP_NET_BIND_SERVICE);
    CHECK(superd::capability_number("cap_chown") == CAP_CHOWN);
    CHECK(superd::capability_number("net_raw") == CAP_NET_RAW);
    CHECK_FALSE(superd::capability_number("CAP_TIME_TRAVEL"));
}

TEST_CASE("a service's namespaces are shared by its loads while one holds them", "[sandbox]")
{
    if (::geteuid() != 0) {
        WARN("SKIPPED: making namespaces needs root");
        return;
    }
    using superd::Namespace;
    auto first = Namespace::shared("sandbox-test", Namespace::Kind::kNetwork);
    REQUIRE(first.ok());
    auto again = Namespace::shared("sandbox-test", Namespace::Kind::kNetwork);
    REQUIRE(again.ok());
    CHECK(first->get() == again->get());
    auto other = Namespace::shared("sandbox-test-2", Namespace::Kind::kNetwork);
    REQUIRE(other.ok());
    CHECK(other->get() != first->get());
    int fd = (*first)->fd();
    first->reset();
    again->reset();
    // The last holder gone, the namespace's fd is closed.
    CHECK(::fcntl(fd, F_GETFD) < 0);
}

// Sandbox: what a service's [service.NAME.sandbox] table takes away from its
// program, prepared once when the configuration is loaded and entered once
// by the service's spawn helper, whose children inherit it.
//
// At load, everything that costs is done: the empty network namespace and
// the mount namespace with a private /tmp and /var/tmp are made by a
// short-lived helper process whose namespace descriptors superd keeps; the
// Landlock ruleset is built from the listed paths (an fd); the seccomp filter
// is compiled by libseccomp to a BPF program; the capability sets are worked
// out with libcap. The Sandbox object owns all of it, and the Launcher of the
// load holds it, so that the namespaces live as long as some load uses them.
//
// The Launcher's spawn helper (launcher.h), a fork of superd, takes these
// steps on itself, once, in this order, each a raw system call on what was
// prepared:
//   1. namespaces: setns() into the network and mount namespaces;
//   2. identity (the launcher's: groups, group, user, cwd, umask);
//   3. capabilities: the bounding set cut to the listed ones, which become
//      permitted, effective, inheritable and ambient;
//   4. no_new_privs;
//   5. Landlock: landlock_restrict_self() with the ruleset;
//   6. seccomp, last, so that the steps above need not be allowed by it.
// A child the helper forks inherits all six: joining, cutting and compiling
// them again for every connection is what made a sandboxed spawn cost twice
// a plain one (the bounding set alone is some forty prctl calls, and the
// kernel translates a filter anew for each process that attaches it). The
// helper's filter lets through the calls a spawn still makes after it
// (spawn_calls()); those of them the service's own filter refuses are
// refused again by a second, small filter each child attaches just before
// exec (restrict_child()); the helper's filter then lets seccomp() through
// too, and the child's refuses it again where the service's would. A step
// that fails names itself; the spawn fails and nothing runs without the
// protection asked for.
//
// Namespaces are shared between loads through a small registry (by service
// name and kind): a reload that keeps private_network or private_tmp gets the
// same namespaces, so its connections keep seeing the same /tmp; one that
// drops the setting lets them close when the old load goes.
//
// Not thread-safe: loads happen on the daemon's one thread.
#pragma once

#include "superd/fd.h"
#include "superd/result.h"

#include <linux/filter.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

enum class SyscallPreset { kNone, kService };

// The paths of `filesystem`, absolute.
struct FilesystemRules {
    std::vector<std::string> read, write, exec;
    bool operator==(const FilesystemRules&) const = default;
};

// [service.NAME.sandbox] as read.
struct SandboxSettings {
    bool private_network = false;
    bool private_tmp = false;
    bool no_new_privileges = false; // true too when filesystem or syscalls ask for it
    std::optional<FilesystemRules> filesystem;
    bool filesystem_best_effort = false;
    SyscallPreset syscalls = SyscallPreset::kNone;
    std::vector<std::string> syscalls_deny;
    std::optional<std::vector<int>> capabilities; // CAP_* numbers to keep
    bool operator==(const SandboxSettings&) const = default;
};

// The kernel's Landlock ABI version, 0 without Landlock. The environment
// variable SUPERD_TEST_LANDLOCK_ABI, when set, is taken instead: the tests'
// way to show what happens on a kernel without it.
int landlock_abi();

// The system calls the "service" preset allows, and those it refuses by name
// (for the README and the tests; anything not allowed is refused).
std::span<const std::string_view> service_preset();
std::span<const std::string_view> service_preset_refused();
// The calls a spawn makes once the helper's filter is in place: the
// helper's own (receiving a connection, cloning, answering) and its child's
// until exec. The "service" preset allows every one (clone without
// namespace flags, as the helper calls it).
std::span<const std::string_view> spawn_calls();
// Whether libseccomp knows `name` on some architecture.
bool known_syscall(const std::string& name);
// A capability's number from "CAP_NET_BIND_SERVICE", "cap_net_bind_service"
// or "net_bind_service"; none for a name libcap does not know.
std::optional<int> capability_number(std::string name);

// A namespace superd keeps an fd of, for children to setns() into.
class Namespace {
public:
    enum class Kind { kNetwork, kTmp };
    // The service's namespace of `kind`: the one an earlier load made, if
    // that is still alive, else a new one.
    static Result<std::shared_ptr<const Namespace>> shared(const std::string& service, Kind kind);
    int fd() const { return fd_.get(); }
    int type() const; // CLONE_NEWNET or CLONE_NEWNS

private:
    Namespace(Kind kind, UniqueFd fd) : kind_(kind), fd_(std::move(fd)) {}
    static Result<UniqueFd> make(Kind kind);
    Kind kind_;
    UniqueFd fd_;
};

// A Landlock ruleset allowing `rules` (and the program, to be executed), for
// the ABI the kernel has. Paths that do not exist are an error naming them.
Result<UniqueFd> landlock_ruleset(const FilesystemRules& rules, const std::string& program, int abi);

// The seccomp filter for `preset` less `deny`, as BPF; empty when there is
// nothing to filter. `allow` adds calls to the "service" preset.
Result<std::vector<sock_filter>> syscall_filter(SyscallPreset preset, const std::vector<std::string>& deny,
                                                const std::vector<std::string>& allow = {});

class Sandbox {
public:
    // Prepares everything `settings` asks for; `program` is the service's,
    // which Landlock lets it execute. Errors are "KEY: message".
    static Result<std::shared_ptr<const Sandbox>> prepare(const std::string& service, const SandboxSettings& settings,
                                                          const std::string& program);

    // What was asked for and not enforced (filesystem_best_effort on a
    // kernel without Landlock), for the log when the load is applied.
    const std::vector<std::string>& warnings() const { return warnings_; }

    // In the spawn helper. Each returns null, or the step that failed with
    // errno set. Before identity: joins the namespaces; when capabilities are
    // kept and the user changes, asks the kernel to keep them across the
    // switch.
    const char* enter(bool changes_user) const;
    // The Landlock ruleset the helper must still hold when restrict() runs;
    // -1 for none. Never 0-3.
    int ruleset_fd() const { return ruleset_.get(); }
    // After identity: capabilities, no_new_privs, Landlock (with the
    // ruleset at `ruleset_fd`), seccomp with the helper's filter.
    const char* restrict(int ruleset_fd) const;
    // In each child the helper forks, last before exec: the spawn calls the
    // service's filter refuses (none, mostly: then nothing is attached).
    // Raw system calls only, nothing allocated.
    const char* restrict_child() const;

private:
    Sandbox() = default;
    std::shared_ptr<const Namespace> network_, tmp_;
    UniqueFd ruleset_;
    std::vector<sock_filter> filter_, child_filter_;
    sock_fprog program_{}, child_program_{};
    bool no_new_privs_ = false;
    bool set_capabilities_ = false;
    uint64_t keep_ = 0;          // capabilities kept
    std::vector<int> drop_;      // from the bounding set
    std::vector<int> keep_list_; // raised into the ambient set
    std::vector<std::string> warnings_;
};

} // namespace superd

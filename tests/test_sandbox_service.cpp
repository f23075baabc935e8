// Sandboxed services run by the real superd: what tests/sandbox_probe
// tries from inside [service.NAME.sandbox], and reloads that add and remove
// it. Landlock's tests pass with a warning (Catch2 v2 has no skip) on a
// kernel without it.
#include "superd/sandbox.h"

#include "tests/harness.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace harness;
namespace fs = std::filesystem;

namespace {

// The probe where a private /tmp does not hide it: a checkout (and its
// build folder) may be under /tmp, where superd refuses a program that has
// private_tmp. Copied, then, to a folder of its own under /var/lib, removed
// when the tests end.
const std::string& probe_program()
{
    struct Copy {
        std::string folder, path = SANDBOX_PROBE_BINARY;
        Copy()
        {
            if (!path.starts_with("/tmp/") && !path.starts_with("/var/tmp/"))
                return;
            char pattern[] = "/var/lib/superd-test-XXXXXX";
            if (!::mkdtemp(pattern))
                return;
            folder = pattern;
            // mkdtemp makes it 0700: a service run as nobody must reach it.
            ::chmod(pattern, 0755);
            std::error_code ec;
            fs::copy_file(path, folder + "/sandbox_probe", ec);
            if (!ec)
                path = folder + "/sandbox_probe";
        }
        ~Copy()
        {
            std::error_code ec;
            if (!folder.empty())
                fs::remove_all(folder, ec);
        }
    };
    static Copy copy;
    return copy.path;
}

// A sandbox_probe service on `port`, `keys` in its table, `sandbox` in its
// sandbox table (none when empty). Its stderr goes nowhere: a sanitizer's
// report (LeakSanitizer needs ptrace, which a filter refuses) must not reach
// the client.
std::string probe(const std::string& name, uint16_t port, const std::string& sandbox, const std::string& keys = "")
{
    std::string text = service_toml(name, {loopback(port)}, probe_program()) + "stderr = \"null\"\n" + keys;
    if (!sandbox.empty())
        text += "[service." + name + ".sandbox]\n" + sandbox + "\n";
    return text;
}

// What a dynamically linked program needs to start under Landlock: its
// libraries and their loader, as a TOML list (only the paths there are).
std::string system_paths()
{
    std::string list;
    for (const char* path : {"/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/proc"})
        if (fs::exists(path))
            list += std::string(list.empty() ? "\"" : ", \"") + path + "\"";
    return list;
}

// How many of superd's fds are namespaces of `type` ("net", "mnt").
size_t namespace_fds(pid_t pid, const std::string& type)
{
    size_t count = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        auto target = fs::read_symlink(entry.path(), ec);
        count += !ec && target.string().rfind(type + ":[", 0) == 0;
    }
    return count;
}

// superd's children that are spawn helpers ("superd-sandbox" in ps).
std::vector<pid_t> helpers(const Superd& superd)
{
    std::vector<pid_t> found;
    for (pid_t pid : superd.children()) {
        std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
        std::string name;
        if (std::getline(comm, name) && name == "superd-sandbox" && proc_status(pid, "State").rfind("Z", 0) != 0)
            found.push_back(pid);
    }
    return found;
}

bool gone_or_zombie(pid_t pid)
{
    std::string state = proc_status(pid, "State");
    return state.empty() || state[0] == 'Z';
}

bool have_landlock()
{
    if (superd::landlock_abi() > 0)
        return true;
    WARN("SKIPPED: this kernel has no Landlock; the refusal is tested with SUPERD_TEST_LANDLOCK_ABI=0");
    return false;
}

} // namespace

TEST_CASE("private_network: the child reaches no host listener yet answers its client", "[sandbox][integration]")
{
    uint16_t host = free_port(), sandboxed = free_port(), open = free_port();
    UniqueFd listener = listen_tcp(host);
    Superd superd(probe("sandboxed", sandboxed, "private_network = true") + probe("open", open, ""));
    std::string request = "connect " + std::to_string(host) + "\n";
    CHECK(round_trip(sandboxed, request) == "connect: ENETUNREACH\n");
    CHECK(round_trip(open, request) == "connect: ok\n");
}

TEST_CASE("private_tmp: /tmp is the service's own, shared by its connections", "[sandbox][integration]")
{
    uint16_t port = free_port();
    Superd superd(probe("tmp", port, "private_tmp = true"));
    std::string file = "/tmp/superd-sandbox-" + std::to_string(::getpid()) + "-" + std::to_string(port);
    CHECK(round_trip(port, "write " + file + " hello\n") == "write: ok\n");
    CHECK_FALSE(fs::exists(file));
    CHECK(round_trip(port, "read " + file + "\n") == "read: hello\n");
    std::error_code ec;
    fs::remove(file, ec);
}

TEST_CASE("filesystem: a root child reads only what is listed", "[sandbox][integration]")
{
    if (!have_landlock())
        return;
    uint16_t fenced = free_port(), shadow = free_port();
    TempDir data;
    std::string listed = data.write("listed", "readable\n");
    std::string paths = system_paths();
    // The libraries and their loader are read and executed.
    std::string exec = "], exec = [" + paths + "] }";
    Superd superd(probe("fenced", fenced, "filesystem = { read = [" + paths + ", \"" + listed + "\"" + exec)
                  + probe("shadow", shadow, "filesystem = { read = [" + paths + ", \"/etc/shadow\"" + exec));
    CHECK(round_trip(fenced, "read /etc/shadow\nread " + listed + "\nwrite " + data.path().string() + "/new x\n")
          == "read: EACCES\nread: readable\nwrite: EACCES\n");
    CHECK(round_trip(shadow, "read /etc/shadow\n").find("EACCES") == std::string::npos);
}

TEST_CASE("syscalls = service: unshare, mount and ptrace fail with EPERM", "[sandbox][integration]")
{
    uint16_t filtered = free_port(), open = free_port();
    Superd superd(probe("filtered", filtered, "syscalls = \"service\"") + probe("open", open, ""));
    CHECK(round_trip(filtered, "unshare\nmount\nptrace\n") == "unshare: EPERM\nmount: EPERM\nptrace: EPERM\n");
    // Without the filter, root may: the mount fails only for its missing folder.
    CHECK(round_trip(open, "unshare\nmount\nptrace\n") == "unshare: ok\nmount: ENOENT\nptrace: ok\n");
}

TEST_CASE("no_new_privileges and capabilities show in /proc/self/status", "[sandbox][integration]")
{
    uint16_t root = free_port(), nobody = free_port(), none = free_port();
    std::string keep = "no_new_privileges = true\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]";
    Superd superd(probe("root", root, keep) + probe("nobody", nobody, keep, "user = \"nobody\"\n")
                  + probe("none", none, "capabilities = []"));
    // As /proc/self/status has them.
    auto status = [](const std::string& caps, const std::string& ambient, int no_new_privs) {
        return "status: \nCapEff:\t" + caps + "\nCapBnd:\t" + caps + "\nCapAmb:\t" + ambient + "\nNoNewPrivs:\t"
               + std::to_string(no_new_privs) + "\n";
    };
    std::string bind = "0000000000000400", zero = "0000000000000000";
    CHECK(round_trip(root, "status\n") == status(bind, bind, 1));
    // Not root: the capability reaches the program through the ambient set.
    CHECK(round_trip(nobody, "status\n") == status(bind, bind, 1));
    CHECK(round_trip(none, "status\n") == status(zero, zero, 0));
}

TEST_CASE("a wait service runs in its sandbox and accepts on its socket", "[sandbox][integration]")
{
    uint16_t port = free_port();
    Superd superd(service_toml("w", {loopback(port)}, waiter_binary())
                  + "mode = \"wait\"\n[service.w.sandbox]\nprivate_network = true\nsyscalls = \"service\"\n");
    CHECK_THAT(round_trip(port, "x"), Catch::StartsWith("waiter pid=") && Catch::EndsWith("x"));
}

TEST_CASE("a sandbox step that refuses the exec fails the spawn through its error path", "[sandbox][integration]")
{
    uint16_t port = free_port();
    Superd superd(probe("noexec", port, "syscalls_deny = [\"execve\"]"));
    CHECK(round_trip(port, "status\n").empty());
    CHECK(superd.wait_for_log(": exec: Operation not permitted\""));
}

TEST_CASE("A reload adds and removes the sandbox of a live service, keeping its namespaces while it stays",
          "[sandbox][integration]")
{
    uint16_t host = free_port(), port = free_port();
    UniqueFd listener = listen_tcp(host);
    std::string connect = "connect " + std::to_string(host) + "\n";
    std::string file = "/tmp/superd-sandbox-" + std::to_string(::getpid()) + "-" + std::to_string(port);
    std::string sandbox = "private_network = true\nprivate_tmp = true";
    Superd superd(probe("live", port, ""));
    CHECK(round_trip(port, connect) == "connect: ok\n");

    superd.rewrite_config(probe("live", port, sandbox));
    REQUIRE(superd.reload());
    CHECK(round_trip(port, connect) == "connect: ENETUNREACH\n");
    CHECK(round_trip(port, "write " + file + " kept\n") == "write: ok\n");
    CHECK(namespace_fds(superd.pid(), "net") == 1);
    CHECK(namespace_fds(superd.pid(), "mnt") == 1);

    // The same sandbox with another setting beside it: the same namespaces.
    superd.rewrite_config(probe("live", port, sandbox, "umask = \"0077\"\n"));
    REQUIRE(superd.reload());
    CHECK(round_trip(port, "read " + file + "\n") == "read: kept\n");
    CHECK(namespace_fds(superd.pid(), "mnt") == 1);

    superd.rewrite_config(probe("live", port, ""));
    REQUIRE(superd.reload());
    CHECK(round_trip(port, connect) == "connect: ok\n");
    CHECK(round_trip(port, "read " + file + "\n") == "read: ENOENT\n");
    CHECK(eventually([&] { return namespace_fds(superd.pid(), "net") + namespace_fds(superd.pid(), "mnt") == 0; }));
}

TEST_CASE("Without Landlock, filesystem is an error at its line unless best effort, then a warning",
          "[sandbox][integration]")
{
    uint16_t port = free_port();
    TempDir dir;
    std::string config = dir.write("superd.toml", probe("s", port, "filesystem = { read = [\"/usr\"] }"));
    ::setenv("SUPERD_TEST_LANDLOCK_ABI", "0", 1);
    Finished refused = run_superd({"--check", "--config", config});
    ::unsetenv("SUPERD_TEST_LANDLOCK_ABI");
    CHECK(refused.status == 2);
    CHECK_THAT(refused.output,
               Catch::Contains(config + ":7: service 's': sandbox.filesystem: this kernel has no Landlock"));

    StartOptions options;
    options.env = {"SUPERD_TEST_LANDLOCK_ABI=0"};
    Superd superd(probe("s", port, "filesystem = { read = [\"/usr\"] }\nfilesystem_best_effort = true"), options);
    CHECK(superd.wait_for_log("service=s sandbox=\"filesystem not enforced"));
    CHECK(round_trip(port, "read /etc/hostname\n").find("EACCES") == std::string::npos);
}

TEST_CASE("A deny list that names a call the spawn makes still refuses it to the program", "[sandbox][integration]")
{
    uint16_t preset = free_port(), bare = free_port();
    Superd superd(probe("preset", preset, "syscalls = \"service\"\nsyscalls_deny = [\"dup3\", \"setsid\"]")
                  + probe("bare", bare, "syscalls_deny = [\"dup3\"]"));
    // The spawn itself placed the fds with dup3 and made the session; the
    // program may do neither. The preset refuses seccomp() too, which the
    // spawn needed to attach that refusal.
    CHECK(round_trip(preset, "dup3\nseccomp\nptrace\n") == "dup3: EPERM\nseccomp: EPERM\nptrace: EPERM\n");
    // A deny list alone refuses only what it names.
    CHECK(round_trip(bare, "dup3\nseccomp\n") == "dup3: EPERM\nseccomp: ok\n");
}

TEST_CASE("A sandboxed service's programs come from one sandboxed helper, replaced when killed, gone with the sandbox",
          "[sandbox][integration]")
{
    uint16_t port = free_port();
    std::string sandbox = "private_network = true\nsyscalls = \"service\"\ncapabilities = []";
    std::string as_nobody = "user = \"nobody\"\n";
    Superd superd(probe("helped", port, sandbox, as_nobody));
    // The programs are superd's children, reaped by it as any other.
    std::string parent = "ppid: " + std::to_string(superd.pid()) + "\n";
    CHECK(round_trip(port, "ppid\n") == parent);
    CHECK(round_trip(port, "ppid\n") == parent);
    auto first = helpers(superd);
    REQUIRE(first.size() == 1);
    // The helper is inside the sandbox itself, as the service's user, and
    // holds nothing of superd's but its stdio and its own socket.
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody);
    CHECK(proc_status(first[0], "Uid").rfind(std::to_string(nobody->pw_uid) + "\t", 0) == 0);
    CHECK(proc_status(first[0], "NoNewPrivs") == "1");
    CHECK(proc_status(first[0], "Seccomp") == "2");
    CHECK(proc_status(first[0], "CapBnd") == "0000000000000000");
    CHECK(fd_count(first[0]) == 4);
    CHECK(superd.wait_for_log("sandbox service=helped helper=" + std::to_string(first[0])));

    // Killed, it is reaped, and the next connection starts another.
    ::kill(first[0], SIGKILL);
    REQUIRE(eventually([&] { return gone_or_zombie(first[0]); }));
    CHECK(round_trip(port, "ppid\n") == parent);
    auto second = helpers(superd);
    REQUIRE(second.size() == 1);
    CHECK(second[0] != first[0]);
    CHECK(eventually([&] { return proc_status(first[0], "State").empty(); }));

    // A reload without the sandbox ends it; the service runs on without.
    superd.rewrite_config(probe("helped", port, "", as_nobody));
    REQUIRE(superd.reload());
    CHECK(round_trip(port, "ppid\n") == parent);
    CHECK(eventually([&] { return helpers(superd).empty() && proc_status(second[0], "State").empty(); }));

    // And superd's end ends it.
    superd.rewrite_config(probe("helped", port, sandbox, as_nobody));
    REQUIRE(superd.reload());
    CHECK(round_trip(port, "ppid\n") == parent);
    auto third = helpers(superd);
    REQUIRE(third.size() == 1);
    CHECK(superd.stop() == 0);
    CHECK(eventually([&] { return gone_or_zombie(third[0]); }));
}

TEST_CASE("A helper that cannot enter its sandbox fails the spawn with its step and leaves nothing behind",
          "[sandbox][integration]")
{
    uint16_t port = free_port();
    // Above the kernel's fs.nr_open: the helper cannot raise its hard limit
    // to it, as a plain child could not.
    Superd superd(probe("unfit", port, "private_network = true", "rlimit_nofile = 2000000000\n"));
    CHECK(round_trip(port, "ppid\n").empty());
    CHECK(round_trip(port, "ppid\n").empty());
    CHECK(superd.wait_for_log("/sandbox_probe: setrlimit: Operation not permitted\"", 2));
    CHECK(eventually([&] { return superd.children().empty(); }));
    CHECK(superd.count_in_log("sandbox service=unfit helper=") == 0);
}

// builtin = "file", end to end: a real superd sends a file to real clients
// over loopback (TCP: the whole file, by sendfile(2); UDP: its first 512
// bytes), opening it per connection, so that a replaced file is served at
// once and a removed or shrunk one fails only its own connection.
#include "tests/harness.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>

using namespace harness;
namespace fs = std::filesystem;

namespace {

// A [service.NAME] sending the file at `path` from 127.0.0.1:`port`.
std::string file_toml(const std::string& name, uint16_t port, const std::string& path, const std::string& extra = "")
{
    return "[service." + name + "]\nlisten = [\"" + loopback(port) + "\"]\nbuiltin = \"file\"\npath = \"" + path
           + "\"\n" + extra + "\n";
}

// The same over UDP.
std::string udp_file_toml(const std::string& name, uint16_t port, const std::string& path, bool amplification)
{
    return file_toml(name, port, path,
                     std::string("protocol = \"udp\"\n") + (amplification ? "allow_amplification = true\n" : ""));
}

// Everything the service sends to a client that sends nothing.
std::string fetch(uint16_t port, std::chrono::milliseconds limit = 10s)
{
    UniqueFd fd = connect_tcp(port);
    return read_to_eof(fd.get(), limit);
}

// Replaces `path` as a deploy should: a new file beside it, renamed over it.
void replace(const std::string& path, const std::string& contents)
{
    TempDir staging; // on the same file system as the tests' other folders
    std::string next = staging.write("next", contents);
    fs::rename(next, path);
}

// Reads to EOF, counting the bytes rather than keeping them (EOF must come
// before `limit`, or the test fails).
size_t count_to_eof(int fd, std::chrono::milliseconds limit)
{
    size_t total = 0;
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        REQUIRE(left > 0ms);
        std::string got = read_n(fd, 1 << 20, left);
        total += got.size();
        if (got.size() < (1 << 20))
            return total;
    }
}

long rss_kib(pid_t pid) { return std::stol(proc_status(pid, "VmRSS")); }

// Large strings compared without Catch printing them whole; the sizes are
// reported with the next assertion.
bool same(const std::string& got, const std::string& wanted)
{
    UNSCOPED_INFO("got " << got.size() << " bytes, wanted " << wanted.size());
    return got == wanted;
}

} // namespace

TEST_CASE("file sends a 5 MB file byte for byte, to nc as to a plain client", "[file][integration]")
{
    TempDir files;
    std::string data = random_bytes(5 << 20, 1);
    std::string path = files.write("big.bin", data);
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));

    CHECK(same(fetch(port), data));
    // netcat-openbsd reads on after its stdin's EOF, up to the server's FIN.
    auto nc = run_command({"/bin/sh", "-c", "nc 127.0.0.1 " + std::to_string(port) + " </dev/null | sha256sum"}, 30s);
    auto wanted = run_command({"/usr/bin/sha256sum", path});
    REQUIRE(nc.status == 0);
    REQUIRE(wanted.status == 0);
    CHECK(nc.output.substr(0, 64) == wanted.output.substr(0, 64));
    CHECK(superd.settled_count("closed service=motd peer=127.0.0.1:", 2) == 2);
    CHECK(superd.count_in_log("failed service=motd") == 0);
}

TEST_CASE("file sends an empty file as an EOF at once, which is no failure", "[file][integration]")
{
    TempDir files;
    std::string path = files.write("empty", "");
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));

    CHECK(fetch(port, 3s) == "");
    CHECK(superd.settled_count("closed service=motd peer=127.0.0.1:", 1) == 1);
    CHECK(superd.count_in_log("failed service=motd") == 0);
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);
}

TEST_CASE("file opens its path per connection: a file replaced between two is served new", "[file][integration]")
{
    TempDir files;
    std::string path = files.write("motd.txt", "first version\n");
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));

    CHECK(fetch(port) == "first version\n");
    replace(path, "second version, longer than the first\n");
    CHECK(fetch(port) == "second version, longer than the first\n");
}

TEST_CASE("file finishes a transfer with the old bytes when the file is replaced meanwhile", "[file][integration]")
{
    TempDir files;
    std::string old_data = random_bytes(8 << 20, 2);
    std::string path = files.write("big.bin", old_data);
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));

    UniqueFd slow = connect_tcp(port);
    std::string got = read_n(slow.get(), 1 << 20);
    REQUIRE(got.size() == 1 << 20);
    std::string new_data = random_bytes(3 << 20, 3);
    replace(path, new_data); // the open descriptor keeps the old inode
    got += read_to_eof(slow.get(), 30s);
    CHECK(same(got, old_data));
    CHECK(same(fetch(port), new_data));
    CHECK(superd.count_in_log("failed service=motd") == 0);
}

TEST_CASE("file: a removed file fails only its own connections, logged, and superd goes on", "[file][integration]")
{
    TempDir files;
    std::string path = files.write("motd.txt", "message of the day\n");
    std::string other_path = files.write("other.txt", "another file\n");
    uint16_t port = free_port(), other = free_port();
    Superd superd(file_toml("motd", port, path) + file_toml("other", other, other_path));

    fs::remove(path);
    CHECK(fetch(port, 3s) == ""); // closed at once
    REQUIRE(superd.wait_for_log("failed service=motd peer=127.0.0.1:"));
    CHECK_THAT(superd.log(), Catch::Contains("reason=\"open ") && Catch::Contains(": No such file or directory\""));
    CHECK(fetch(other) == "another file\n");
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 0);

    files.write("motd.txt", "back again\n");
    CHECK(fetch(port) == "back again\n");
    CHECK(superd.count_in_log("failed service=motd") == 1);
}

TEST_CASE("file: a file shrunk under a stalled reader ends that transfer, logged, short", "[file][integration]")
{
    // libevent reports a sendfile that finds the file's end too early as
    // EOF while writing, with writing stopped: the connection must close,
    // not wait forever for a drain that cannot come.
    TempDir files;
    const uintmax_t size = 64 << 20; // far more than loopback's socket buffers hold
    std::string path = files.write("big.bin", "");
    fs::resize_file(path, size);
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));

    UniqueFd reader = connect_tcp(port);
    REQUIRE(read_n(reader.get(), 64 << 10).size() == 64 << 10);
    fs::resize_file(path, 4096);
    size_t rest = count_to_eof(reader.get(), 20s);
    CHECK((64 << 10) + rest < size);
    CHECK(superd.wait_for_log("failed service=motd peer=127.0.0.1:"));
    CHECK_THAT(superd.log(), Catch::Contains("reason=\"file shrank"));
    CHECK(eventually([&] { return counter(superd.daemon_counters(), "builtin_connections") == 0; }, 5s));
}

TEST_CASE("file: a reader that never reads stalls no other, and superd's memory does not grow with the file",
          "[file][integration]")
{
    TempDir files;
    const size_t size = 100 << 20; // sparse: zero pages, cheap to make and to send
    std::string path = files.write("huge.bin", "");
    fs::resize_file(path, size);
    uint16_t port = free_port();
    Superd superd(file_toml("motd", port, path));
    long before = rss_kib(superd.pid());

    UniqueFd stalled = connect_tcp(port); // reads nothing: its buffers fill
    UniqueFd reader = connect_tcp(port);
    CHECK(count_to_eof(reader.get(), 60s) == size);
    long after = rss_kib(superd.pid());
    INFO("superd's VmRSS before " << before << " KiB, after " << after << " KiB");
    CHECK(after - before < 1024);
    // The stalled one is still served, the finished one is gone.
    CHECK(counter(superd.daemon_counters(), "builtin_connections") == 1);
    CHECK_FALSE(quiet_for(stalled.get(), 0ms)); // its bytes wait to be read
}

TEST_CASE("file over UDP answers with the first 512 bytes, only with allow_amplification", "[file][integration]")
{
    TempDir files;
    std::string two_kib = files.write("2k.bin", random_bytes(2048, 4));
    std::string hundred = files.write("100.bin", random_bytes(100, 5));
    std::string empty = files.write("empty", "");
    uint16_t big = free_port(), small = free_port(), guarded = free_port(), nothing = free_port();
    Superd superd(udp_file_toml("big", big, two_kib, true) + udp_file_toml("small", small, hundred, true)
                  + udp_file_toml("guarded", guarded, two_kib, false) + udp_file_toml("nothing", nothing, empty, true));

    CHECK(same(udp_exchange(big, "x"), random_bytes(2048, 4).substr(0, 512)));
    CHECK(same(udp_exchange(small, "x"), random_bytes(100, 5)));
    // 512 bytes for an empty datagram is an amplifier: refused unless allowed.
    CHECK(udp_exchange(guarded, "x", "127.0.0.1", 0, 1s) == "");
    CHECK(udp_exchange(nothing, "x", "127.0.0.1", 0, 1s) == "");
    CHECK(same(udp_exchange(big, "again"), random_bytes(2048, 4).substr(0, 512)));
}

TEST_CASE("file's path is relative to the config file's folder", "[file][integration]")
{
    TempDir dir;
    dir.write("motd.txt", "relative\n");
    uint16_t port = free_port();
    std::string config = dir.write("superd.toml", file_toml("motd", port, "motd.txt"));
    StartOptions options;
    options.config_file = config;
    Superd superd("", options);
    CHECK(fetch(port) == "relative\n");
}

// Every kind of service superd runs, end to end over real sockets: builtins
// over TCP and UDP, unix sockets, wait services (inetd and systemd fd
// conventions), and what a spawned program is given.
#include "superd/builtin_rfc.h"

#include "tests/harness.h"

#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>

#include <array>
#include <csignal>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

using namespace harness;

namespace {

std::string builtin_toml(const std::string& name, const std::string& protocol, uint16_t port,
                         const std::string& builtin)
{
    return "[service." + name + "]\nprotocol = \"" + protocol + "\"\nlisten = [\"" + loopback(port)
           + "\", \"[::1]:" + std::to_string(port) + "\"]\nbuiltin = \"" + builtin + "\"\n\n";
}

long rss_kib_of(pid_t pid)
{
    std::string rss = proc_status(pid, "VmRSS"); // "1234 kB"
    return rss.empty() ? -1 : std::stol(rss);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

} // namespace

TEST_CASE("Builtins answer over TCP and UDP, IPv4 and IPv6", "[kinds][integration]")
{
    uint16_t echo = free_port(), discard = free_port(), chargen = free_port(), daytime = free_port(),
             time = free_port();
    std::string config;
    for (const char* protocol : {"tcp", "udp"}) {
        std::string p = protocol;
        config += builtin_toml("echo-" + p, p, echo, "echo") + builtin_toml("discard-" + p, p, discard, "discard")
                  + builtin_toml("chargen-" + p, p, chargen, "chargen")
                  + builtin_toml("daytime-" + p, p, daytime, "daytime") + builtin_toml("time-" + p, p, time, "time");
    }
    Superd superd(config);
    std::regex daytime_line(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S+\r\n)");

    for (std::string host : {"127.0.0.1", "::1"}) {
        INFO("host " << host);
        CHECK(round_trip(echo, "echo over tcp\n", host) == "echo over tcp\n");
        CHECK(udp_exchange(echo, "echo over udp", host) == "echo over udp");
        CHECK(round_trip(discard, "into the void\n", host) == "");
        CHECK(std::regex_match(round_trip(daytime, "", host), daytime_line));
        CHECK(std::regex_match(udp_exchange(daytime, "?", host), daytime_line));

        std::string t = round_trip(time, "", host);
        REQUIRE(t.size() == 4);
        uint32_t seconds;
        std::memcpy(&seconds, t.data(), 4);
        int64_t expected = superd::rfc::time_since_1900(::time(nullptr));
        CHECK(std::abs(static_cast<int64_t>(ntohl(seconds)) - expected) <= 5);
        CHECK(udp_exchange(time, "?", host).size() == 4);

        UniqueFd fd = connect_tcp(chargen, host);
        std::string lines = read_n(fd.get(), 3 * 74);
        CHECK(lines
              == std::string(superd::rfc::chargen_line(0)) + std::string(superd::rfc::chargen_line(1))
                     + std::string(superd::rfc::chargen_line(2)));
        // Up to 512 bytes for any datagram: an amplifier, unless the service
        // says allow_amplification.
        CHECK(udp_exchange(chargen, "?", host, 0, 300ms) == "");
    }
    CHECK(udp_exchange(discard, "nothing comes back", "127.0.0.1", 0, 300ms) == "");
    CHECK(superd.children().empty()); // all of it in-process
}

TEST_CASE("chargen answers over UDP only when the service allows amplification", "[kinds][integration]")
{
    uint16_t quiet = free_port(), loud = free_port();
    Superd superd(builtin_toml("quiet", "udp", quiet, "chargen") + builtin_toml("loud", "udp", loud, "chargen")
                  + "allow_amplification = true\n");
    // A reply is 0 to 512 characters long (RFC 864): one of five is not empty.
    std::string replies;
    for (int i = 0; i < 5; ++i)
        replies += udp_exchange(loud, "?", "127.0.0.1", 0, 2s);
    CHECK(!replies.empty());
    CHECK(std::all_of(replies.begin(), replies.end(),
                      [](char c) { return (c >= ' ' && c <= '~') || c == '\r' || c == '\n'; }));
    CHECK(udp_exchange(quiet, "?", "127.0.0.1", 0, 300ms) == "");
}

TEST_CASE("daytime and time end with a clean close even when the client spoke first", "[kinds][integration]")
{
    uint16_t daytime = free_port(), time = free_port();
    Superd superd(builtin_toml("daytime", "tcp", daytime, "daytime") + builtin_toml("time", "tcp", time, "time"));
    // Unread input at close makes the kernel send a reset instead of a FIN.
    // superd is stopped while the client connects and speaks, so the input
    // is there when it accepts: a request that arrives after the close is
    // reset by any server, and a busy machine would make that race real.
    for (uint16_t port : {daytime, time}) {
        for (int i = 0; i < 10; ++i) {
            ::kill(superd.pid(), SIGSTOP);
            UniqueFd fd;
            try {
                fd = connect_tcp(port);
                send_all(fd.get(), "what time is it?\n");
            } catch (...) {
                ::kill(superd.pid(), SIGCONT);
                throw;
            }
            ::kill(superd.pid(), SIGCONT);
            timeval limit{10, 0};
            ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
            std::string reply;
            std::array<char, 256> buffer;
            ssize_t n;
            while ((n = ::recv(fd.get(), buffer.data(), buffer.size(), 0)) > 0)
                reply.append(buffer.data(), static_cast<size_t>(n));
            INFO("port " << port << " try " << i << ": " << (n < 0 ? std::strerror(errno) : "EOF"));
            CHECK(n == 0);
            if (port == time)
                CHECK(reply.size() == 4);
            else
                CHECK_THAT(reply, Catch::EndsWith("\r\n"));
        }
    }
}

TEST_CASE("rdate reads the time builtin over TCP and UDP", "[kinds][integration]")
{
    if (::access("/usr/sbin/rdate", X_OK) != 0) {
        WARN("not run: rdate is not installed (scripts/install-deps installs it)");
        return;
    }
    uint16_t port = free_port();
    Superd superd(builtin_toml("time-tcp", "tcp", port, "time") + builtin_toml("time-udp", "udp", port, "time"));
    char year[8];
    std::time_t now = std::time(nullptr);
    std::strftime(year, sizeof year, "%Y", std::gmtime(&now));
    for (std::vector<std::string> argv :
         {std::vector<std::string>{"/usr/sbin/rdate", "-p", "-o", std::to_string(port), "127.0.0.1"},
          std::vector<std::string>{"/usr/sbin/rdate", "-p", "-u", "-o", std::to_string(port), "127.0.0.1"}}) {
        auto result = run_command(argv);
        INFO(result.output);
        CHECK(result.status == 0);
        CHECK_THAT(result.output, Catch::Contains(year));
    }
}

TEST_CASE("UDP builtins do not answer sources on privileged ports", "[kinds][integration]")
{
    if (::geteuid() != 0) {
        WARN("not run: sending from a port below 1024 needs root");
        return;
    }
    uint16_t port = free_port();
    Superd superd(builtin_toml("echo-udp", "udp", port, "echo"));
    // echo and chargen on port 7 and 19 of two hosts would answer each other forever.
    uint16_t low = 0;
    std::string reply;
    for (uint16_t candidate = 1000; candidate > 900 && !low; --candidate) {
        try {
            reply = udp_exchange(port, "loop?", "127.0.0.1", candidate, 500ms);
            low = candidate;
        } catch (const std::exception&) {
            // taken; try another
        }
    }
    REQUIRE(low != 0);
    CHECK(reply == "");
    CHECK(udp_exchange(port, "fine", "127.0.0.1") == "fine");
}

namespace {

// Sends one UDP datagram with a forged source, through a raw socket (root
// only), from 127.0.0.1:`from` to 127.0.0.1:`to`.
void send_spoofed(uint16_t from, uint16_t to, const std::string& payload)
{
    UniqueFd raw(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)); // IP_HDRINCL implied
    REQUIRE(raw);
    std::string packet(sizeof(iphdr) + sizeof(udphdr) + payload.size(), '\0');
    iphdr ip{};
    ip.version = 4;
    ip.ihl = sizeof ip / 4;
    ip.ttl = 64;
    ip.protocol = IPPROTO_UDP;
    ip.tot_len = htons(static_cast<uint16_t>(packet.size()));
    ip.saddr = ip.daddr = htonl(INADDR_LOOPBACK);
    udphdr udp{};
    udp.source = htons(from);
    udp.dest = htons(to);
    udp.len = htons(static_cast<uint16_t>(sizeof udp + payload.size()));
    udp.check = 0; // none, which IPv4 allows; the kernel fills in the IP checksum
    std::memcpy(packet.data(), &ip, sizeof ip);
    std::memcpy(packet.data() + sizeof ip, &udp, sizeof udp);
    std::memcpy(packet.data() + sizeof ip + sizeof udp, payload.data(), payload.size());
    sockaddr_in destination{};
    destination.sin_family = AF_INET;
    destination.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::sendto(raw.get(), packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&destination),
                     sizeof destination)
            == static_cast<ssize_t>(packet.size()));
}

// CPU time (user and system) `pid` has used, from /proc/PID/stat.
std::chrono::duration<double> cpu_time(pid_t pid)
{
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2)); // after the command name
    std::string field;
    long ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i)
        if (i == 14 || i == 15) // utime, stime
            ticks += std::stol(field);
    return std::chrono::duration<double>(static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

} // namespace

TEST_CASE("A datagram spoofed from superd's own UDP port starts no loop", "[kinds][integration]")
{
    if (::geteuid() != 0) {
        WARN("not run: a raw socket needs root");
        return;
    }
    uint16_t echo = free_port(), daytime = free_port();
    Superd superd(builtin_toml("echo", "udp", echo, "echo") + builtin_toml("daytime", "udp", daytime, "daytime"));
    auto before = cpu_time(superd.pid());
    // echo answering itself; echo and daytime answering each other.
    for (int i = 0; i < 10; ++i) {
        send_spoofed(echo, echo, "loop?");
        send_spoofed(daytime, echo, "loop?");
        send_spoofed(echo, daytime, "loop?");
    }
    std::this_thread::sleep_for(1s); // a loop burns a whole core meanwhile
    auto used = cpu_time(superd.pid()) - before;
    INFO("superd used " << used.count() << " s of CPU in 1 s");
    CHECK(used.count() < 0.2);
    CHECK(udp_exchange(echo, "still answers", "127.0.0.1") == "still answers");
}

TEST_CASE("A client that does not read stalls only itself", "[kinds][integration]")
{
    uint16_t chargen = free_port(), echo = free_port();
    Superd superd(builtin_toml("chargen", "tcp", chargen, "chargen") + builtin_toml("echo", "tcp", echo, "echo"));
    long before = rss_kib_of(superd.pid());

    // A chargen client that never reads, and an echo client that sends 32 MiB
    // without reading: both fill their socket buffers, then superd waits.
    UniqueFd lazy = connect_tcp(chargen);
    UniqueFd flooder = connect_tcp(echo);
    int small = 64 * 1024;
    ::setsockopt(flooder.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    std::thread flood([&] {
        std::string chunk(1 << 20, 'x');
        try {
            for (int i = 0; i < 32; ++i)
                send_all(flooder.get(), chunk);
        } catch (const std::exception&) {
            // the send timeout: superd stopped reading, as it should
        }
    });
    std::this_thread::sleep_for(1500ms);

    // superd still serves others promptly, and has not buffered the flood.
    CHECK(round_trip(echo, "still responsive\n") == "still responsive\n");
    long during = rss_kib_of(superd.pid());
    INFO("RSS before " << before << " KiB, during " << during << " KiB");
    CHECK(during - before < 16 * 1024); // half the flood: buffering it would show
    ::shutdown(flooder.get(), SHUT_RDWR);
    flood.join();
}

TEST_CASE("Unix socket services: mode, peer credentials, stale files", "[kinds][integration]")
{
    TempDir sockets;
    std::string path = (sockets.path() / "probe.sock").string();

    // A socket file left by a process that died is replaced.
    {
        UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
        REQUIRE(::bind(stale.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    }
    bool root = ::geteuid() == 0;
    std::string config = "[service.probe]\nprotocol = \"unix\"\nlisten = [\"unix:" + path + "\"]\nprogram = \""
                         + probe_binary() + "\"\nsocket_mode = \"0640\"\n"
                         + (root ? "socket_user = \"nobody\"\nsocket_group = \"nogroup\"\n" : "");
    {
        Superd superd(config);
        struct stat st;
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0640);
        if (root) {
            CHECK(st.st_uid == 65534);
            CHECK(st.st_gid == 65534);
        }

        UniqueFd fd = connect_unix(path);
        ::shutdown(fd.get(), SHUT_WR);
        std::string report = read_to_eof(fd.get());
        auto env = lines_with_prefix(report, "env: ");
        CHECK(std::count(env.begin(), env.end(), "PROTO=UNIX") == 1);
        CHECK(std::count(env.begin(), env.end(), "UNIXREMOTEPID=" + std::to_string(::getpid())) == 1);
        CHECK(std::count(env.begin(), env.end(), "UNIXREMOTEEUID=" + std::to_string(::geteuid())) == 1);
        CHECK(lines_with_prefix(report, "fds: ") == std::vector<std::string>{"0 1 2"});

        // A second superd must not steal a live socket.
        TempDir other;
        auto second = run_superd({"--config", other.write("superd.toml", config)});
        CHECK(second.status == 1);
        CHECK_THAT(second.output, Catch::Contains("another process is listening there"));
        CHECK(superd.stop() == 0);
    }
    struct stat st;
    CHECK(::stat(path.c_str(), &st) != 0); // removed on exit

    // A file that is not a socket is never removed.
    TempDir files;
    std::string not_socket = files.write("data.sock", "precious");
    auto refused = run_superd(
        {"--config", files.write("superd.toml", "[service.probe]\nprotocol = \"unix\"\nlisten = [\"unix:" + not_socket
                                                    + "\"]\nprogram = \"" + probe_binary() + "\"\n")});
    CHECK(refused.status == 1);
    CHECK_THAT(refused.output, Catch::Contains("the file exists and is not a socket"));
    std::ifstream kept(not_socket);
    std::string contents((std::istreambuf_iterator<char>(kept)), std::istreambuf_iterator<char>());
    CHECK(contents == "precious");

    // A live socket whose backlog is full cannot take superd's probe: it is
    // refused at once, not waited on.
    std::string full = (sockets.path() / "full.sock").string();
    UniqueFd busy(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, full.c_str(), sizeof sun.sun_path - 1);
    REQUIRE(::bind(busy.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    REQUIRE(::listen(busy.get(), 0) == 0);
    UniqueFd queued = connect_unix(full); // the one the backlog holds
    auto blocked =
        run_superd({"--config", files.write("full.toml", "[service.probe]\nprotocol = \"unix\"\nlisten = [\"unix:"
                                                             + full + "\"]\nprogram = \"" + probe_binary() + "\"\n")});
    CHECK(blocked.status == 1);
    CHECK_THAT(blocked.output, Catch::Contains("another process is listening there"));
}

TEST_CASE("A reload leaves alone what replaced a unix socket, a symlink above all", "[kinds][integration]")
{
    TempDir sockets;
    std::string path = (sockets.path() / "api.sock").string();
    std::string config = "[service.probe]\nprotocol = \"unix\"\nlisten = [\"unix:" + path + "\"]\nprogram = \""
                         + probe_binary() + "\"\nsocket_mode = \"0660\"\n";
    Superd superd(config);
    // A user who can write to the folder puts a symlink to a file only root
    // may read in the socket's place; the reload asks for a wider mode.
    std::string target = sockets.write("shadow", "secret");
    REQUIRE(::chmod(target.c_str(), 0600) == 0);
    REQUIRE(::unlink(path.c_str()) == 0);
    REQUIRE(::symlink(target.c_str(), path.c_str()) == 0);
    std::string wider = config;
    wider.replace(wider.find("0660"), 4, "0666");
    superd.rewrite_config(wider);
    CHECK(superd.reload());
    struct stat st;
    REQUIRE(::stat(target.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(superd.wait_for_log("no longer a socket"));
    CHECK(superd.stop() == 0);
    REQUIRE(::lstat(path.c_str(), &st) == 0); // not ours to remove
    CHECK(S_ISLNK(st.st_mode));
}

TEST_CASE("A wait service gets the listening socket and superd stops watching it", "[kinds][integration]")
{
    uint16_t port = free_port();
    Superd superd("[service.waiter]\nlisten = [\"" + loopback(port) + "\"]\nmode = \"wait\"\nprogram = \""
                  + waiter_binary() + "\"\n");

    // The waiter's report, then the echo of what we send.
    UniqueFd first = connect_tcp(port);
    send_all(first.get(), "ping\n");
    ::shutdown(first.get(), SHUT_WR);
    std::string reply = read_to_eof(first.get());
    INFO(reply);
    CHECK_THAT(first_line(reply),
               Catch::Matches("waiter pid=\\d+ fd=0 listen_fds=unset listen_pid=unset names=unset blocking=yes"));
    CHECK_THAT(reply, Catch::EndsWith("\nping\n"));
    std::string first_pid = std::regex_replace(first_line(reply), std::regex(".*pid=(\\d+) .*"), "$1");

    // While a child holds the socket, a new client waits in the backlog: no
    // second child is spawned for it.
    UniqueFd held = connect_tcp(port);
    std::string held_report = first_line(read_n(held.get(), 20));
    UniqueFd queued = connect_tcp(port);
    superd.settle();
    CHECK(superd.count_in_log("spawned service=waiter") == 2);
    ::shutdown(held.get(), SHUT_WR);
    read_to_eof(held.get());
    ::shutdown(queued.get(), SHUT_WR);
    std::string later = read_to_eof(queued.get());
    CHECK_THAT(later, Catch::StartsWith("waiter pid="));
    CHECK(superd.settled_count("spawned service=waiter", 3) == 3);
    CHECK_THAT(later, !Catch::Contains("pid=" + first_pid + " "));
}

TEST_CASE("A wait child's end frees only its own socket, not one opened anew at its address", "[kinds][integration]")
{
    uint16_t port = free_port();
    std::string waiter = "[service.w]\nlisten = [\"" + loopback(port) + "\"]\nmode = \"wait\"\nprogram = \""
                         + waiter_binary() + "\"\nargs = [\"waiter\", \"linger\"]\n";
    std::string other = "[service.other]\nlisten = [\"" + loopback(free_port()) + "\"]\nbuiltin = \"echo\"\n";
    Superd superd(waiter + other);

    // The first child serves a client, closes the socket and lingers 2 s;
    // meanwhile reloads remove the service and add it back, on a new socket.
    UniqueFd first = connect_tcp(port);
    ::shutdown(first.get(), SHUT_WR);
    read_to_eof(first.get());
    superd.rewrite_config(other);
    REQUIRE(superd.reload());
    superd.rewrite_config(waiter + other);
    REQUIRE(superd.reload());

    // The new socket's child holds it, busy with a client that stays.
    UniqueFd second = connect_tcp(port);
    read_n(second.get(), 20);
    REQUIRE(superd.wait_for_log("exited service=w")); // the first child, gone
    // A client now waits in the backlog for the second child: superd must
    // not spawn a third while the second runs.
    UniqueFd third = connect_tcp(port);
    superd.settle();
    CHECK(superd.count_in_log("spawned service=w") == 2);

    ::shutdown(second.get(), SHUT_WR);
    read_to_eof(second.get());
    ::shutdown(third.get(), SHUT_WR);
    CHECK_THAT(read_to_eof(third.get(), 10s), Catch::StartsWith("waiter pid="));
    CHECK(superd.settled_count("spawned service=w", 3) == 3);
}

TEST_CASE("UDP wait services and the systemd fd convention", "[kinds][integration]")
{
    uint16_t udp = free_port(), tcp = free_port();
    Superd superd("[service.udp-waiter]\nprotocol = \"udp\"\nlisten = [\"" + loopback(udp)
                  + "\"]\nmode = \"wait\"\n"
                    "program = \""
                  + waiter_binary()
                  + "\"\n\n"
                    "[service.activated]\nlisten = [\""
                  + loopback(tcp)
                  + "\"]\nmode = \"wait\"\n"
                    "fd_convention = \"systemd\"\nprogram = \""
                  + waiter_binary() + "\"\n");

    std::string reply = udp_exchange(udp, "datagram", "127.0.0.1", 0, 5s);
    CHECK_THAT(reply, Catch::Matches(
                          "waiter pid=\\d+ fd=0 listen_fds=unset listen_pid=unset names=unset blocking=yes\ndatagram"));
    CHECK(superd.wait_for_log("exited service=udp-waiter"));
    CHECK_THAT(udp_exchange(udp, "again", "127.0.0.1", 0, 5s), Catch::EndsWith("\nagain"));

    UniqueFd fd = connect_tcp(tcp);
    ::shutdown(fd.get(), SHUT_WR);
    CHECK_THAT(first_line(read_to_eof(fd.get())),
               Catch::Matches("waiter pid=\\d+ fd=3 listen_fds=1 listen_pid=ok names=activated blocking=yes"));
}

TEST_CASE("A socket lent to a wait child is non-blocking again when superd serves it itself", "[kinds][integration]")
{
    // A wait child gets its socket blocking, which changes it for superd
    // too: after a reload makes it a builtin's, an accept or a read that
    // should find nothing more to take would wait, and superd with it.
    uint16_t tcp = free_port(), udp = free_port();
    auto waiters = [&] {
        return "[service.w]\nlisten = [\"" + loopback(tcp) + "\"]\nmode = \"wait\"\nprogram = \"" + waiter_binary()
               + "\"\n\n[service.uw]\nprotocol = \"udp\"\nlisten = [\"" + loopback(udp)
               + "\"]\nmode = \"wait\"\nprogram = \"" + waiter_binary() + "\"\n";
    };
    Superd superd(waiters());
    UniqueFd fd = connect_tcp(tcp);
    ::shutdown(fd.get(), SHUT_WR);
    CHECK_THAT(first_line(read_to_eof(fd.get())), Catch::EndsWith(" blocking=yes"));
    CHECK_THAT(udp_exchange(udp, "x", "127.0.0.1", 0, 5s), Catch::Contains(" blocking=yes\n"));
    REQUIRE(superd.wait_for_log("exited service=w"));
    REQUIRE(superd.wait_for_log("exited service=uw"));

    superd.rewrite_config("[service.w]\nlisten = [\"" + loopback(tcp)
                          + "\"]\nbuiltin = \"echo\"\n\n[service.uw]\n"
                            "protocol = \"udp\"\nlisten = [\""
                          + loopback(udp) + "\"]\nbuiltin = \"echo\"\n");
    REQUIRE(superd.reload());
    for (int i = 0; i < 3; ++i) {
        CHECK(round_trip(tcp, "ping\n") == "ping\n");
        CHECK(udp_exchange(udp, "dgram", "127.0.0.1", 0, 5s) == "dgram");
    }
    CHECK(superd.stop() == 0);
}

TEST_CASE("A wait service that exits at once is paced, never switched off", "[kinds][integration]")
{
    uint16_t port = free_port();
    // /bin/true never reads its datagram, so the socket stays readable.
    Superd superd("[service.spinner]\nprotocol = \"udp\"\nlisten = [\"" + loopback(port)
                  + "\"]\nmode = \"wait\"\nprogram = \"/bin/true\"\n");
    udp_exchange(port, "never read", "127.0.0.1", 0, 0ms);
    // Paced from the third exit in a row: the pace itself, and that a
    // spinner gets a few spawns in two seconds instead of thousands, are
    // checked in simulated time (test_limits.cpp).
    CHECK(superd.wait_for_log("paced service=spinner listen=127.0.0.1:" + std::to_string(port) + " exits_at_once=3 "));
    size_t spawned = superd.count_in_log("spawned service=spinner");
    INFO(superd.log());
    CHECK(spawned <= 10); // unpaced, a spawn takes about a millisecond: hundreds by now
    // Still trying, at the slower pace.
    CHECK(superd.wait_for_log("spawned service=spinner", spawned + 1, 15s));
    CHECK(superd.wait_for_log("paced service=spinner", 2, 15s));
}

TEST_CASE("A UDP wait program that reads its datagram and exits is never paced", "[kinds][integration]")
{
    // tftpd's way: one request per run, a run of a few milliseconds.
    uint16_t port = free_port();
    Superd superd("[service.once]\nprotocol = \"udp\"\nlisten = [\"" + loopback(port)
                  + "\"]\nmode = \"wait\"\n"
                    "program = \""
                  + waiter_binary() + "\"\n");
    for (int i = 0; i < 12; ++i) {
        std::string data = "request " + std::to_string(i);
        CHECK_THAT(udp_exchange(port, data, "127.0.0.1", 0, 5s), Catch::EndsWith("\n" + data));
        REQUIRE(superd.wait_for_log("exited service=once", static_cast<size_t>(i + 1)));
    }
    INFO(superd.log());
    CHECK(superd.count_in_log("paced service=once") == 0);
    // A wait service's lines name its socket, not a client.
    CHECK(superd.count_in_log("spawned service=once pid=") == 12);
    CHECK(superd.count_in_log(" listen=" + loopback(port) + " status=\"exit 0\"") == 12);
    CHECK(superd.count_in_log(" peer=") == 0);
}

TEST_CASE("A spawned program gets its user, groups, environment and process settings", "[kinds][integration]")
{
    if (::geteuid() != 0) {
        WARN("not run: switching users needs root");
        return;
    }
    ::setenv("SUPERD_TEST_PASSED", "passed through", 1);
    uint16_t port = free_port();
    Superd superd("[service.probe]\nlisten = [\"" + loopback(port) + "\"]\nprogram = \"" + probe_binary()
                  + "\"\nuser = \"nobody\"\ngroup = \"nogroup\"\nenv = { GREETING = \"hello\" }\n"
                    "pass_env = [\"SUPERD_TEST_PASSED\"]\ncwd = \"/tmp\"\numask = \"027\"\nnice = 5\n");
    ::unsetenv("SUPERD_TEST_PASSED");
    UniqueFd fd = connect_tcp(port);
    ::shutdown(fd.get(), SHUT_WR);
    std::string report = read_to_eof(fd.get());
    INFO(report);
    CHECK(lines_with_prefix(report, "uid: ") == std::vector<std::string>{"65534"});
    CHECK(lines_with_prefix(report, "gid: ") == std::vector<std::string>{"65534"});
    CHECK(lines_with_prefix(report, "groups: ") == std::vector<std::string>{"65534"});
    CHECK(lines_with_prefix(report, "cwd: ") == std::vector<std::string>{"/tmp"});
    CHECK(lines_with_prefix(report, "umask: ") == std::vector<std::string>{"0027"});
    CHECK(lines_with_prefix(report, "nice: ") == std::vector<std::string>{"5"});
    auto env = lines_with_prefix(report, "env: ");
    CHECK(std::count(env.begin(), env.end(), "GREETING=hello") == 1);
    CHECK(std::count(env.begin(), env.end(), "SUPERD_TEST_PASSED=passed through") == 1);
}

TEST_CASE("user.group runs with that group and the user's memberships, not its primary group", "[kinds][integration]")
{
    if (::geteuid() != 0) {
        WARN("not run: switching users needs root");
        return;
    }
    // This holds where daemon (primary group daemon) is listed as a member
    // of no group, as on Debian: then exactly mail, as the inetds give.
    auto members = run_command({"/usr/bin/getent", "group"});
    REQUIRE(members.status == 0);
    REQUIRE(std::regex_search(members.output, std::regex(R"(^daemon:x:1:$)", std::regex::multiline)));
    REQUIRE_FALSE(
        std::regex_search(members.output, std::regex(R"(:([^:\n]*,)?daemon(,[^\n]*)?$)", std::regex::multiline)));

    uint16_t toml = free_port(), inetd = free_port();
    TempDir files;
    StartOptions options;
    options.inetd_conf = files.write("inetd.conf", loopback(inetd) + " stream tcp nowait daemon.mail /usr/bin/id id\n");
    Superd superd("[service.id]\nlisten = [\"" + loopback(toml)
                      + "\"]\nprogram = \"/usr/bin/id\"\nuser = \"daemon\"\ngroup = \"mail\"\n",
                  options);
    for (uint16_t port : {toml, inetd}) {
        UniqueFd fd = connect_tcp(port);
        std::string report = read_to_eof(fd.get());
        INFO("port " << port);
        CHECK(report == "uid=1(daemon) gid=8(mail) groups=8(mail)\n");
    }
}

TEST_CASE("stderr goes to the socket, the log or nowhere, as configured", "[kinds][integration]")
{
    uint16_t to_socket = free_port(), to_log = free_port(), to_null = free_port();
    auto service = [](const std::string& name, uint16_t port, const std::string& target) {
        return "[service." + name + "]\nlisten = [\"" + loopback(port)
               + "\"]\nprogram = \"/bin/sh\"\nargs = [\"sh\", \"-c\", \"echo out; echo oops-" + name
               + " >&2; printf 'no newline' >&2\"]\nstderr = \"" + target + "\"\n\n";
    };
    Superd superd(service("s", to_socket, "socket") + service("l", to_log, "log") + service("n", to_null, "null"));

    CHECK(round_trip(to_socket, "") == "out\noops-s\nno newline");
    CHECK(round_trip(to_log, "") == "out\n");
    CHECK(round_trip(to_null, "") == "out\n");
    CHECK(superd.wait_for_log("line=\"no newline\""));
    CHECK_THAT(superd.log(), Catch::Matches("(.|\n)*stderr service=l pid=\\d+ line=\"oops-l\"(.|\n)*"));
    CHECK(superd.count_in_log("oops-n") == 0);
}

// Launcher: starts one service's program for one connection.
//
// Everything that does not depend on the connection is built once, when the
// service is loaded: argv and the fixed part of the environment. A spawn then
// writes the client's and server's addresses into preallocated slots and
// starts the child with a vfork-style clone (CLONE_VM | CLONE_VFORK, as musl's
// posix_spawn does): no page tables are copied, so its cost does not grow
// with the daemon's memory, and nothing is allocated.
//
// The child gets the connection on fds 0, 1 and 2 and no other descriptor,
// an empty signal mask, every signal at its default disposition, and a
// session of its own. Its environment is PATH plus the connection's addresses
// under systemd's names (REMOTE_ADDR, REMOTE_PORT) and UCSPI's (PROTO,
// TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP, TCPLOCALPORT).
//
// Why not glibc's posix_spawn: its child sets glibc's internal signals (32
// and 33) to SIG_IGN, which survives exec, so a service would start with
// signals ignored; and it cannot switch user or group, which services need.
//
// Not thread-safe: spawn() reuses the launcher's buffers.
#pragma once

#include "superd/address.h"

#include <sys/types.h>

#include <array>
#include <string>
#include <vector>

namespace superd {

struct SpawnResult {
    pid_t pid = -1;
    int error = 0; // an errno value when the spawn failed
};

class Launcher {
public:
    Launcher(std::string program, std::vector<std::string> args);
    Launcher(const Launcher&) = delete;
    Launcher& operator=(const Launcher&) = delete;

    // `connection` must not be 0, 1 or 2 (the daemon keeps those open).
    // A program that cannot be executed is reported here, as an error, and
    // leaves no child behind.
    SpawnResult spawn(int connection, const SocketAddress& peer, const SocketAddress& local);

    const std::string& program() const { return program_; }

private:
    // "NAME=value" in a fixed buffer: large enough for any numeric address.
    using EnvSlot = std::array<char, 96>;
    enum Slot { kRemoteAddr, kRemotePort, kTcpRemoteIp, kTcpRemotePort, kTcpLocalIp, kTcpLocalPort, kSlots };

    std::string program_;
    std::vector<std::string> args_;
    std::vector<char*> argv_;
    std::vector<std::string> fixed_env_;
    std::array<EnvSlot, kSlots> slots_{};
    std::vector<char*> envp_;
};

} // namespace superd

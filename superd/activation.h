// Activation: the listening sockets a service manager hands superd when it
// starts it (systemd's socket activation, sd_listen_fds(3)).
//
// A manager that holds superd's sockets (a superd.socket unit) starts it
// with them on fds 3 to 3+N-1 and LISTEN_FDS=N, LISTEN_PID=superd's pid and
// LISTEN_FDNAMES=name:name:... take_inherited_sockets() reads these and
// unsets them at once, so that no child ever sees them (pass_env included),
// asks the kernel what each fd is (family, kind, address, whether it
// listens), and keeps the sockets in an InheritedSockets; an fd that is not
// a socket is logged and closed.
//
// The daemon then takes, for each configured listen entry, the inherited
// socket of the same family, kind and address, instead of binding its own:
// the manager may hold ports superd could not bind, and connections waiting
// in a backlog survive superd's restart. A socket left at an address a
// service listens on with another kind (datagram for tcp, say) is a
// mismatch, an error that stops the start; one at an address no service
// uses is logged and closed. Sockets are taken only at start: one closed by
// a later reload is gone, since only the manager could hand it over again.
#pragma once

#include "superd/address.h"
#include "superd/fd.h"
#include "superd/listener.h"
#include "superd/result.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace superd {

// The first fd a manager passes (SD_LISTEN_FDS_START).
constexpr int kListenFdsStart = 3;

// What LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES say to process `self`.
struct ListenEnv {
    int count = 0;                     // fds kListenFdsStart .. +count-1 are ours
    std::vector<std::string> names;    // one per fd, or none
    std::vector<std::string> warnings; // what was ignored, and why
};
// Variables set for another process (LISTEN_PID is not `self`), or
// incomplete ones, are ignored with a warning, as sd_listen_fds() ignores
// them. LISTEN_PID naming `self` with a LISTEN_FDS that is not a count of at
// most `max_count` fds is an error: the manager meant to give superd sockets
// and superd cannot tell which. Null pointers are unset variables.
Result<ListenEnv> parse_listen_env(const char* pid, const char* fds, const char* names, pid_t self, int max_count);

// What the kernel says one socket is.
struct SocketInfo {
    int family = 0;         // AF_INET, AF_INET6, AF_UNIX, ...
    int type = 0;           // SOCK_STREAM, SOCK_DGRAM, ...
    int protocol = 0;       // SO_PROTOCOL: IPPROTO_TCP, IPPROTO_UDP, 0 for unix
    bool listening = false; // SO_ACCEPTCONN: a stream socket that listen() was called on
    SocketAddress address;  // getsockname()

    // The config's protocol of a socket of this kind, if superd serves it.
    std::optional<Protocol> kind() const;
    // "tcp", "udp", "unix" or what it is otherwise ("unix datagram").
    std::string kind_name() const;
};
// The error says why `fd` is no socket superd could serve (not open, not a
// socket, an unknown family).
Result<SocketInfo> describe_socket(int fd);

class InheritedSockets {
public:
    struct Socket {
        UniqueFd fd;
        int number = -1;  // the fd it came on, for the log
        std::string name; // from LISTEN_FDNAMES, or empty
        SocketInfo info;
    };

    InheritedSockets() = default;
    explicit InheritedSockets(std::vector<Socket> sockets) : sockets_(std::move(sockets)) {}

    // Describes fds `first` .. `first`+env.count-1; what is not a socket is
    // logged and closed.
    static InheritedSockets collect(int first, const ListenEnv& env);

    // The error names an inherited socket at an address one of `wanted`
    // listens on, that none of `wanted` can take: of another kind, or a
    // stream socket that does not listen.
    std::optional<Error> mismatch(const std::vector<SocketSpec>& wanted) const;
    // The listening socket of `spec`'s kind at its address, handed over and
    // logged; an empty UniqueFd when none was inherited.
    UniqueFd take(const SocketSpec& spec);
    // Logs and closes every socket nobody took.
    void close_rest();

    size_t size() const { return sockets_.size(); }
    // The sockets come from the superd this one replaces (upgrade.h): their
    // files were made by superd, with the configuration's mode and owner, so
    // that these are not applied is nothing to warn about. They are still
    // not removed on close, as the old superd cannot tell which it made.
    void from_upgrade() { from_upgrade_ = true; }

private:
    std::vector<Socket> sockets_;
    bool from_upgrade_ = false;
};

// Reads and unsets the LISTEN_* variables, logs what it ignores, and
// collects the inherited fds. The error: the variables were for superd but
// are malformed.
Result<InheritedSockets> take_inherited_sockets();

} // namespace superd

// The table of builtins: one row per service superd serves inside itself
// (`builtin = "NAME"`), with the functions that serve it and the properties
// that differ between them. The table is the only list of builtins: the
// configuration's name lookup and protocol check, inetd.conf's "internal"
// names and Builtins' dispatch all read it, and nothing switches on a kind.
// A new builtin is one row in builtin_table.cpp plus its functions in a file
// of its own.
//
// Rows are static and never change: a ServiceConfig points at one, and
// configurations, old and new, may share it. A row's functions are handed
// the service's configuration when a connection starts and with each
// datagram, never later: a reload frees the ServiceConfig while its
// connections live on, so a builtin copies into its stream what it needs.
//
// This header knows nothing of the event loop beyond a few names; Builtins
// (builtins.h) owns the streams and relays and calls the functions.
#pragma once

#include "superd/config.h"
#include "superd/fd.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>

struct bufferevent;
struct evbuffer;

namespace superd {

class PipePool;
class Relay;
struct Connection;

// Writes the daemon's metrics page (Daemon::metrics()) when asked, for the
// metrics builtin; empty where there is no daemon (tests of Builtins alone).
using MetricsSource = std::function<std::string()>;

// One TCP connection of a builtin, as its row's functions see it. Builtins
// owns it and its bufferevent; the functions may add to the output, take
// the input, turn reading and writing on and off, and set `closing`. They
// never close or free anything themselves.
struct BuiltinStream {
    const BuiltinKind& kind;
    bufferevent* bev;
    const MetricsSource& metrics; // Builtins' own, which outlives its streams
    uint64_t position = 0;        // where a generator has got to (chargen's next line)
    // The file queued in the output (file's), which libevent sends from
    // with sendfile(2), and its size when it was queued.
    UniqueFd file{};
    uint64_t file_size = 0;
    // Close once the output has drained: the builtin has said all it will
    // (daytime's line), or the client is done and is owed the rest.
    bool closing = false;
    // Set by start: the connection cannot be served (file's open failed),
    // and closes at once with this reason logged.
    std::optional<std::string> failure{};

    evbuffer* input() const;
    evbuffer* output() const;
};

struct BuiltinKind {
    std::string_view name; // builtin = "NAME"
    bool tcp = false;      // the protocols it serves
    bool udp = false;
    // inetd.conf may name it with "internal": it needs no settings, which
    // an inetd.conf line could not give.
    bool inetd_internal = false;

    // TCP. start: the connection is new (nothing has been read); a start
    // that sets `closing` with nothing queued closes it at once. on_input:
    // bytes have come in. on_drained: the output has all gone to the kernel
    // (and the stream is not closing).
    void (*start)(BuiltinStream&, const ServiceConfig&) = nullptr;
    void (*on_input)(BuiltinStream&) = nullptr;
    void (*on_drained)(BuiltinStream&) = nullptr;
    // A row that queues a file: the socket was writable, yet sendfile(2)
    // sent nothing (libevent reports it as an EOF while writing, and stops
    // writing). Why the connection must end (the file shrank), or nothing
    // when it was only the kernel's EAGAIN and writing goes on.
    std::optional<std::string> (*on_write_stalled)(BuiltinStream&) = nullptr;
    // At the client's EOF, what is in the output is owed and still goes out
    // before the FIN (echo's backlog, daytime's line); false: the stream has
    // no end (chargen), so the connection closes at once.
    bool owes_output = true;
    // How much a connection queues in superd before it stops reading (echo)
    // or refilling (chargen).
    size_t output_limit = 0;
    // SO_SNDBUF for a connection, 0 for the system's autotuning, which on a
    // fast path grows each never-reading client's buffer to megabytes.
    int send_buffer = 0;
    // A connection on which nothing moves either way for this long is
    // closed, so a client that connects and says nothing cannot hold it;
    // zero: never (the RFC services, whose clients may rightly stay quiet).
    std::chrono::milliseconds idle_timeout{0};
    // A connection whose output waits and has not moved for this long is
    // closed: its client has stopped reading (file's, whose clients rightly
    // send nothing). Zero: never. Ignored when idle_timeout is set.
    std::chrono::milliseconds stall_timeout{0};

    // TCP, in place of all the above: the connection is handed whole to a
    // Relay of the builtin's own (forward's splice relay), which owns its
    // fds and says how it ended. It copies what it needs from the
    // ServiceConfig, which a reload frees while the relay lives on, and
    // takes its pipes from the pool, which outlives it.
    std::unique_ptr<Relay> (*relay)(const ServiceConfig&, Connection&, PipePool&) = nullptr;

    // UDP: the reply to one datagram, or none.
    std::optional<std::string> (*datagram)(const ServiceConfig&, std::string_view request,
                                           std::mt19937& random) = nullptr;
    // The reply can be many times the request: answered over UDP only with
    // allow_amplification.
    bool amplifies = false;

    // The keys of [service.NAME] that this builtin alone takes (a file's
    // path, a backend's address); their rows in config_keys.cpp say how
    // they are read, and any other builtin refuses them.
    std::span<const std::string_view> settings = {};
};

// on_input for a builtin that wants no input: takes it and drops it.
void discard_input(BuiltinStream& s);

// Every builtin, in the order the README lists them.
std::span<const BuiltinKind> builtin_kinds();
// The builtin called `name`, or nullptr.
const BuiltinKind* find_builtin(std::string_view name);
// The builtins inetd.conf may name, for a message: "echo, discard, ... and time".
std::string inetd_internal_names();
// The builtins that take the setting `key`, quoted: "\"chargen\"", or
// "\"a\" or \"b\"".
std::string builtins_taking(std::string_view key);
// Why `kind` cannot serve `protocol`, or nullopt when it can.
std::optional<std::string> protocol_problem(const BuiltinKind& kind, Protocol protocol);

} // namespace superd

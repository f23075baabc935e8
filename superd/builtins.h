// Builtins: the small services of RFCs 862-868 (echo, discard, chargen,
// daytime, time), served inside superd on its event loop, with no process
// per connection, over TCP and UDP.
//
// They never block the daemon. A TCP connection is a bufferevent whose
// output is bounded: echo stops reading while 64 KiB wait to be sent, and
// chargen refills only when its output has drained, so a client that does
// not read stops the service, not superd.
//
// UDP builtins answer each datagram from the address it was sent to, and
// stay silent to sources on ports below 1024 and to broadcast or multicast
// traffic: two servers answering each other, or one datagram answered by a
// whole subnet, is how these services are turned into reflectors.
//
// Builtins owns every live connection and frees them all when destroyed,
// before the event base.
#pragma once

#include "superd/address.h"
#include "superd/config.h"
#include "superd/event.h"
#include "superd/fd.h"

#include <event2/bufferevent.h>
#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace superd {

// The protocol logic, free of sockets, so tests can check it byte for byte.
namespace rfc {

// Seconds since 1900-01-01 00:00 UTC, truncated to 32 bits (RFC 868).
uint32_t time_since_1900(int64_t unix_seconds);
// "Saturday, November 21, 2026 11:40:38-UTC\r\n" (RFC 867), local time.
std::string daytime(int64_t unix_seconds);
// Line `n` of chargen's rotating pattern: 72 of the 95 printable ASCII
// characters, starting one further each line, then CRLF (RFC 864).
std::string_view chargen_line(uint64_t n);

} // namespace rfc

class Builtins {
public:
    explicit Builtins(event_base* base);
    ~Builtins();
    Builtins(const Builtins&) = delete;
    Builtins& operator=(const Builtins&) = delete;

    // Takes over a TCP connection of `service`, which must be non-blocking;
    // `on_close` runs when it ends.
    void serve(Builtin kind, const std::string& service, UniqueFd connection, const SocketAddress& peer,
               std::function<void()> on_close);

    // Answers the datagrams waiting on the UDP socket `fd` whose source
    // `admit` lets through.
    void answer(Builtin kind, const std::string& service, int fd,
                const std::function<bool(const SocketAddress& source)>& admit);

    // Re-reads the interfaces' broadcast addresses (at start and on reload).
    void refresh_interfaces();

    size_t connections() const { return live_.size(); }

private:
    struct Connection;
    static void on_read(bufferevent*, void* ctx);
    static void on_write(bufferevent*, void* ctx);
    static void on_event(bufferevent*, short what, void* ctx);
    void close(Connection* c);
    bool silent_to(const SocketAddress& source, const SocketAddress& destination) const;

    event_base* base_;
    std::unordered_map<Connection*, std::unique_ptr<Connection>> live_;
    std::vector<in_addr_t> broadcasts_;
    std::mt19937 random_; // chargen's datagram lengths
};

} // namespace superd

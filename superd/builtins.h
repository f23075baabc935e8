// Builtins: the connections of the services superd serves inside itself
// (echo, discard, chargen, daytime, time, metrics, file, forward; the table
// in builtin_kind.h says which and how), on its event loop, with no process
// per connection, over TCP and UDP. This is the machinery; each builtin's
// row supplies what it does, and the service's configuration reaches those
// functions here.
//
// They never block the daemon. A TCP connection is a bufferevent whose
// output is bounded by its row: echo stops reading while 64 KiB wait to be
// sent, and chargen refills only when its output has drained, so a client
// that does not read stops the service, not superd. A row may cap the
// kernel send buffer too (chargen's): a thousand clients that never read
// would otherwise hold megabytes each of the system's TCP memory. A row with
// an idle timeout (metrics') has its connections closed when nothing has
// moved either way for that long: bufferevent timeouts, on the loop.
//
// A row with a relay (forward) is not a stream: its connection is handed
// whole to the relay the row makes, which owns its descriptors and moves the
// bytes itself; Builtins owns the relay and its ticket, and reports how it
// ended (a backend that refused is a refusal the daemon counts).
//
// A connection keeps a copy of its service's name and whatever its builtin
// copied at the start, never the ServiceConfig: a reload frees that while
// the connection lives on.
//
// UDP builtins answer each datagram from the address it was sent to. They
// must never serve as a reflector, an amplifier or one end of a loop, so
// they stay silent to (see datagram_refusal):
// - sources on ports below 1024, where the services that answer anything
//   live (echo 7, discard 9, daytime 13, chargen 19, time 37, DNS, NTP...);
// - sources on any port superd itself serves UDP on: a datagram spoofed from
//   our own echo port would be answered by us, to us, forever;
// - broadcast and multicast traffic, either way;
// and a builtin whose reply can dwarf the datagram (chargen: 512 bytes for
// an empty one) answers only a service that sets allow_amplification.
//
// Builtins owns every live connection, with the admission ticket that counts
// it, and hands the ticket back through its on_close hook when the
// connection ends. Destroyed, it frees the connections still open (before
// the event base) and their tickets end with them, unreported.
#pragma once

#include "superd/address.h"
#include "superd/admission.h"
#include "superd/builtin_kind.h"
#include "superd/config.h"
#include "superd/connection.h"
#include "superd/event.h"
#include "superd/fd.h"
#include "superd/pipe_pool.h"

#include <event2/bufferevent.h>
#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace superd {

// Why a UDP builtin must not answer a datagram from `source` sent to
// `destination` (AF_UNSPEC when unknown), as a word for the log, or nullptr
// when it may. `udp_ports`: every port superd serves UDP on; `broadcasts`:
// the interfaces' IPv4 broadcast addresses.
const char* datagram_refusal(const SocketAddress& source, const SocketAddress& destination,
                             std::span<const uint16_t> udp_ports, std::span<const in_addr_t> broadcasts);

class Builtins {
public:
    // A connection of service `service` from `peer` has ended; `ticket` is
    // what counted it. A relay's says how it ended (a refusal to count and
    // log, or nothing); a stream's is empty.
    using OnClose = std::function<void(const std::string& service, Admission::Ticket ticket, const SocketAddress& peer,
                                       const RelayEnd& end)>;

    // `metrics` writes the page the metrics builtin serves.
    explicit Builtins(event_base* base, OnClose on_close = nullptr, MetricsSource metrics = nullptr);
    ~Builtins();
    Builtins(const Builtins&) = delete;
    Builtins& operator=(const Builtins&) = delete;

    // Takes over a TCP connection of `service` (a builtin), which must be
    // non-blocking, with the ticket that counts it. `service` need outlive
    // only this call.
    void serve(const ServiceConfig& service, Connection& connection);

    // Answers the datagrams waiting on the UDP socket `fd` of `service` (a
    // builtin) that datagram_refusal and `admit` let through.
    void answer(const ServiceConfig& service, int fd, const std::function<bool(const SocketAddress& source)>& admit);

    // Re-reads the interfaces' broadcast addresses (at start and on reload).
    void refresh_interfaces();
    // The ports of all of superd's UDP sockets (at start and on reload).
    void set_udp_ports(std::vector<uint16_t> ports);

    size_t connections() const { return live_.size() + relays_.size(); }
    // Empty pipes kept for the next forward, two descriptors each.
    size_t pooled_pipes() const { return pipes_.size(); }

private:
    struct Stream;
    struct Relayed;
    static void on_read(bufferevent*, void* ctx);
    static void on_write(bufferevent*, void* ctx);
    static void on_event(bufferevent*, short what, void* ctx);
    void close(Stream* c);
    void relay(const ServiceConfig& service, Connection& connection);
    void relay_closed(Relay* relay, const RelayEnd& end);

    // The connection `service`, counted by `ticket`, has ended.
    void closed(const std::string& service, Admission::Ticket ticket, const SocketAddress& peer,
                const RelayEnd& end = {});

    event_base* base_;
    OnClose on_close_;
    MetricsSource metrics_;
    PipePool pipes_; // before the relays, which give theirs back when they end
    std::unordered_map<Stream*, std::unique_ptr<Stream>> live_;
    std::unordered_map<Relay*, std::unique_ptr<Relayed>> relays_;
    std::vector<in_addr_t> broadcasts_;
    std::vector<uint16_t> udp_ports_;
    std::mt19937 random_; // chargen's datagram lengths
};

} // namespace superd

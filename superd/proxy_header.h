// The PROXY protocol header (HAProxy's doc/proxy-protocol.txt), written and
// read as bytes only: no sockets, no event loop, so that `forward` (which
// writes a header to its backend) and a listener behind a load balancer
// (which reads one) share one tested encoding.
//
// Writing never allocates: the caller owns a fixed buffer, big enough for
// the longest header of its version, and gets back the part that was
// written. The header describes one connection's two ends, the peer
// (`src`) and the local address it reached (`dst`); when those are not a
// pair the version can carry, the header says so (v1 UNKNOWN, v2 LOCAL)
// rather than inventing an address.
//
// Reading is incremental, for a non-blocking socket where the header may
// arrive in pieces and the payload right behind it. parse_proxy_header()
// is handed every byte received so far and answers one of:
//   need N     the header is not complete, and is at least N bytes longer:
//              reading exactly N more can never take a byte of payload (of
//              a valid header; an invalid one closes the connection anyway);
//   invalid    the bytes cannot start a header this listener accepts
//              (`reason` is a short static text for the log): close;
//   done       `header.length` bytes are the header; what follows is payload.
// For v2, N is exact (16, then the length the header announces), so a v2
// listener reads exactly N each time and needs no peeking: two reads in
// the usual case.
// For v1 the header ends at its CRLF, so N is only a lower bound (at most
// one field ahead, down to 2 bytes for the CRLF); exact reads of N are
// correct but take several round trips. The recommended way for v1 (and
// for kAny) is to peek first:
//   1. recv(MSG_PEEK) up to kProxyPeekLength minus what is held;
//   2. parse what is held plus what was peeked;
//   3. done: read exactly header.length minus what is held (already in the
//      kernel's buffer, so that read is whole); need: every peeked byte is
//      header (the parser promises so), so read exactly those, keep them and
//      wait for the next read event. Consuming them matters: a peeked byte
//      left in the kernel's buffer keeps a level-triggered event firing.
// A v2 header longer than the peek (a unix pair, or TLVs) then continues
// with exact reads of N.
//
// The parser is strict, as the specification asks of a receiver: one space
// between v1 fields, ports without leading zeros, addresses that parse for
// the announced family, a CRLF within 107 bytes; v2 version 2, command
// LOCAL or PROXY, TLVs inside the announced length. Headers that carry no
// usable addresses (v1 UNKNOWN, v2 LOCAL, v2 PROXY over UDP or an
// unspecified family) are accepted as ProxyCommand::kLocal: the caller uses
// the connection's own endpoints.
#pragma once

#include "superd/address.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace superd {

// Which header, if any, a connection starts with.
enum class ProxyVersion { kNone, kV1, kV2 };

// The longest v1 line (UNKNOWN with two full IPv6 addresses and ports),
// CRLF included; a line without CRLF by then is invalid.
inline constexpr size_t kProxyV1MaxLength = 107;
// A v2 header's fixed part, which says how long the rest is.
inline constexpr size_t kProxyV2FixedLength = 16;
// What a receiver peeks at once: every v1 line, and the start of any v2.
inline constexpr size_t kProxyPeekLength = kProxyV1MaxLength;

// "PROXY TCP4 SRC DST SPORT DPORT\r\n" (TCP6 for IPv6, in inet_ntop's form,
// so an IPv4-mapped address stays IPv6), or "PROXY UNKNOWN\r\n" when the
// two are not both IPv4 or both IPv6. A view into `out`.
std::string_view write_proxy_v1(const SocketAddress& src, const SocketAddress& dst, std::array<char, 108>& out);

// The binary header with the PROXY command for a TCP4, TCP6 or unix stream
// pair, and no TLVs; any other pair gets the LOCAL command and no address.
// A view into `out`.
std::span<const uint8_t> write_proxy_v2(const SocketAddress& src, const SocketAddress& dst,
                                        std::array<uint8_t, 232>& out);

// Which versions a listener takes. kAny tells them apart by their first
// byte; a receiver must never guess whether a header is there at all.
enum class ProxyAccept { kV1, kV2, kAny };

// kProxy: `source` and `destination` are the client's connection as the
// proxy saw it. kLocal: the header carries no addresses to use.
enum class ProxyCommand { kLocal, kProxy };

struct ProxyHeader {
    ProxyCommand command = ProxyCommand::kLocal;
    SocketAddress source;      // set for kProxy only
    SocketAddress destination; // set for kProxy only
    size_t length = 0;         // bytes of header; the payload starts after them
    ProxyVersion version = ProxyVersion::kNone;
    // v2 TLVs PP2_TYPE_AUTHORITY (the client's host name, as in SNI; never a
    // control character) and PP2_TYPE_UNIQUE_ID (opaque bytes, at most
    // 128: escape them before logging). Other TLVs are skipped unchecked,
    // CRC32C included.
    std::optional<std::string> authority;
    std::optional<std::string> unique_id;
};

struct ProxyParse {
    enum class Status { kNeed, kInvalid, kDone };
    Status status = Status::kNeed;
    size_t need = 0;         // kNeed: at least 1, never past the header's end
    std::string_view reason; // kInvalid: static text, e.g. "bad signature"
    ProxyHeader header;      // kDone
};

// Parses the start of a connection; `bytes` is everything received so far.
ProxyParse parse_proxy_header(std::span<const uint8_t> bytes, ProxyAccept accept);

} // namespace superd

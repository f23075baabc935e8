// The small services of RFCs 862-868 (echo, discard, chargen, daytime,
// time): the protocol logic, free of sockets so tests can check it byte for
// byte, and the functions their rows in the builtin table (builtin_kind.h)
// serve them with, over TCP and UDP.
//
// None of them reads its service's configuration: they have no settings.
#pragma once

#include "superd/builtin_kind.h"

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace superd {

namespace rfc {

// Seconds since 1900-01-01 00:00 UTC, truncated to 32 bits (RFC 868).
uint32_t time_since_1900(int64_t unix_seconds);
// "Saturday, November 21, 2026 11:40:38-UTC\r\n" (RFC 867), local time.
std::string daytime(int64_t unix_seconds);
// Line `n` of chargen's rotating pattern: 72 of the 95 printable ASCII
// characters, starting one further each line, then CRLF (RFC 864).
std::string_view chargen_line(uint64_t n);

} // namespace rfc

// echo (RFC 862): what comes in goes back out, at most output_limit queued.
void echo_input(BuiltinStream& s);
void echo_drained(BuiltinStream& s);
std::optional<std::string> echo_datagram(const ServiceConfig&, std::string_view request, std::mt19937&);

// discard (RFC 863) takes the input (discard_input) and answers nothing.
std::optional<std::string> discard_datagram(const ServiceConfig&, std::string_view, std::mt19937&);

// chargen (RFC 864): an endless stream of lines, refilled up to
// output_limit each time the output drains.
void chargen_fill(BuiltinStream& s);
void chargen_fill_at_start(BuiltinStream& s, const ServiceConfig&);
std::optional<std::string> chargen_datagram(const ServiceConfig&, std::string_view, std::mt19937& random);

// daytime (RFC 867) and time (RFC 868): one line, or 4 bytes, then FIN.
void daytime_start(BuiltinStream& s, const ServiceConfig&);
std::optional<std::string> daytime_datagram(const ServiceConfig&, std::string_view, std::mt19937&);
void time_start(BuiltinStream& s, const ServiceConfig&);
std::optional<std::string> time_datagram(const ServiceConfig&, std::string_view, std::mt19937&);

} // namespace superd

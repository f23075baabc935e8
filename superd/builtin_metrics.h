// The metrics builtin: the daemon's metrics page (metrics.h,
// daemon_metrics.cpp) over HTTP/1.0 and 1.1, for Prometheus to scrape.
// Its row in the builtin table gives it TCP only and an idle timeout.
//
// It is the least of HTTP servers: one request a connection, then the
// connection closes once the response has drained ("Connection: close").
// The request head may take up to kMaxRequestHead bytes (431 past that) and
// must be well formed (400); GET and HEAD of /metrics, with any query,
// answer 200 with the page, any other path 404 and any other method on
// /metrics 405. A request body is never read: the connection closes after
// the response whatever the client still sends.
#pragma once

#include "superd/builtin_kind.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace superd {

namespace http {

inline constexpr size_t kMaxRequestHead = 8 * 1024;

// The whole response to the request whose head starts `received` (what has
// come in so far), with `page` asked for the page only when it is served;
// nullopt while the head is incomplete and within kMaxRequestHead.
std::optional<std::string> metrics_response(std::string_view received, const MetricsSource& page);

} // namespace http

// on_input: waits for the request's head, then answers it and closes.
void metrics_input(BuiltinStream& s);

} // namespace superd

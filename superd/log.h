// Logging: the one place that configures spdlog for the daemon.
//
// Everything logs through spdlog's default logger, which writes to stderr.
// libevent's own messages are routed here too, so nothing bypasses the log.
// Lifecycle lines share one shape: "EVENT service=NAME pid=PID peer=ADDR ..."
// with the fields always in that order, so they can be grepped and parsed.
#pragma once

#include "superd/address.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <optional>
#include <string_view>

namespace superd {

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Sets up the stderr logger at `level` and routes libevent's messages to it.
void init_logging(spdlog::level::level_enum level);

} // namespace superd

// Lets log lines print a SocketAddress ("127.0.0.1:7007", "[::1]:7007")
// without building a std::string for it.
template <>
struct fmt::formatter<superd::SocketAddress> : fmt::formatter<std::string_view> {
    template <typename FormatContext>
    auto format(const superd::SocketAddress& address, FormatContext& ctx) const
    {
        if (address.family() == AF_UNIX)
            return fmt::format_to(ctx.out(), "unix:{}", address.path());
        superd::HostText host;
        format_host(address, host);
        bool brackets = address.family() == AF_INET6 && std::strchr(host.data(), ':') != nullptr;
        if (brackets)
            return fmt::format_to(ctx.out(), "[{}]:{}", host.data(), address.port());
        return fmt::format_to(ctx.out(), "{}:{}", host.data(), address.port());
    }
};

// The builtin table: a row per builtin, the only place that lists them.
#include "superd/builtin_file.h"
#include "superd/builtin_kind.h"
#include "superd/builtin_metrics.h"
#include "superd/builtin_rfc.h"
#include "superd/forward.h"

#include <algorithm>
#include <vector>

namespace superd {

namespace {

constexpr std::string_view kChargenSettings[] = {"allow_amplification"};
constexpr std::string_view kFileSettings[] = {"path", "allow_amplification"};
constexpr std::string_view kForwardSettings[] = {"forward_to", "connect_timeout", "send_proxy"};

constexpr BuiltinKind kBuiltins[] = {
    {
        .name = "echo",
        .tcp = true,
        .udp = true,
        .inetd_internal = true,
        .on_input = echo_input,
        .on_drained = echo_drained,
        .output_limit = 64 * 1024,
        .datagram = echo_datagram,
    },
    {
        .name = "discard",
        .tcp = true,
        .udp = true,
        .inetd_internal = true,
        .on_input = discard_input,
        .datagram = discard_datagram,
    },
    {
        .name = "chargen",
        .tcp = true,
        .udp = true,
        .inetd_internal = true,
        .start = chargen_fill_at_start,
        .on_input = discard_input,
        .on_drained = chargen_fill,
        .owes_output = false,
        .output_limit = 16 * 1024,
        .send_buffer = 16 * 1024,
        .datagram = chargen_datagram,
        // Up to 512 bytes for an empty datagram. daytime's line (under 64
        // bytes) and time's 4 bytes are not amplifiers: with the 28 bytes of
        // headers every datagram carries, even an empty one, they reply at
        // most about 3 bytes for 1.
        .amplifies = true,
        .settings = kChargenSettings,
    },
    {
        .name = "daytime",
        .tcp = true,
        .udp = true,
        .inetd_internal = true,
        .start = daytime_start,
        .on_input = discard_input,
        .datagram = daytime_datagram,
    },
    {
        .name = "time",
        .tcp = true,
        .udp = true,
        .inetd_internal = true,
        .start = time_start,
        .on_input = discard_input,
        .datagram = time_datagram,
    },
    {
        // Prometheus scrapes over TCP; a scraper that connects and never
        // asks is dropped after the idle timeout.
        .name = "metrics",
        .tcp = true,
        .on_input = metrics_input,
        .idle_timeout = std::chrono::seconds(10),
    },
    {
        // No idle timeout: a client that only reads says nothing for the
        // whole transfer; one that stops reading for a minute is dropped.
        // Autotuned send buffers: sendfile(2) is as fast as the kernel's
        // buffer is large, and holds none of it in superd.
        .name = "file",
        .tcp = true,
        .udp = true,
        .start = file_start,
        .on_input = discard_input,
        .on_write_stalled = file_write_stalled,
        .stall_timeout = std::chrono::seconds(60),
        .datagram = file_datagram,
        .amplifies = true, // up to 512 bytes for an empty datagram
        .settings = kFileSettings,
    },
    {
        .name = "forward",
        .tcp = true,
        .relay = make_forward_relay,
        .settings = kForwardSettings,
    },
};

} // namespace

std::span<const BuiltinKind> builtin_kinds() { return kBuiltins; }

const BuiltinKind* find_builtin(std::string_view name)
{
    for (const BuiltinKind& kind : kBuiltins)
        if (kind.name == name)
            return &kind;
    return nullptr;
}

std::string inetd_internal_names()
{
    std::vector<std::string_view> names;
    for (const BuiltinKind& kind : kBuiltins)
        if (kind.inetd_internal)
            names.push_back(kind.name);
    std::string text;
    for (size_t i = 0; i < names.size(); ++i)
        text += std::string(i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + std::string(names[i]);
    return text;
}

std::string builtins_taking(std::string_view key)
{
    std::string text;
    for (const BuiltinKind& kind : kBuiltins)
        if (std::ranges::find(kind.settings, key) != kind.settings.end())
            text += std::string(text.empty() ? "\"" : " or \"") + std::string(kind.name) + "\"";
    return text;
}

std::optional<std::string> protocol_problem(const BuiltinKind& kind, Protocol protocol)
{
    if ((protocol == Protocol::kTcp && kind.tcp) || (protocol == Protocol::kUdp && kind.udp))
        return std::nullopt;
    if (kind.tcp && kind.udp)
        return "builtins serve TCP and UDP, not unix sockets";
    return "builtin '" + std::string(kind.name) + "' serves " + (kind.tcp ? "TCP" : "UDP") + " only";
}

} // namespace superd

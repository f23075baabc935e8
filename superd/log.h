// Logging: the one place that configures spdlog for the daemon.
//
// Everything logs through spdlog's default logger, which writes to stderr
// through a LogSink (log_sink.h) that never blocks the event loop: what
// stderr cannot take at once waits in a bounded queue, written from the
// event loop once the Daemon attaches it. libevent's own messages are
// routed here too, so nothing bypasses the log.
//
// Under systemd, when stderr is the journal, each line starts with its
// syslog priority instead of a timestamp ("<6>info ready ..."): journald
// reads the priority from it (sd-daemon(3)) and stamps the line itself.
//
// Lifecycle lines share one shape: "EVENT service=NAME pid=PID peer=ADDR ..."
// with the fields always in that order, so they can be grepped and parsed.
// A value that came from outside superd (a child's stderr, a unix socket's
// path) is printed through Escaped, so it can neither forge a field nor
// reach a terminal as a control sequence.
#pragma once

#include "superd/address.h"

#include <spdlog/spdlog.h>

#include <event2/event.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

// Every log call formats its line through this one function, which fmt 9
// compiles once (in libfmt, or in superd/log_impl.cpp) but does not declare
// so: without this each file that logs would compile all of fmt's
// formatting again (fmt 10 declares it itself).
#ifndef FMT_HEADER_ONLY
FMT_BEGIN_NAMESPACE
namespace detail {
extern template void vformat_to<char>(buffer<char>&, basic_string_view<char>, basic_format_args<buffer_context<char>>,
                                      locale_ref);
} // namespace detail
FMT_END_NAMESPACE
#endif

namespace superd {

class LogSink;

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// How a line looks: kPlain "2026-11-21T11:40:38.123 info ready ...",
// kJournal "<6>info ready ...".
enum class LogFormat { kPlain, kJournal };

// Whether `fd` is the journal's stream: `journal_stream` (systemd's
// $JOURNAL_STREAM, "DEVICE:INODE" in decimal) names its device and inode.
// Null, malformed or another file's: false.
bool is_journal_stream(int fd, const char* journal_stream);

// Sets up the stderr logger at `level` and routes libevent's messages to it.
void init_logging(spdlog::level::level_enum level);

// The logger init_logging installs (its name, format and level), writing
// to `sink`; tests give it a sink of their own.
std::shared_ptr<spdlog::logger> make_logger(std::shared_ptr<spdlog::sinks::sink> sink, spdlog::level::level_enum level,
                                            LogFormat format = LogFormat::kPlain);

// While a LogAttachment lives, what stderr could not take is written from
// `base` as stderr becomes writable. Destroy it before `base` is freed;
// until then (and without one) queued lines wait, and are written, within
// a bounded time, when superd exits.
class LogAttachment {
public:
    LogAttachment() = default;
    explicit LogAttachment(std::shared_ptr<LogSink> sink) : sink_(std::move(sink)) {}
    ~LogAttachment();
    LogAttachment(LogAttachment&&) noexcept = default;
    LogAttachment& operator=(LogAttachment&& other) noexcept;
    LogAttachment(const LogAttachment&) = delete;
    LogAttachment& operator=(const LogAttachment&) = delete;

private:
    std::shared_ptr<LogSink> sink_;
};
LogAttachment attach_logging(event_base* base);

// Text from outside superd, to be printed escaped: `"` and `\` get a
// backslash; \r, \n and \t are written so; every other control byte, DEL and
// every byte >= 0x80 as \xNN. The log stays printable ASCII whatever a
// child writes: no forged quote or line, no terminal escape, no invalid or
// bidi-reordering UTF-8; non-ASCII text reads as its bytes (caf\xc3\xa9),
// which loses nothing.
struct Escaped {
    std::string_view text;
};

// The escape for byte `c` into `out` (at most 4 chars); 0 if it stays as is.
constexpr size_t escape_byte(unsigned char c, char* out)
{
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
        return 0;
    out[0] = '\\';
    switch (c) {
    case '"':
    case '\\':
        out[1] = static_cast<char>(c);
        return 2;
    case '\r':
        out[1] = 'r';
        return 2;
    case '\n':
        out[1] = 'n';
        return 2;
    case '\t':
        out[1] = 't';
        return 2;
    default:
        out[1] = 'x';
        out[2] = "0123456789abcdef"[c >> 4];
        out[3] = "0123456789abcdef"[c & 0xf];
        return 4;
    }
}

} // namespace superd

// Writes runs of plain bytes at once and escapes the rest, without
// building a std::string.
template <>
struct fmt::formatter<superd::Escaped> : fmt::formatter<std::string_view> {
    template <typename FormatContext>
    auto format(superd::Escaped escaped, FormatContext& ctx) const
    {
        auto out = ctx.out();
        std::string_view text = escaped.text;
        size_t run = 0; // start of the bytes not yet written
        char escape[4];
        for (size_t i = 0; i < text.size(); ++i) {
            size_t n = superd::escape_byte(static_cast<unsigned char>(text[i]), escape);
            if (n == 0)
                continue;
            out = std::copy(text.data() + run, text.data() + i, out);
            out = std::copy(escape, escape + n, out);
            run = i + 1;
        }
        return std::copy(text.data() + run, text.data() + text.size(), out);
    }
};

// Lets log lines print a SocketAddress ("127.0.0.1:7007", "[::1]:7007")
// without building a std::string for it. A unix socket's path is escaped:
// whoever binds a socket chooses its name.
template <>
struct fmt::formatter<superd::SocketAddress> : fmt::formatter<std::string_view> {
    template <typename FormatContext>
    auto format(const superd::SocketAddress& address, FormatContext& ctx) const
    {
        if (address.family() == AF_UNIX)
            return fmt::format_to(ctx.out(), "unix:{}", superd::Escaped{address.path()});
        superd::HostText host;
        format_host(address, host);
        bool brackets = address.family() == AF_INET6 && std::strchr(host.data(), ':') != nullptr;
        if (brackets)
            return fmt::format_to(ctx.out(), "[{}]:{}", host.data(), address.port());
        return fmt::format_to(ctx.out(), "{}:{}", host.data(), address.port());
    }
};

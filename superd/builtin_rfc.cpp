#include "superd/builtin_rfc.h"

#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <array>
#include <ctime>

namespace superd {

namespace rfc {

uint32_t time_since_1900(int64_t unix_seconds)
{
    // 70 years, 17 of them leap years.
    constexpr int64_t kFrom1900To1970 = 2208988800;
    return static_cast<uint32_t>(static_cast<uint64_t>(unix_seconds + kFrom1900To1970));
}

std::string daytime(int64_t unix_seconds)
{
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm local{};
    char line[128];
    if (!::localtime_r(&t, &local) || std::strftime(line, sizeof line, "%A, %B %d, %Y %H:%M:%S-%Z\r\n", &local) == 0)
        return "unknown\r\n";
    return line;
}

std::string_view chargen_line(uint64_t n)
{
    constexpr size_t kPrintable = 95, kWidth = 72;
    // The pattern twice over, so any line is one contiguous slice of it.
    static const std::string pattern = [] {
        std::string p;
        for (size_t i = 0; i < 2 * kPrintable; ++i)
            p.push_back(static_cast<char>(' ' + i % kPrintable));
        return p;
    }();
    static const std::array<std::string, kPrintable> lines = [] {
        std::array<std::string, kPrintable> all;
        for (size_t i = 0; i < kPrintable; ++i)
            all[i] = pattern.substr(i, kWidth) + "\r\n";
        return all;
    }();
    return lines[n % kPrintable];
}

} // namespace rfc

namespace {

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

std::string time_bytes()
{
    uint32_t t = htonl(rfc::time_since_1900(now_seconds()));
    return std::string(reinterpret_cast<const char*>(&t), sizeof t);
}

} // namespace

void echo_input(BuiltinStream& s)
{
    evbuffer_add_buffer(s.output(), s.input());
    bufferevent_enable(s.bev, EV_WRITE);
    if (evbuffer_get_length(s.output()) >= s.kind.output_limit)
        bufferevent_disable(s.bev, EV_READ); // until the client reads
}

void echo_drained(BuiltinStream& s) { bufferevent_enable(s.bev, EV_READ); }

std::optional<std::string> echo_datagram(const ServiceConfig&, std::string_view request, std::mt19937&)
{
    return std::string(request); // never more than came in
}

std::optional<std::string> discard_datagram(const ServiceConfig&, std::string_view, std::mt19937&)
{
    return std::nullopt;
}

void chargen_fill(BuiltinStream& s)
{
    while (evbuffer_get_length(s.output()) < s.kind.output_limit) {
        std::string_view line = rfc::chargen_line(s.position++);
        evbuffer_add(s.output(), line.data(), line.size());
    }
}

void chargen_fill_at_start(BuiltinStream& s, const ServiceConfig&) { chargen_fill(s); }

std::optional<std::string> chargen_datagram(const ServiceConfig&, std::string_view, std::mt19937& random)
{
    // RFC 864: a datagram of a random length from 0 to 512 characters.
    size_t length = std::uniform_int_distribution<size_t>(0, 512)(random);
    std::string reply;
    for (uint64_t line = random(); reply.size() < length; ++line)
        reply.append(rfc::chargen_line(line));
    reply.resize(length);
    return reply;
}

void daytime_start(BuiltinStream& s, const ServiceConfig&)
{
    std::string line = rfc::daytime(now_seconds());
    evbuffer_add(s.output(), line.data(), line.size());
    s.closing = true;
}

std::optional<std::string> daytime_datagram(const ServiceConfig&, std::string_view, std::mt19937&)
{
    return rfc::daytime(now_seconds());
}

void time_start(BuiltinStream& s, const ServiceConfig&)
{
    std::string t = time_bytes();
    evbuffer_add(s.output(), t.data(), t.size());
    s.closing = true;
}

std::optional<std::string> time_datagram(const ServiceConfig&, std::string_view, std::mt19937&) { return time_bytes(); }

} // namespace superd

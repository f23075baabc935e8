#include "superd/builtin_metrics.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace superd {

namespace http {

namespace {

constexpr std::string_view kPageType = "text/plain; version=0.0.4; charset=utf-8";

std::string response(std::string_view status, std::string_view type, std::string_view body, bool with_body,
                     std::string_view extra_header = {})
{
    std::string text =
        fmt::format("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n", status,
                    type, body.size(), extra_header);
    if (with_body)
        text += body;
    return text;
}

std::string error(std::string_view status, std::string_view extra_header = {})
{
    return response(status, "text/plain; charset=utf-8", std::string(status) + "\n", true, extra_header);
}

// RFC 9110's token characters, which a method and a header's name are made of.
bool is_token(std::string_view text)
{
    return !text.empty() && std::ranges::all_of(text, [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
               || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

// Splits the next line off `text` (CRLF, or a bare LF as RFC 9112 lets a
// server accept); nullopt when no line end has come yet.
std::optional<std::string_view> next_line(std::string_view& text)
{
    size_t end = text.find('\n');
    if (end == std::string_view::npos)
        return std::nullopt;
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (line.ends_with('\r'))
        line.remove_suffix(1);
    return line;
}

} // namespace

std::optional<std::string> metrics_response(std::string_view received, const MetricsSource& page)
{
    std::string_view head = received.substr(0, kMaxRequestHead);
    // Empty lines before the request line are ignored (RFC 9112, 2.2).
    std::optional<std::string_view> request_line;
    while ((request_line = next_line(head)) && request_line->empty()) {
    }
    std::vector<std::string_view> fields;
    bool complete = false;
    if (request_line)
        while (auto line = next_line(head)) {
            if (line->empty()) {
                complete = true;
                break;
            }
            fields.push_back(*line);
        }
    if (!complete)
        return received.size() >= kMaxRequestHead ? std::optional(error("431 Request Header Fields Too Large"))
                                                  : std::nullopt;

    // METHOD SP TARGET SP HTTP/1.x
    std::string_view line = *request_line;
    size_t first = line.find(' '), second = line.rfind(' ');
    if (first == std::string_view::npos || first == second)
        return error("400 Bad Request");
    std::string_view method = line.substr(0, first);
    std::string_view target = line.substr(first + 1, second - first - 1);
    std::string_view version = line.substr(second + 1);
    if (!is_token(method) || target.empty() || target.find(' ') != std::string_view::npos
        || (version != "HTTP/1.0" && version != "HTTP/1.1"))
        return error("400 Bad Request");
    for (std::string_view field : fields) {
        size_t colon = field.find(':');
        if (colon == std::string_view::npos || !is_token(field.substr(0, colon)))
            return error("400 Bad Request");
    }

    std::string_view path = target.substr(0, target.find('?'));
    if (path != "/metrics")
        return error("404 Not Found");
    bool head_only = method == "HEAD";
    if (method != "GET" && !head_only)
        return error("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
    if (!page)
        return error("503 Service Unavailable");
    return response("200 OK", kPageType, page(), !head_only);
}

} // namespace http

void metrics_input(BuiltinStream& s)
{
    evbuffer* in = s.input();
    // Answered: whatever else comes in is dropped until the output has gone.
    if (s.closing) {
        discard_input(s);
        return;
    }
    size_t length = std::min(evbuffer_get_length(in), http::kMaxRequestHead);
    auto* data = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(length)));
    auto reply = http::metrics_response(std::string_view(data, length), s.metrics);
    if (!reply)
        return;
    discard_input(s);
    evbuffer_add(s.output(), reply->data(), reply->size());
    s.closing = true;
    bufferevent_enable(s.bev, EV_WRITE);
}

} // namespace superd

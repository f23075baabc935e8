#include "superd/proxy_stage.h"

#include "superd/event.h"

#include <sys/socket.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace superd {

namespace {

// v2's length field is 16 bits: no header is longer than this.
constexpr size_t kMaxHeader = kProxyV2FixedLength + 0xffff;

// Opaque bytes (a unique id) as one printable line: \xHH for the rest.
std::string printable(std::string_view bytes)
{
    std::string text;
    for (char c : bytes) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f || c == '\\')
            text += fmt::format("\\x{:02x}", byte);
        else
            text += c;
    }
    return text;
}

// Reads one connection's header. The connection stays in the pipeline's
// flight until `done`, so holding a reference to it is safe.
class HeaderRun final : public Stage::Run {
public:
    HeaderRun(event_base* base, Connection& connection, ProxyAccept accept, Stage::Done done)
        : connection_(connection), accept_(accept), done_(std::move(done)),
          readable_(event_new(base, connection.fd.get(), EV_READ | EV_PERSIST, on_readable, this))
    {
    }

    // Reads what has come; calls done() once the header is whole or wrong.
    void read()
    {
        for (;;) {
            // Peek: the parser says how much of what is there is header,
            // and only that much is then taken from the socket.
            std::array<uint8_t, kProxyPeekLength> peeked;
            size_t room = held_.size() < kProxyPeekLength ? kProxyPeekLength - held_.size() : 0;
            // Past the peek's length only a v2 header goes on, whose parse
            // says exactly how much is left: read that much, no more.
            if (room == 0) {
                ProxyParse parse = parse_proxy_header(held_, accept_);
                if (parse.status != ProxyParse::Status::kNeed) {
                    finish(parse);
                    return;
                }
                room = std::min(parse.need, peeked.size());
                if (!take(peeked.data(), room))
                    return;
                continue;
            }
            ssize_t n = ::recv(connection_.fd.get(), peeked.data(), room, MSG_PEEK | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                event_add(readable_.get(), nullptr);
                return;
            }
            if (n <= 0) {
                fail(n == 0 ? "the connection closed before the header ended"
                            : std::string("recv: ") + std::strerror(errno));
                return;
            }
            std::vector<uint8_t> seen = held_;
            seen.insert(seen.end(), peeked.begin(), peeked.begin() + n);
            ProxyParse parse = parse_proxy_header(seen, accept_);
            if (parse.status == ProxyParse::Status::kInvalid) {
                fail(std::string(parse.reason));
                return;
            }
            // Whole: take exactly its bytes, which are in the socket now.
            // Not yet: every byte peeked is header (the parser promises so).
            size_t header =
                parse.status == ProxyParse::Status::kDone ? parse.header.length - held_.size() : static_cast<size_t>(n);
            if (!take(peeked.data(), header))
                return;
            if (parse.status == ProxyParse::Status::kDone) {
                finish(parse);
                return;
            }
            if (static_cast<size_t>(n) < room) {
                event_add(readable_.get(), nullptr);
                return; // all there was: the rest comes with the next read event
            }
        }
    }

private:
    static void on_readable(evutil_socket_t, short, void* self) { static_cast<HeaderRun*>(self)->read(); }

    // Takes `n` bytes that are known to be waiting into held_.
    bool take(uint8_t* into, size_t n)
    {
        if (held_.size() + n > kMaxHeader) {
            fail("header too long");
            return false;
        }
        size_t got = 0;
        while (got < n) {
            ssize_t r = ::recv(connection_.fd.get(), into + got, n - got, MSG_DONTWAIT);
            if (r > 0) {
                got += static_cast<size_t>(r);
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else if (r < 0 && errno == EAGAIN) {
                break; // a v2 remainder still on its way
            } else {
                fail(r == 0 ? "the connection closed before the header ended"
                            : std::string("recv: ") + std::strerror(errno));
                return false;
            }
        }
        held_.insert(held_.end(), into, into + got);
        if (got < n)
            event_add(readable_.get(), nullptr);
        return got == n;
    }

    void finish(const ProxyParse& parse)
    {
        if (parse.status == ProxyParse::Status::kInvalid) {
            fail(std::string(parse.reason));
            return;
        }
        apply_proxy_header(parse.header, connection_);
        Stage::finish(done_, std::nullopt); // may destroy `this`
    }

    void fail(std::string reason) { Stage::finish(done_, std::move(reason)); }

    Connection& connection_;
    ProxyAccept accept_;
    Stage::Done done_;
    Event readable_;
    std::vector<uint8_t> held_; // the header's bytes taken so far
};

} // namespace

std::unique_ptr<Stage::Run> ProxyStage::start(event_base* base, Connection& connection, Done done)
{
    auto run = std::make_unique<HeaderRun>(base, connection, accept_, std::move(done));
    run->read(); // a done() from here is taken up by the pipeline when start() returns
    return run;
}

void apply_proxy_header(const ProxyHeader& header, Connection& connection)
{
    HostText host;
    PortText port;
    format_host(connection.peer, host);
    format_port(connection.peer, port);
    connection.environment.push_back(std::string("PROXY_ADDR=") + host.data());
    connection.environment.push_back(std::string("PROXY_PORT=") + port.data());
    if (header.authority)
        connection.environment.push_back("PROXY_AUTHORITY=" + printable(*header.authority));
    if (header.unique_id)
        connection.environment.push_back("PROXY_UNIQUE_ID=" + printable(*header.unique_id));
    if (header.command != ProxyCommand::kProxy) {
        connection.balancer_own = true; // health checks and the like
        return;
    }
    connection.peer = header.source;
    connection.local = header.destination;
    connection.shown = header.source;
}

} // namespace superd

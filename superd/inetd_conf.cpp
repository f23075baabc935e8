#include "superd/inetd_conf.h"

#include "superd/builtin_kind.h"
#include "superd/identity.h"
#include "superd/limits.h"
#include "superd/trust.h"

#include <netdb.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

namespace superd {

namespace {

struct Variant {
    std::string_view name;
    Protocol protocol;
    bool ipv4, ipv6;
};

constexpr Variant kVariants[] = {
    {"tcp", Protocol::kTcp, true, false},    {"tcp4", Protocol::kTcp, true, false},
    {"tcp6", Protocol::kTcp, false, true},   {"tcp46", Protocol::kTcp, true, true},
    {"udp", Protocol::kUdp, true, false},    {"udp4", Protocol::kUdp, true, false},
    {"udp6", Protocol::kUdp, false, true},   {"udp46", Protocol::kUdp, true, true},
    {"unix", Protocol::kUnix, false, false},
};

// A port number or a name from /etc/services.
std::optional<uint16_t> port_of(const std::string& service, Protocol protocol)
{
    unsigned value = 0;
    auto [end, ec] = std::from_chars(service.data(), service.data() + service.size(), value);
    if (ec == std::errc() && end == service.data() + service.size())
        return value >= 1 && value <= 65535 ? std::optional<uint16_t>(static_cast<uint16_t>(value)) : std::nullopt;
    const servent* entry = ::getservbyname(service.c_str(), protocol == Protocol::kUdp ? "udp" : "tcp");
    if (!entry)
        return std::nullopt;
    return ntohs(static_cast<uint16_t>(entry->s_port));
}

std::string sanitized(std::string_view text)
{
    std::string out;
    for (char c : text) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        out.push_back(ok ? c : '_');
    }
    return out.substr(0, 48);
}

class LineReader {
public:
    LineReader(const std::string& path, int line, std::vector<std::string> fields)
        : path_(path), line_(line), fields_(std::move(fields))
    {
    }

    Error error(const std::string& message) const
    {
        return Error{path_ + ":" + std::to_string(line_) + ": " + message};
    }

    Result<ServiceConfig> read(const std::string& default_host)
    {
        if (fields_.size() < 6)
            return error("expected: service socket-type protocol wait|nowait user server [args...]");
        ServiceConfig config;
        config.file = path_;
        config.line = line_;

        const Variant* variant = nullptr;
        for (const Variant& v : kVariants)
            if (fields_[2] == v.name)
                variant = &v;
        if (!variant) {
            if (fields_[2].rfind("rpc/", 0) == 0)
                return error("RPC services are not supported");
            return error("unknown protocol '" + fields_[2] + "'");
        }
        config.protocol = variant->protocol;
        const std::string& type = fields_[1];
        bool want_stream = config.protocol != Protocol::kUdp;
        if (type != "stream" && type != "dgram")
            return error("socket type '" + type + "' is not supported (stream or dgram)");
        if ((type == "stream") != want_stream)
            return error("socket type " + type + " does not go with protocol " + fields_[2]);

        if (auto e = read_listen(*variant, default_host, config))
            return *e;
        if (auto e = read_server(config))
            return *e;
        return config;
    }

private:
    std::optional<Error> read_listen(const Variant& variant, const std::string& default_host, ServiceConfig& config)
    {
        std::string service = fields_[0];
        if (config.protocol == Protocol::kUnix) {
            auto addresses = parse_listen_address("unix:" + service);
            if (!addresses)
                return error(addresses.error());
            config.name = "unix-" + sanitized(std::filesystem::path(service).filename().string());
            config.listen.push_back({service, addresses->front(), line_});
            return std::nullopt;
        }

        std::string host = default_host;
        if (size_t colon = service.rfind(':'); colon != std::string::npos) {
            host = service.substr(0, colon);
            service = service.substr(colon + 1);
            if (host == "*")
                host.clear();
            if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
                host = host.substr(1, host.size() - 2);
        }
        auto port = port_of(service, config.protocol);
        if (!port)
            return error("unknown service '" + service + "' (not a port number, nor in /etc/services for "
                         + to_string(config.protocol) + ")");
        config.name = sanitized(service) + "-" + fields_[2];

        std::vector<std::string> texts;
        std::string p = std::to_string(*port);
        if (!host.empty()) {
            bool v6 = host.find(':') != std::string::npos;
            if ((v6 && !variant.ipv6) || (!v6 && !variant.ipv4))
                return error("address " + host + " does not fit protocol " + fields_[2]);
            texts.push_back(v6 ? "[" + host + "]:" + p : host + ":" + p);
        } else {
            if (variant.ipv4)
                texts.push_back("0.0.0.0:" + p);
            if (variant.ipv6)
                texts.push_back("[::]:" + p);
        }
        for (const std::string& text : texts) {
            auto addresses = parse_listen_address(text);
            if (!addresses)
                return error(addresses.error());
            config.listen.push_back({text, addresses->front(), line_});
        }
        return std::nullopt;
    }

    std::optional<Error> read_server(ServiceConfig& config)
    {
        std::string wait = fields_[3];
        if (wait.find('/') != std::string::npos)
            return error("'" + wait
                         + "': FreeBSD's wait/max-child/... form is not supported; use the TOML "
                           "config for limits");
        if (size_t dot = wait.find('.'); dot != std::string::npos) {
            std::string max = wait.substr(dot + 1);
            wait = wait.substr(0, dot);
            unsigned value = 0;
            auto [end, ec] = std::from_chars(max.data(), max.data() + max.size(), value);
            if (max.empty() || (ec != std::errc() && ec != std::errc::result_out_of_range)
                || end != max.data() + max.size())
                return error("'" + fields_[3] + "': the number after the dot must be a whole number");
            if (value == 0 || ec == std::errc::result_out_of_range || value > kMaxBurst)
                return error("'" + fields_[3] + "': the number after the dot must be between 1 and "
                             + std::to_string(kMaxBurst));
            // OpenBSD: at most N spawns a minute. Over it, superd delays
            // instead of switching the service off for ten minutes.
            config.rate = value / 60.0;
            config.burst = value;
        }
        if (wait != "wait" && wait != "nowait")
            return error("expected wait or nowait, not '" + wait + "'");
        config.mode = wait == "wait" ? Mode::kWait : Mode::kNowait;

        const std::string& server = fields_[5];
        if (server == "internal") {
            std::string service =
                fields_[0].substr(fields_[0].rfind(':') == std::string::npos ? 0 : fields_[0].rfind(':') + 1);
            const BuiltinKind* builtin = find_builtin(service);
            if (!builtin || !builtin->inetd_internal)
                return error("there is no internal service '" + service + "' (" + inetd_internal_names() + " are)");
            if (protocol_problem(*builtin, config.protocol))
                return error("internal services serve TCP and UDP, not unix sockets");
            config.builtin = builtin;
            config.mode = Mode::kNowait;
            return std::nullopt;
        }
        if (config.protocol == Protocol::kUdp && config.mode == Mode::kNowait)
            return error("a UDP service must be 'wait' (it reads the datagrams itself), unless it is internal");
        if (server.empty() || server[0] != '/')
            return error("server '" + server + "' must be an absolute path or 'internal'");
        if (auto problem = program_problem(server))
            return error(*problem);
        config.program = server;
        config.args.assign(fields_.begin() + 6, fields_.end());
        if (config.args.empty())
            config.args.push_back(std::filesystem::path(server).filename().string());
        config.env.push_back(kDefaultPath);

        std::string user = fields_[4], group;
        size_t split = user.find(':');
        if (split == std::string::npos)
            split = user.rfind('.');
        if (split != std::string::npos) {
            group = user.substr(split + 1);
            user = user.substr(0, split);
        }
        auto identity = resolve_identity(user, group);
        if (!identity)
            return error(identity.error());
        config.identity = std::move(identity.value());
        return std::nullopt;
    }

    const std::string& path_;
    int line_;
    std::vector<std::string> fields_;
};

// Removes the first line (without its newline) from `text` and returns it.
std::string_view take_line(std::string_view& text)
{
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    return line;
}

// The whitespace-separated words of a line, as inetd splits its fields.
std::vector<std::string> split_words(std::string_view line)
{
    constexpr std::string_view kBlank = " \t\r\v\f";
    std::vector<std::string> words;
    for (size_t at = line.find_first_not_of(kBlank); at != std::string_view::npos;) {
        size_t end = line.find_first_of(kBlank, at);
        words.emplace_back(line.substr(at, end - at));
        at = line.find_first_not_of(kBlank, end);
    }
    return words;
}

} // namespace

Result<std::vector<ServiceConfig>> parse_inetd_conf(std::string_view text, const std::string& path)
{
    std::vector<ServiceConfig> out;
    std::string default_host;
    for (int line = 1; !text.empty(); ++line) {
        std::vector<std::string> fields = split_words(take_line(text));
        if (fields.empty() || fields[0][0] == '#')
            continue;
        if (fields.size() == 1 && fields[0].back() == ':') {
            default_host = fields[0].substr(0, fields[0].size() - 1);
            if (default_host == "*")
                default_host.clear();
            continue;
        }
        LineReader reader(path, line, std::move(fields));
        auto service = reader.read(default_host);
        if (!service)
            return Error{service.error()};
        bool taken =
            std::any_of(out.begin(), out.end(), [&](const ServiceConfig& s) { return s.name == service->name; });
        if (taken)
            service->name += "-L" + std::to_string(line);
        out.push_back(std::move(*service));
    }
    return out;
}

} // namespace superd

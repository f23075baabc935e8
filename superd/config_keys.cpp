#include "superd/config_keys.h"

#include "superd/builtin_file.h"
#include "superd/builtin_kind.h"

#include "superd/identity.h"
#include "superd/tls.h"
#include "superd/trust.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <utility>
#include <vector>

namespace superd {

namespace fs = std::filesystem;

Source Source::of(const std::string& path) { return Source{path, fs::absolute(fs::path(path)).parent_path()}; }

Error Source::at(int line, const std::string& message) const
{
    return Error{path + ":" + std::to_string(line) + ": " + message};
}

Error Source::at(const toml::key& key, const std::string& message) const
{
    return at(static_cast<int>(key.source().begin.line), message);
}

std::string Source::absolute(const std::string& p) const
{
    fs::path result(p);
    if (result.is_relative())
        result = folder / result;
    return result.lexically_normal().string();
}

namespace {

// Set by superd for each connection; a service cannot set them itself.
constexpr std::string_view kReservedEnv[] = {
    "REMOTE_ADDR",    "REMOTE_PORT",   "PROTO",          "TCPREMOTEIP",     "TCPREMOTEPORT",   "TCPLOCALIP",
    "TCPLOCALPORT",   "UNIXREMOTEPID", "UNIXREMOTEEUID", "UNIXREMOTEEGID",  "LISTEN_FDS",      "LISTEN_PID",
    "LISTEN_FDNAMES", "PROXY_ADDR",    "PROXY_PORT",     "PROXY_AUTHORITY", "PROXY_UNIQUE_ID",
};

// Leading decimal digits and the unit after them: "512M" is 512 and "M".
// No value when there are no digits, or too many for 64 bits (`overflow`).
struct Number {
    std::optional<uint64_t> value;
    bool overflow = false;
    std::string_view unit;
};

Number number_and_unit(std::string_view text)
{
    size_t digits = std::min(text.find_first_not_of("0123456789"), text.size());
    Number n;
    n.unit = text.substr(digits);
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
    if (digits > 0 && ec == std::errc())
        n.value = value;
    n.overflow = digits > 0 && ec == std::errc::result_out_of_range;
    return n;
}

bool valid_service_name(std::string_view name)
{
    if (name.empty() || name.size() > 64)
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
               || c == '.';
    });
}

bool valid_env_name(std::string_view name)
{
    if (name.empty() || (name[0] >= '0' && name[0] <= '9'))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
}

// A parsed value into its field, or the error on: what most rows do.
template <typename T, typename Field>
std::optional<Error> store(Result<T> parsed, Field& field)
{
    if (!parsed)
        return Error{parsed.error()};
    field = std::move(*parsed);
    return std::nullopt;
}

} // namespace

// One key's value in one service's table, while it is read: the typed
// parsers every row uses, each error "FILE:LINE: service 'NAME': ..." at the
// value's own line.
class Value {
public:
    Value(const Source& src, const ServiceConfig& service, const toml::table& table, std::string_view key,
          std::string prefix = "")
        : src_(src), service_(service), table_(table), key_(key), prefix_(std::move(prefix)), node_(table.get(key))
    {
    }

    // Another key of the same table, for rows that read two keys together.
    Value other(std::string_view key) const { return Value(src_, service_, table_, key, prefix_); }
    // A key of the table this value is ([service.NAME.tls]), named in
    // messages as "tls.cert".
    Value within(const toml::table& table, std::string_view key) const
    {
        return Value(src_, service_, table, key, this->key() + ".");
    }

    explicit operator bool() const { return node_ != nullptr; }
    const toml::node& node() const { return *node_; }
    std::string key() const { return std::string(prefix_) + std::string(key_); }

    Error error(const std::string& message) const { return error_at(*node_, message); }
    Error error_at(const toml::node& node, const std::string& message) const
    {
        return error_at(Source::line_of(node), message);
    }
    Error error_at(int line, const std::string& message) const
    {
        return src_.at(line, "service '" + service_.name + "': " + message);
    }
    // At the line of the service's table, for what is missing from it.
    Error error_at_service(const std::string& message) const { return error_at(service_.line, message); }

    std::string absolute(const std::string& path) const { return src_.absolute(path); }

    Result<std::string> string() const
    {
        const auto* value = node_->as_string();
        if (!value || value->get().empty())
            return error(key() + " must be a non-empty string");
        return value->get();
    }

    template <typename Int>
    Result<Int> integer(int64_t low, int64_t high) const
    {
        const auto* value = node_->as_integer();
        if (!value)
            return error(key() + " must be an integer");
        if (value->get() < low || value->get() > high)
            return error(key() + " must be between " + std::to_string(low) + " and " + std::to_string(high));
        return static_cast<Int>(value->get());
    }

    // One of `choices`, by name.
    template <typename E>
    Result<E> choice(std::initializer_list<std::pair<std::string_view, E>> choices) const
    {
        std::string allowed;
        for (const auto& [name, value] : choices) {
            if (node_->as_string() && node_->as_string()->get() == name)
                return value;
            allowed += (allowed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
        }
        return error(key() + " must be one of " + allowed);
    }

    // A list of strings with their lines; a lone string where `lone_ok`.
    Result<std::vector<std::pair<std::string, int>>> strings(bool lone_ok) const
    {
        std::vector<std::pair<std::string, int>> items;
        if (auto s = node_->as_string(); s && lone_ok) {
            items.emplace_back(s->get(), Source::line_of(*node_));
            return items;
        }
        const toml::array* array = node_->as_array();
        if (!array)
            return error(key() + " must be a list of strings");
        for (const toml::node& element : *array) {
            auto s = element.as_string();
            if (!s)
                return error_at(element, key() + " must be a list of strings");
            items.emplace_back(s->get(), Source::line_of(element));
        }
        if (items.empty())
            return error(key() + " is empty");
        return items;
    }

    Result<bool> boolean() const
    {
        if (const auto* value = node_->as_boolean())
            return value->get();
        return error(key() + " must be true or false");
    }

    // "30s", "500ms", "5m", "1h", or whole seconds as an integer; at most a
    // year, which no real timeout needs and which keeps deadline arithmetic
    // (milliseconds, then nanoseconds on a clock) far from overflowing.
    Result<std::chrono::milliseconds> duration() const
    {
        constexpr uint64_t kMaxMs = 366ull * 24 * 3600 * 1000;
        std::optional<uint64_t> count;
        uint64_t scale = 1000;
        if (const auto* i = node_->as_integer(); i && i->get() > 0) {
            count = static_cast<uint64_t>(i->get());
        } else if (const auto* s = node_->as_string()) {
            Number n = number_and_unit(s->get());
            scale = n.unit == "ms" ? 1 : n.unit == "s" ? 1000 : n.unit == "m" ? 60000 : n.unit == "h" ? 3600000 : 0;
            if (scale > 0 && (n.overflow || (n.value && *n.value > 0)))
                count = n.overflow ? UINT64_MAX : *n.value;
        }
        if (count && *count > kMaxMs / scale)
            return error(key() + " must be at most a year (\"8784h\")");
        if (count)
            return std::chrono::milliseconds(*count * scale);
        return error(key() + " must be a duration such as \"30s\", \"500ms\", \"5m\" or \"1h\"");
    }

    // A resource limit: a whole number (also as a string of digits),
    // "unlimited", or for sizes "64K", "512M", "2G". A size past what the
    // kernel can hold is an error, never a value wrapped around to 0 that
    // would kill every child.
    Result<uint64_t> limit(bool bytes) const
    {
        if (const auto* i = node_->as_integer(); i && i->get() >= 0)
            return static_cast<uint64_t>(i->get());
        if (const auto* s = node_->as_string()) {
            const std::string& text = s->get();
            if (text == "unlimited")
                return static_cast<uint64_t>(RLIM_INFINITY);
            Number n = number_and_unit(text);
            uint64_t scale = n.unit.empty()  ? 1
                             : !bytes        ? 0
                             : n.unit == "K" ? 1ull << 10
                             : n.unit == "M" ? 1ull << 20
                             : n.unit == "G" ? 1ull << 30
                                             : 0;
            // RLIM_INFINITY itself means no limit: only "unlimited" says so.
            if (scale > 0 && (n.overflow || (n.value && *n.value > (RLIM_INFINITY - 1) / scale)))
                return error(key() + " \"" + text + "\" is too large (\"unlimited\" is no limit)");
            if (scale > 0 && n.value)
                return *n.value * scale;
        }
        return error(key() + " must be a whole number" + (bytes ? " of bytes (or \"512M\")" : "")
                     + " or \"unlimited\"");
    }

    // A file mode: a string of octal digits ("0660") or a TOML integer (0o660).
    Result<mode_t> file_mode() const
    {
        long value = -1;
        if (const auto* s = node_->as_string()) {
            const std::string& text = s->get();
            char* end = nullptr;
            if (!text.empty() && text.find_first_not_of("01234567") == std::string::npos)
                value = std::strtol(text.c_str(), &end, 8);
        } else if (const auto* i = node_->as_integer()) {
            value = static_cast<long>(i->get());
        }
        if (value < 0 || value > 07777)
            return error(key() + " must be an octal mode such as \"0660\"");
        return static_cast<mode_t>(value);
    }

    // A token bucket's rate, "50/s", and its burst key; the burst defaults
    // to a second's worth.
    std::optional<Error> rate(std::string_view burst_key, std::optional<double>& out, double& burst) const
    {
        Value b = other(burst_key);
        if (!node_) {
            if (b)
                return b.error(b.key() + " goes with " + key());
            return std::nullopt;
        }
        const auto* text = node_->as_string();
        auto per_second = text ? parse_rate(text->get()) : Result<double>(Error{"it is not a string"});
        if (!per_second)
            return error(key() + ": " + per_second.error());
        out = *per_second;
        burst = default_burst(*per_second);
        if (b)
            return store(b.integer<double>(1, kMaxBurst), burst);
        return std::nullopt;
    }

    // A user's or group's id, by name or number.
    template <typename Id>
    std::optional<Error> id(Result<Id> (*resolve)(std::string_view), std::optional<Id>& out) const
    {
        auto name = string();
        auto resolved = name ? resolve(*name) : Result<Id>(Error{name.error()});
        if (!resolved)
            return error(resolved.error());
        out = *resolved;
        return std::nullopt;
    }

private:
    const Source& src_;
    const ServiceConfig& service_;
    const toml::table& table_;
    std::string_view key_;
    std::string prefix_; // the table's own key and a dot, for a key of a sub-table
    const toml::node* node_;
};

namespace {

// Which builtin `value` names (the builtin table knows them), and whether
// it serves the service's protocol.
std::optional<Error> read_builtin(const Value& value, ServiceConfig& config)
{
    const auto* name = value.node().as_string();
    const BuiltinKind* builtin = name ? find_builtin(name->get()) : nullptr;
    if (!builtin) {
        std::string allowed;
        for (const BuiltinKind& kind : builtin_kinds())
            allowed += (allowed.empty() ? "\"" : ", \"") + std::string(kind.name) + "\"";
        return value.error("builtin must be one of " + allowed);
    }
    if (auto problem = protocol_problem(*builtin, config.protocol))
        return value.error(*problem);
    config.builtin = builtin;
    return std::nullopt;
}

std::optional<Error> read_listen(const Value& value, ServiceConfig& config)
{
    if (!value)
        return value.error_at_service("missing key 'listen'");
    auto items = value.strings(true);
    if (!items)
        return Error{items.error()};
    int entry = 0;
    for (const auto& [text, line] : *items) {
        ++entry;
        auto addresses = parse_listen_address(text);
        if (!addresses)
            return value.error_at(line, "listen " + addresses.error());
        for (SocketAddress a : *addresses) {
            bool is_unix = a.family() == AF_UNIX;
            if (is_unix != (config.protocol == Protocol::kUnix))
                return value.error_at(line, "listen '" + text + "' does not fit protocol \""
                                                + to_string(config.protocol) + "\""
                                                + (is_unix ? " (set protocol = \"unix\")" : " (use \"unix:/PATH\")"));
            if (is_unix) {
                auto resolved = parse_listen_address("unix:" + value.absolute(std::string(a.path())));
                if (!resolved)
                    return value.error_at(line, "listen " + resolved.error());
                a = resolved->front();
            }
            config.listen.push_back({text, a, line, entry});
        }
    }
    return std::nullopt;
}

// Also says that a UDP program must be a wait one: its kind is known here.
std::optional<Error> read_mode(const Value& value, ServiceConfig& config)
{
    if (value)
        if (auto e = store(value.choice<Mode>({{"nowait", Mode::kNowait}, {"wait", Mode::kWait}}), config.mode))
            return e;
    if (config.protocol == Protocol::kUdp && config.mode == Mode::kNowait)
        return value.error_at_service("a UDP service runs as mode = \"wait\" (it gets the socket and reads the "
                                      "datagrams itself), unless it is a builtin");
    return std::nullopt;
}

std::optional<Error> read_program(const Value& value, ServiceConfig& config)
{
    if (!value)
        return value.error_at_service("missing key 'program' (or 'builtin')");
    auto program = value.string();
    if (!program)
        return Error{program.error()};
    config.program = value.absolute(*program);
    if (auto problem = program_problem(config.program, config.allow_setuid))
        return value.error(*problem);
    return std::nullopt;
}

std::optional<Error> read_file_path(const Value& value, ServiceConfig& config)
{
    if (!value)
        return value.error_at_service("missing key 'path' (the file that builtin = \"file\" sends)");
    auto path = value.string();
    if (!path)
        return Error{path.error()};
    config.file_path = value.absolute(*path);
    // As root, whoever may change a folder above it could put a link to
    // /etc/shadow in its place.
    if (superd_is_root())
        if (auto why = untrusted_path(config.file_path))
            return value.error("path: " + *why);
    // Served from a descriptor opened per connection; this one only checks.
    if (auto file = open_served_file(config.file_path); !file)
        return value.error("path: " + file.error());
    return std::nullopt;
}

std::optional<Error> read_forward_to(const Value& value, ServiceConfig& config)
{
    if (!value)
        return value.error_at_service("missing key 'forward_to' (where builtin = \"forward\" sends each connection)");
    auto text = value.string();
    if (!text)
        return Error{text.error()};
    auto addresses = parse_listen_address(*text);
    if (!addresses)
        return value.error("forward_to " + addresses.error());
    if (addresses->size() != 1)
        return value.error("forward_to '" + *text + "' needs an address too, e.g. \"127.0.0.1:" + *text + "\"");
    SocketAddress backend = addresses->front();
    if (backend.is_wildcard())
        return value.error("forward_to '" + *text + "' is a wildcard address: name the backend's own address");
    if (backend.family() == AF_UNIX) {
        auto resolved = parse_listen_address("unix:" + value.absolute(std::string(backend.path())));
        if (!resolved)
            return value.error("forward_to " + resolved.error());
        backend = resolved->front();
    }
    config.forward_to = backend;
    config.forward_to_line = Source::line_of(value.node());
    return std::nullopt;
}

// [service.NAME.tls]: read whole, then loaded, so that a certificate that
// cannot serve is an error at this line now rather than a failed handshake
// later; a reload reads the files again (a rotated certificate).
std::optional<Error> read_tls(const Value& value, ServiceConfig& config)
{
    const toml::table* table = value.node().as_table();
    if (!table)
        return value.error("tls must be a table: [service." + config.name + ".tls] with cert and key");
    constexpr std::string_view kKeys[] = {"cert", "key", "client_ca", "min_version", "alpn", "handshake_timeout"};
    for (const auto& [key, node] : *table)
        if (std::find(std::begin(kKeys), std::end(kKeys), key.str()) == std::end(kKeys))
            return value.error_at(node, "unknown key 'tls." + std::string(key.str()) + "'");

    TlsSettings settings;
    auto path = [&](std::string_view key, std::string& out, bool required) -> std::optional<Error> {
        Value v = value.within(*table, key);
        if (!v)
            return required ? std::optional(value.error("tls needs '" + std::string(key) + "'")) : std::nullopt;
        auto text = v.string();
        if (!text)
            return Error{text.error()};
        out = v.absolute(*text);
        return std::nullopt;
    };
    if (auto e = path("cert", settings.cert, true))
        return e;
    if (auto e = path("key", settings.key, true))
        return e;
    if (auto e = path("client_ca", settings.client_ca, false))
        return e;
    if (Value v = value.within(*table, "min_version"))
        if (auto e = store(v.choice<TlsVersion>({{"1.2", TlsVersion::k1_2}, {"1.3", TlsVersion::k1_3}}),
                           settings.min_version))
            return e;
    if (Value v = value.within(*table, "alpn")) {
        auto names = v.strings(false);
        if (!names)
            return Error{names.error()};
        for (auto& [name, line] : *names)
            settings.alpn.push_back(std::move(name));
    }
    if (Value v = value.within(*table, "handshake_timeout"))
        if (auto e = store(v.duration(), settings.handshake_timeout))
            return e;

    auto context = TlsContext::load(settings, config.tls_warnings);
    if (!context)
        return value.error("tls: " + context.error());
    config.tls = std::move(settings);
    config.tls_context = std::move(*context);
    return std::nullopt;
}

// A list of strings that may be empty (capabilities = [] keeps none).
Result<std::vector<std::pair<std::string, int>>> maybe_empty_strings(const Value& value)
{
    if (const toml::array* array = value.node().as_array(); array && array->empty())
        return std::vector<std::pair<std::string, int>>{};
    return value.strings(false);
}

// [service.NAME.sandbox]: read whole, then prepared (sandbox.h), so that a
// namespace that cannot be made or a path that does not exist is an error
// at its line now, not a failed spawn later.
std::optional<Error> read_sandbox(const Value& value, ServiceConfig& config)
{
    const toml::table* table = value.node().as_table();
    if (!table)
        return value.error("sandbox must be a table: [service." + config.name + ".sandbox]");
    constexpr std::string_view kKeys[] = {"private_network",        "private_tmp", "no_new_privileges", "filesystem",
                                          "filesystem_best_effort", "syscalls",    "syscalls_deny",     "capabilities"};
    for (const auto& [key, node] : *table)
        if (std::find(std::begin(kKeys), std::end(kKeys), key.str()) == std::end(kKeys))
            return value.error_at(node, "unknown key 'sandbox." + std::string(key.str()) + "'");

    SandboxSettings settings;
    std::optional<bool> no_new_privileges;
    const std::pair<std::string_view, bool*> flags[] = {{"private_network", &settings.private_network},
                                                        {"private_tmp", &settings.private_tmp},
                                                        {"filesystem_best_effort", &settings.filesystem_best_effort}};
    for (const auto& [key, field] : flags)
        if (Value v = value.within(*table, key))
            if (auto e = store(v.boolean(), *field))
                return e;
    if (Value v = value.within(*table, "no_new_privileges"))
        if (auto e = store(v.boolean(), no_new_privileges))
            return e;

    Value filesystem = value.within(*table, "filesystem");
    if (filesystem) {
        const toml::table* paths = filesystem.node().as_table();
        if (!paths)
            return filesystem.error("sandbox.filesystem must be a table, e.g. { read = [\"/usr\"] }");
        FilesystemRules rules;
        const std::pair<std::string_view, std::vector<std::string>*> lists[] = {
            {"read", &rules.read}, {"write", &rules.write}, {"exec", &rules.exec}};
        for (const auto& [key, node] : *paths) {
            std::string_view name = key.str();
            if (std::none_of(std::begin(lists), std::end(lists), [name](const auto& l) { return l.first == name; }))
                return filesystem.error_at(node, "unknown key 'sandbox.filesystem." + std::string(name)
                                                     + "' (read, write and exec are)");
        }
        for (const auto& [key, list] : lists) {
            Value v = filesystem.within(*paths, key);
            if (!v)
                continue;
            auto items = maybe_empty_strings(v);
            if (!items)
                return Error{items.error()};
            for (const auto& [path, line] : *items) {
                std::string absolute = v.absolute(path);
                struct stat st;
                if (::stat(absolute.c_str(), &st) != 0)
                    return v.error_at(line, v.key() + ": " + absolute + " does not exist");
                list->push_back(absolute);
            }
        }
        settings.filesystem = std::move(rules);
    } else if (settings.filesystem_best_effort) {
        return value.within(*table, "filesystem_best_effort")
            .error("sandbox.filesystem_best_effort goes with filesystem");
    }

    if (Value v = value.within(*table, "syscalls"))
        if (auto e =
                store(v.choice<SyscallPreset>({{"service", SyscallPreset::kService}, {"none", SyscallPreset::kNone}}),
                      settings.syscalls))
            return e;
    if (Value v = value.within(*table, "syscalls_deny")) {
        auto names = maybe_empty_strings(v);
        if (!names)
            return Error{names.error()};
        for (const auto& [name, line] : *names) {
            if (!known_syscall(name))
                return v.error_at(line, v.key() + ": unknown system call '" + name + "'");
            settings.syscalls_deny.push_back(name);
        }
    }
    if (Value v = value.within(*table, "capabilities")) {
        auto names = maybe_empty_strings(v);
        if (!names)
            return Error{names.error()};
        settings.capabilities.emplace();
        for (const auto& [name, line] : *names) {
            auto cap = capability_number(name);
            if (!cap)
                return v.error_at(line, v.key() + ": unknown capability '" + name + "'");
            settings.capabilities->push_back(*cap);
        }
    }

    // Landlock and seccomp need no_new_privs (or CAP_SYS_ADMIN, which a
    // sandbox should not leave).
    bool implied = settings.filesystem || settings.syscalls != SyscallPreset::kNone || !settings.syscalls_deny.empty();
    if (no_new_privileges == false && implied)
        return value.within(*table, "no_new_privileges")
            .error("sandbox.no_new_privileges cannot be false with filesystem or syscalls, which imply it");
    settings.no_new_privileges = no_new_privileges.value_or(false) || implied;

    // The private /tmp hides whatever the host has there, the program too.
    if (settings.private_tmp)
        for (std::string_view tmp : {"/tmp", "/var/tmp"})
            if (config.program.starts_with(std::string(tmp) + "/"))
                return value.within(*table, "private_tmp")
                    .error("sandbox.private_tmp: the program " + config.program + " is under " + std::string(tmp)
                           + ", which the private " + std::string(tmp) + " hides from it");

    auto prepared = Sandbox::prepare(config.name, settings, config.program);
    if (!prepared) {
        // "KEY: message": at that key's line when it is in the table.
        const std::string& message = prepared.error();
        std::string key = message.substr(0, message.find(':'));
        Value at = value.within(*table, key);
        return (at ? at : value).error("sandbox." + message);
    }
    config.sandbox = std::move(settings);
    config.sandbox_prepared = std::move(*prepared);
    return std::nullopt;
}

std::optional<Error> read_args(const Value& value, ServiceConfig& config)
{
    if (!value) {
        config.args.push_back(fs::path(config.program).filename().string());
        return std::nullopt;
    }
    auto items = value.strings(false);
    if (!items)
        return Error{items.error()};
    for (auto& item : *items)
        config.args.push_back(std::move(item.first));
    return std::nullopt;
}

// user and group together: a user's primary group gives way to `group`.
std::optional<Error> read_identity(const Value& user, ServiceConfig& config)
{
    Value group = user.other("group");
    if (!user && !group)
        return std::nullopt;
    std::string user_name, group_name;
    if (user)
        if (auto e = store(user.string(), user_name))
            return e;
    if (group)
        if (auto e = store(group.string(), group_name))
            return e;
    auto identity = resolve_identity(user_name, group_name);
    if (!identity)
        return (user ? user : group).error(identity.error());
    config.identity = std::move(identity.value());
    return std::nullopt;
}

// env and pass_env together: a name may be set once, and PATH has a default.
std::optional<Error> read_environment(const Value& env, ServiceConfig& config)
{
    std::vector<std::string> added;
    bool has_path = false;
    auto add = [&](const toml::node& at, const std::string& name, const std::string& value) -> std::optional<Error> {
        if (!valid_env_name(name))
            return env.error_at(at, "'" + name + "' is not a valid environment variable name");
        if (std::find(std::begin(kReservedEnv), std::end(kReservedEnv), name) != std::end(kReservedEnv))
            return env.error_at(at, name + " is set by superd for each connection");
        if (config.tls
            && std::find(std::begin(kTlsEnvironmentNames), std::end(kTlsEnvironmentNames), name)
                   != std::end(kTlsEnvironmentNames))
            return env.error_at(at, name + " is set by superd for each TLS connection");
        for (const std::string& existing : added)
            if (existing.compare(0, name.size() + 1, name + "=") == 0)
                return env.error_at(at, name + " is set twice (env and pass_env)");
        has_path = has_path || name == "PATH";
        added.push_back(name + "=" + value);
        return std::nullopt;
    };

    if (env) {
        const toml::table* table = env.node().as_table();
        if (!table)
            return env.error("env must be a table, e.g. env = { TZ = \"UTC\" }");
        for (const auto& [key, value] : *table) {
            const auto* s = value.as_string();
            if (!s)
                return env.error_at(value, "env." + std::string(key.str()) + " must be a string");
            if (auto e = add(value, std::string(key.str()), s->get()))
                return e;
        }
    }
    if (Value pass = env.other("pass_env")) {
        auto names = pass.strings(false);
        if (!names)
            return Error{names.error()};
        for (const auto& [name, line] : *names) {
            // A variable superd itself lacks is simply not passed.
            if (const char* value = std::getenv(name.c_str())) {
                if (auto e = add(pass.node(), name, value))
                    return e;
            } else if (!valid_env_name(name)) {
                return pass.error("'" + name + "' is not a valid environment variable name");
            }
        }
    }
    if (!has_path)
        config.env.push_back(kDefaultPath);
    config.env.insert(config.env.end(), added.begin(), added.end());
    return std::nullopt;
}

std::optional<Error> read_stderr(const Value& value, ServiceConfig& config)
{
    // A socket-activated daemon's stderr belongs in a log, not on fd 3's peer.
    config.stderr_target = config.fd_convention == FdConvention::kSystemd ? StderrTarget::kLog : StderrTarget::kSocket;
    if (!value)
        return std::nullopt;
    return store(value.choice<StderrTarget>(
                     {{"socket", StderrTarget::kSocket}, {"log", StderrTarget::kLog}, {"null", StderrTarget::kNull}}),
                 config.stderr_target);
}

std::optional<Error> read_cwd(const Value& value, ServiceConfig& config)
{
    auto cwd = value.string();
    if (!cwd)
        return Error{cwd.error()};
    config.cwd = value.absolute(*cwd);
    struct stat st;
    if (::stat(config.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return value.error("cwd " + config.cwd + " is not a directory");
    return std::nullopt;
}

std::optional<Error> read_umask(const Value& value, ServiceConfig& config)
{
    auto umask = value.file_mode();
    if (umask && *umask > 0777)
        return value.error("umask must be at most 0777");
    return store(umask, config.umask);
}

std::optional<Error> read_rlimit(const Value& value, ServiceConfig& config, int resource, bool bytes)
{
    auto limit = value.limit(bytes);
    if (!limit)
        return Error{limit.error()};
    config.rlimits.push_back({resource, *limit});
    return std::nullopt;
}

std::optional<Error> read_busy_message(const Value& value, ServiceConfig& config)
{
    auto message = value.string();
    if (message && config.on_limit != OnLimit::kReject)
        return value.error("busy_message goes with on_limit = \"reject\"");
    // Sent before any handshake, it would reach a TLS client as garbage.
    if (message && config.tls)
        return value.error("busy_message is plaintext, which a TLS client cannot read (the refusal closes it)");
    return store(message, config.busy_message);
}

// proxy_protocol with proxy_from and proxy_timeout: a header is believed
// only from the balancers named, so the one needs the other.
std::optional<Error> read_proxy(const Value& value, ServiceConfig& config)
{
    Value from = value.other("proxy_from"), timeout = value.other("proxy_timeout");
    if (!value) {
        if (from || timeout) {
            const Value& set = from ? from : timeout;
            return set.error(set.key() + " goes with proxy_protocol");
        }
        return std::nullopt;
    }
    auto accept =
        value.choice<ProxyAccept>({{"v1", ProxyAccept::kV1}, {"v2", ProxyAccept::kV2}, {"any", ProxyAccept::kAny}});
    if (!accept)
        return Error{accept.error()};
    if (!from)
        return value.error("proxy_protocol needs proxy_from: the balancers whose headers are believed (anyone else "
                           "could name any client)");
    auto items = from.strings(true);
    if (!items)
        return Error{items.error()};
    for (const auto& [text, line] : *items) {
        auto cidr = Cidr::parse(text);
        if (!cidr)
            return from.error_at(line, "proxy_from: " + cidr.error());
        config.proxy_from.push_back(*cidr);
    }
    if (timeout)
        if (auto e = store(timeout.duration(), config.proxy_timeout))
            return e;
    config.proxy_protocol = *accept;
    return std::nullopt;
}

// allow and deny together: one access list.
std::optional<Error> read_access(const Value& allow, ServiceConfig& config)
{
    std::vector<Cidr> lists[2];
    Value values[2] = {allow, allow.other("deny")};
    for (int i = 0; i < 2; ++i) {
        if (!values[i])
            continue;
        auto items = values[i].strings(false);
        if (!items)
            return Error{items.error()};
        for (const auto& [text, line] : *items) {
            auto cidr = Cidr::parse(text);
            if (!cidr)
                return values[i].error(values[i].key() + ": " + cidr.error());
            lists[i].push_back(*cidr);
        }
    }
    config.access = AccessList(std::move(lists[0]), std::move(lists[1]));
    return std::nullopt;
}

using C = ServiceConfig;
using V = Value;

// Every key of [service.NAME], in the order they are read. protocol, builtin
// and mode come first: they decide the kind of service the rows below
// apply to.
constexpr ServiceKey kServiceKeys[] = {
    {"protocol", kAnyKind | kAnyProtocol,
     [](const V& v, C& c) {
         return store(v.choice<Protocol>({{"tcp", Protocol::kTcp}, {"udp", Protocol::kUdp}, {"unix", Protocol::kUnix}}),
                      c.protocol);
     }},
    {"listen", kAnyKind | kAnyProtocol, read_listen, true},
    {"builtin", kAnyKind | kAnyProtocol, read_builtin},
    {"allow_amplification", kBuiltin | kOwnSetting | kAnyProtocol,
     [](const V& v, C& c) { return store(v.boolean(), c.allow_amplification); }},
    {"path", kBuiltin | kOwnSetting | kAnyProtocol, read_file_path, true},
    {"forward_to", kBuiltin | kOwnSetting | kAnyProtocol, read_forward_to, true},
    {"connect_timeout", kBuiltin | kOwnSetting | kAnyProtocol,
     [](const V& v, C& c) { return store(v.duration(), c.connect_timeout); }},
    {"send_proxy", kBuiltin | kOwnSetting | kAnyProtocol,
     [](const V& v, C& c) {
         return store(v.choice<ProxyVersion>({{"v1", ProxyVersion::kV1}, {"v2", ProxyVersion::kV2}}), c.send_proxy);
     }},
    {"fd_convention", kProgram | kAnyProtocol,
     [](const V& v, C& c) {
         return store(v.choice<FdConvention>({{"inetd", FdConvention::kInetd}, {"systemd", FdConvention::kSystemd}}),
                      c.fd_convention);
     }},
    {"mode", kProgram | kAnyProtocol, read_mode, true},
    {"tls", kAccepted | kStream, read_tls}, // before env, which may not set its variables
    {"allow_setuid", kProgram | kAnyProtocol, [](const V& v, C& c) { return store(v.boolean(), c.allow_setuid); }},
    {"program", kProgram | kAnyProtocol, read_program, true},
    {"args", kProgram | kAnyProtocol, read_args, true},
    {"user", kProgram | kAnyProtocol, read_identity, true},
    {"group", kProgram | kAnyProtocol, nullptr}, // read with user
    {"env", kProgram | kAnyProtocol, read_environment, true},
    {"pass_env", kProgram | kAnyProtocol, nullptr}, // read with env
    {"stderr", kProgram | kAnyProtocol, read_stderr, true},
    {"cwd", kProgram | kAnyProtocol, read_cwd},
    {"umask", kProgram | kAnyProtocol, read_umask},
    {"nice", kProgram | kAnyProtocol, [](const V& v, C& c) { return store(v.integer<int>(-20, 19), c.nice); }},
    {"timeout", kProgram | kAnyProtocol, [](const V& v, C& c) { return store(v.duration(), c.timeout); }},
    {"kill_grace", kProgram | kAnyProtocol, [](const V& v, C& c) { return store(v.duration(), c.kill_grace); }},
    {"rlimit_nofile", kProgram | kAnyProtocol,
     [](const V& v, C& c) { return read_rlimit(v, c, RLIMIT_NOFILE, false); }},
    {"rlimit_cpu", kProgram | kAnyProtocol, [](const V& v, C& c) { return read_rlimit(v, c, RLIMIT_CPU, false); }},
    {"rlimit_as", kProgram | kAnyProtocol, [](const V& v, C& c) { return read_rlimit(v, c, RLIMIT_AS, true); }},
    {"rlimit_nproc", kProgram | kAnyProtocol, [](const V& v, C& c) { return read_rlimit(v, c, RLIMIT_NPROC, false); }},
    {"rlimit_core", kProgram | kAnyProtocol, [](const V& v, C& c) { return read_rlimit(v, c, RLIMIT_CORE, true); }},
    {"sandbox", kProgram | kAnyProtocol, read_sandbox}, // after program, which Landlock lets it run
    {"max_instances", kAccepted | kAnyProtocol,
     [](const V& v, C& c) { return store(v.integer<unsigned>(1, 1000000), c.max_instances); }},
    {"on_limit", kAccepted | kAnyProtocol,
     [](const V& v, C& c) {
         return store(v.choice<OnLimit>({{"queue", OnLimit::kQueue}, {"reject", OnLimit::kReject}}), c.on_limit);
     }},
    {"busy_message", kAccepted | kAnyProtocol, read_busy_message},
    {"max_per_source", kAccepted | kAnyProtocol,
     [](const V& v, C& c) { return store(v.integer<unsigned>(1, 1000000), c.max_per_source); }},
    {"source_prefix_v4", kAccepted | kAnyProtocol,
     [](const V& v, C& c) { return store(v.integer<int>(0, 32), c.source_prefix_v4); }},
    {"source_prefix_v6", kAccepted | kAnyProtocol,
     [](const V& v, C& c) { return store(v.integer<int>(0, 128), c.source_prefix_v6); }},
    {"rate", kAccepted | kAnyProtocol, [](const V& v, C& c) { return v.rate("burst", c.rate, c.burst); }, true},
    {"burst", kAccepted | kAnyProtocol, nullptr}, // read with rate
    {"rate_per_source", kAccepted | kAnyProtocol,
     [](const V& v, C& c) { return v.rate("burst_per_source", c.rate_per_source, c.burst_per_source); }, true},
    {"burst_per_source", kAccepted | kAnyProtocol, nullptr}, // read with rate_per_source
    {"stderr_rate", kProgram | kAnyProtocol,
     [](const V& v, C& c) { return v.rate("stderr_burst", c.stderr_rate, c.stderr_burst); }, true},
    {"stderr_burst", kProgram | kAnyProtocol, nullptr}, // read with stderr_rate
    {"allow", kAccepted | kAnyProtocol, read_access, true},
    {"deny", kAccepted | kAnyProtocol, nullptr}, // read with allow
    {"proxy_protocol", kAccepted | kTcp, read_proxy, true},
    {"proxy_from", kAccepted | kTcp, nullptr},    // read with proxy_protocol
    {"proxy_timeout", kAccepted | kTcp, nullptr}, // read with proxy_protocol
    {"reuse_port", kAnyKind | kTcp | kUdp, [](const V& v, C& c) { return store(v.boolean(), c.reuse_port); }},
    {"backlog", kAnyKind | kStream, [](const V& v, C& c) { return store(v.integer<int>(1, 65535), c.backlog); }},
    {"socket_mode", kAnyKind | kUnix, [](const V& v, C& c) { return store(v.file_mode(), c.socket_mode); }},
    {"socket_user", kAnyKind | kUnix, [](const V& v, C& c) { return v.id(resolve_uid, c.socket_uid); }},
    {"socket_group", kAnyKind | kUnix, [](const V& v, C& c) { return v.id(resolve_gid, c.socket_gid); }},
};

unsigned kind_of(const ServiceConfig& config)
{
    unsigned kind = config.builtin ? kBuiltin : config.mode == Mode::kWait ? kWaitProgram : kNowaitProgram;
    switch (config.protocol) {
    case Protocol::kTcp:
        return kind | kTcp;
    case Protocol::kUdp:
        return kind | kUdp;
    case Protocol::kUnix:
        return kind | kUnix;
    }
    return kind;
}

// Why `key` does not apply to `config`, a service of `kind`, if it does not.
std::optional<std::string> not_applying(const ServiceKey& key, unsigned kind, const ServiceConfig& config)
{
    unsigned applies = key.applies & kind;
    if (!(applies & kAnyKind)) {
        if (kind & kBuiltin)
            return " does not apply to a builtin (it runs inside superd)";
        if (key.applies & kOwnSetting)
            return " applies only to builtin = " + builtins_taking(key.name);
        if (!(key.applies & kProgram))
            return " applies only to builtins";
        if (kind & kWaitProgram)
            return " does not apply to mode = \"wait\" (its program accepts the connections itself)";
        return " applies only to mode = \"wait\"";
    }
    if (!(applies & kAnyProtocol)) {
        unsigned protocols = key.applies & kAnyProtocol;
        if (protocols == kUnix)
            return " is for unix sockets (protocol = \"unix\")";
        if (protocols == kStream)
            return " is for stream sockets (tcp, unix)";
        if (protocols == kTcp)
            return " is for TCP only";
        return " does not apply to this protocol";
    }
    if ((key.applies & kOwnSetting) && config.builtin
        && std::ranges::find(config.builtin->settings, key.name) == config.builtin->settings.end())
        return " applies only to builtin = " + builtins_taking(key.name);
    return std::nullopt;
}

} // namespace

std::span<const ServiceKey> service_keys() { return kServiceKeys; }

const ServiceKey* service_key(std::string_view name)
{
    for (const ServiceKey& key : kServiceKeys)
        if (key.name == name)
            return &key;
    return nullptr;
}

Result<ServiceConfig> read_service(const Source& src, const toml::key& name, const toml::node& node)
{
    std::string service(name.str());
    if (!valid_service_name(service))
        return src.at(name,
                      "service name '" + service + "' may only use letters, digits, '_', '-' and '.' (at most 64)");
    const toml::table* table = node.as_table();
    if (!table)
        return src.at(name, "service." + service + " must be a table");

    ServiceConfig config;
    config.name = service;
    config.file = src.path;
    config.line = Source::line_of(node);
    for (const auto& [key, value] : *table)
        if (!service_key(key.str()))
            return src.at(key, "service '" + service + "': unknown key '" + std::string(key.str()) + "'");

    // A builtin's own setting that is missing (file's path) is said last: a
    // key set where it does not apply (forward_to on a file) explains more.
    std::vector<const ServiceKey*> missing;
    for (const ServiceKey& key : kServiceKeys) {
        Value value(src, config, *table, key.name);
        if (!value && !key.always)
            continue;
        std::optional<std::string> why = not_applying(key, kind_of(config), config);
        if (why && value)
            return value.error(std::string(key.name) + *why);
        if (!why && !value && (key.applies & kOwnSetting)) {
            missing.push_back(&key);
            continue;
        }
        if (!why && key.read)
            if (auto e = key.read(value, config))
                return *e;
    }
    for (const ServiceKey* key : missing)
        if (auto e = key->read(Value(src, config, *table, key->name), config))
            return *e;
    return config;
}

} // namespace superd

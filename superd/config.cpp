#include "superd/config.h"

#include "superd/fd.h"
#include "superd/identity.h"
#include "superd/inetd_conf.h"
#include "superd/trust.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

namespace superd {

namespace {

namespace fs = std::filesystem;

// Set by superd for each connection; a service cannot set them itself.
constexpr std::string_view kReservedEnv[] = {
    "REMOTE_ADDR", "REMOTE_PORT", "PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT",
    "UNIXREMOTEPID", "UNIXREMOTEEUID", "UNIXREMOTEEGID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
};

constexpr std::string_view kServiceKeys[] = {
    "protocol", "listen", "mode", "fd_convention", "builtin", "program", "args", "user", "group", "env",
    "pass_env", "stderr", "cwd", "umask", "nice", "socket_mode", "socket_user", "socket_group",
    "max_instances", "on_limit", "busy_message", "max_per_source", "source_prefix_v4", "source_prefix_v6",
    "rate", "burst", "rate_per_source", "burst_per_source", "allow", "deny", "backlog", "timeout", "kill_grace",
    "rlimit_nofile", "rlimit_cpu", "rlimit_as", "rlimit_nproc", "rlimit_core", "allow_setuid", "allow_amplification",
    "stderr_rate", "stderr_burst",
};

// Keys that only make sense for a program superd spawns.
constexpr std::string_view kSpawnKeys[] = {
    "mode", "fd_convention", "program", "args", "user", "group", "env", "pass_env", "stderr", "cwd", "umask", "nice",
    "timeout", "kill_grace", "rlimit_nofile", "rlimit_cpu", "rlimit_as", "rlimit_nproc", "rlimit_core", "allow_setuid",
    "stderr_rate", "stderr_burst",
};

// Keys that only make sense for a builtin.
constexpr std::string_view kBuiltinKeys[] = {"allow_amplification"};

// Keys that decide on each connection in the daemon: a wait service's
// program accepts its connections itself, so they cannot apply to it.
constexpr std::string_view kAdmissionKeys[] = {
    "max_instances", "on_limit", "busy_message", "max_per_source", "source_prefix_v4", "source_prefix_v6",
    "rate", "burst", "rate_per_source", "burst_per_source", "allow", "deny",
};

struct RlimitKey {
    std::string_view key;
    int resource;
    bool bytes; // sizes may say "512M"
};
constexpr RlimitKey kRlimitKeys[] = {
    {"rlimit_nofile", RLIMIT_NOFILE, false}, {"rlimit_cpu", RLIMIT_CPU, false}, {"rlimit_as", RLIMIT_AS, true},
    {"rlimit_nproc", RLIMIT_NPROC, false},   {"rlimit_core", RLIMIT_CORE, true},
};

// Where errors point: the file and the folder that relative paths start from.
struct Source {
    std::string path;
    fs::path folder;

    Error at(int line, const std::string& message) const
    {
        return Error{path + ":" + std::to_string(line) + ": " + message};
    }
    Error at(const toml::node& node, const std::string& message) const { return at(line_of(node), message); }
    Error at(const toml::key& key, const std::string& message) const
    {
        return at(static_cast<int>(key.source().begin.line), message);
    }
    static int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

    std::string absolute(const std::string& p) const
    {
        fs::path result(p);
        if (result.is_relative())
            result = folder / result;
        return result.lexically_normal().string();
    }
};

Source source_for(const std::string& path) { return Source{path, fs::absolute(fs::path(path)).parent_path()}; }

// What a file that is not a regular one is, for the message.
struct FileKind {
    mode_t type;
    const char* name;
};
constexpr FileKind kFileKinds[] = {
    {S_IFDIR, "a directory"}, {S_IFIFO, "a FIFO"},   {S_IFCHR, "a character device"},
    {S_IFBLK, "a block device"}, {S_IFSOCK, "a socket"}, {S_IFLNK, "a symbolic link"},
};

std::string file_kind(mode_t mode)
{
    for (const FileKind& kind : kFileKinds)
        if ((mode & S_IFMT) == kind.type)
            return kind.name;
    return "of an unknown kind";
}

// Larger than any real configuration; bounds what a reload reads.
constexpr size_t kMaxConfigSize = 16 * 1024 * 1024;
constexpr const char* kTooLarge = "larger than 16 MiB";

// Which file: its device and inode.
using FileId = std::pair<dev_t, ino_t>;

// A file's text and which file it was, so that one file is read only once
// whatever path leads to it.
struct FileText {
    std::string text;
    FileId id;
};

// Reads a config file, a drop-in or an inetd.conf through one descriptor, so
// that what is checked is what is read. A reload must never hang or die:
// O_NONBLOCK keeps open() from waiting for a FIFO's writer (a regular file
// ignores it), only regular files are read (not /dev/zero, which never
// ends), and never more than kMaxConfigSize bytes, checked before reading and
// again while reading, since a file can grow in between.
Result<FileText> read_file(const std::string& path)
{
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0)
        return Error{path + ": cannot read: " + std::strerror(errno)};
    if (!S_ISREG(st.st_mode))
        return Error{path + ": not a regular file (" + file_kind(st.st_mode) + ")"};
    if (superd_is_root()) {
        if (auto why = untrusted(path, st))
            return Error{path + ": " + *why};
        if (auto why = untrusted_path(path))
            return Error{path + ": " + *why};
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxConfigSize)
        return Error{path + ": " + kTooLarge};
    FileText file{std::string(), FileId{st.st_dev, st.st_ino}};
    std::string& contents = file.text;
    contents.reserve(static_cast<size_t>(st.st_size));
    char chunk[16384];
    while (contents.size() <= kMaxConfigSize) {
        size_t room = std::min(sizeof chunk, kMaxConfigSize + 1 - contents.size());
        ssize_t n = ::read(fd.get(), chunk, room);
        if (n == 0)
            return file;
        if (n < 0 && errno != EINTR)
            return Error{path + ": cannot read: " + std::strerror(errno)};
        if (n > 0)
            contents.append(chunk, static_cast<size_t>(n));
    }
    return Error{path + ": " + kTooLarge};
}

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

// Reads the values of one service's table, each error at its own line.
class ServiceReader {
public:
    ServiceReader(const Source& src, const std::string& service, const toml::table& table)
        : src_(src), service_(service), table_(table)
    {
    }

    const toml::node* get(std::string_view key) const { return table_.get(key); }

    Error error(const toml::node& node, const std::string& message) const
    {
        return src_.at(node, "service '" + service_ + "': " + message);
    }

    Result<std::string> string(const toml::node& node, std::string_view key) const
    {
        const auto* value = node.as_string();
        if (!value || value->get().empty())
            return error(node, std::string(key) + " must be a non-empty string");
        return value->get();
    }

    Result<int64_t> integer(const toml::node& node, std::string_view key, int64_t low, int64_t high) const
    {
        const auto* value = node.as_integer();
        if (!value)
            return error(node, std::string(key) + " must be an integer");
        if (value->get() < low || value->get() > high)
            return error(node, std::string(key) + " must be between " + std::to_string(low) + " and "
                                   + std::to_string(high));
        return value->get();
    }

    // One of `choices`, by name.
    template <typename E>
    Result<E> choice(const toml::node& node, std::string_view key,
                     std::initializer_list<std::pair<std::string_view, E>> choices) const
    {
        std::string allowed;
        for (const auto& [name, value] : choices) {
            if (node.as_string() && node.as_string()->get() == name)
                return value;
            allowed += (allowed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
        }
        return error(node, std::string(key) + " must be one of " + allowed);
    }

    // A list of strings with their lines; a lone string where `lone_ok`.
    Result<std::vector<std::pair<std::string, int>>> strings(const toml::node& node, std::string_view key,
                                                            bool lone_ok) const
    {
        std::vector<std::pair<std::string, int>> items;
        if (auto s = node.as_string(); s && lone_ok) {
            items.emplace_back(s->get(), Source::line_of(node));
            return items;
        }
        const toml::array* array = node.as_array();
        if (!array)
            return error(node, std::string(key) + " must be a list of strings");
        for (const toml::node& element : *array) {
            auto s = element.as_string();
            if (!s)
                return error(element, std::string(key) + " must be a list of strings");
            items.emplace_back(s->get(), Source::line_of(element));
        }
        if (items.empty())
            return error(node, std::string(key) + " is empty");
        return items;
    }

    Result<bool> boolean(const toml::node& node, std::string_view key) const
    {
        if (const auto* value = node.as_boolean())
            return value->get();
        return error(node, std::string(key) + " must be true or false");
    }

    // "30s", "500ms", "5m", "1h", or whole seconds as an integer; at most a
    // year, which no real timeout needs and which keeps deadline arithmetic
    // (milliseconds, then nanoseconds on a clock) far from overflowing.
    Result<std::chrono::milliseconds> duration(const toml::node& node, std::string_view key) const
    {
        constexpr uint64_t kMaxMs = 366ull * 24 * 3600 * 1000;
        std::optional<uint64_t> count;
        uint64_t scale = 1000;
        if (const auto* i = node.as_integer(); i && i->get() > 0) {
            count = static_cast<uint64_t>(i->get());
        } else if (const auto* s = node.as_string()) {
            Number n = number_and_unit(s->get());
            scale = n.unit == "ms" ? 1 : n.unit == "s" ? 1000 : n.unit == "m" ? 60000 : n.unit == "h" ? 3600000 : 0;
            if (scale > 0 && (n.overflow || (n.value && *n.value > 0)))
                count = n.overflow ? UINT64_MAX : *n.value;
        }
        if (count && *count > kMaxMs / scale)
            return error(node, std::string(key) + " must be at most a year (\"8784h\")");
        if (count)
            return std::chrono::milliseconds(*count * scale);
        return error(node, std::string(key) + " must be a duration such as \"30s\", \"500ms\", \"5m\" or \"1h\"");
    }

    // A resource limit: a whole number (also as a string of digits),
    // "unlimited", or for sizes "64K", "512M", "2G". A size past what the
    // kernel can hold is an error, never a value wrapped around to 0 that
    // would kill every child.
    Result<uint64_t> limit(const toml::node& node, std::string_view key, bool bytes) const
    {
        if (const auto* i = node.as_integer(); i && i->get() >= 0)
            return static_cast<uint64_t>(i->get());
        if (const auto* s = node.as_string()) {
            const std::string& text = s->get();
            if (text == "unlimited")
                return static_cast<uint64_t>(RLIM_INFINITY);
            Number n = number_and_unit(text);
            uint64_t scale = n.unit.empty() ? 1
                             : !bytes       ? 0
                             : n.unit == "K" ? 1ull << 10
                             : n.unit == "M" ? 1ull << 20
                             : n.unit == "G" ? 1ull << 30
                                             : 0;
            // RLIM_INFINITY itself means no limit: only "unlimited" says so.
            if (scale > 0 && (n.overflow || (n.value && *n.value > (RLIM_INFINITY - 1) / scale)))
                return error(node, std::string(key) + " \"" + text + "\" is too large (\"unlimited\" is no limit)");
            if (scale > 0 && n.value)
                return *n.value * scale;
        }
        return error(node, std::string(key) + " must be a whole number" + (bytes ? " of bytes (or \"512M\")" : "")
                               + " or \"unlimited\"");
    }

    // A file mode: a string of octal digits ("0660") or a TOML integer (0o660).
    Result<mode_t> file_mode(const toml::node& node, std::string_view key) const
    {
        long value = -1;
        if (const auto* s = node.as_string()) {
            const std::string& text = s->get();
            char* end = nullptr;
            if (!text.empty() && text.find_first_not_of("01234567") == std::string::npos)
                value = std::strtol(text.c_str(), &end, 8);
        } else if (const auto* i = node.as_integer()) {
            value = static_cast<long>(i->get());
        }
        if (value < 0 || value > 07777)
            return error(node, std::string(key) + " must be an octal mode such as \"0660\"");
        return static_cast<mode_t>(value);
    }

private:
    const Source& src_;
    const std::string& service_;
    const toml::table& table_;
};

std::optional<Error> read_listen(const ServiceReader& r, const Source& src, ServiceConfig& config)
{
    const toml::node* node = r.get("listen");
    auto items = r.strings(*node, "listen", true);
    if (!items)
        return Error{items.error()};
    int entry = 0;
    for (const auto& [text, line] : *items) {
        ++entry;
        auto addresses = parse_listen_address(text);
        if (!addresses)
            return src.at(line, "service '" + config.name + "': listen " + addresses.error());
        for (SocketAddress a : *addresses) {
            bool is_unix = a.family() == AF_UNIX;
            if (is_unix != (config.protocol == Protocol::kUnix))
                return src.at(line, "service '" + config.name + "': listen '" + text + "' does not fit protocol \""
                                        + to_string(config.protocol) + "\""
                                        + (is_unix ? " (set protocol = \"unix\")" : " (use \"unix:/PATH\")"));
            if (is_unix) {
                std::string path = src.absolute(std::string(a.path()));
                auto resolved = parse_listen_address("unix:" + path);
                if (!resolved)
                    return src.at(line, "service '" + config.name + "': listen " + resolved.error());
                a = resolved->front();
            }
            config.listen.push_back({text, a, line, entry});
        }
    }
    return std::nullopt;
}

std::optional<Error> read_program(const ServiceReader& r, const Source& src, ServiceConfig& config)
{
    const toml::node* node = r.get("program");
    if (!node)
        return src.at(config.line, "service '" + config.name + "': missing key 'program' (or 'builtin')");
    auto program = r.string(*node, "program");
    if (!program)
        return Error{program.error()};
    if (const toml::node* n = r.get("allow_setuid")) {
        auto allow = r.boolean(*n, "allow_setuid");
        if (!allow)
            return Error{allow.error()};
        config.allow_setuid = *allow;
    }
    config.program = src.absolute(*program);
    if (auto problem = program_problem(config.program, config.allow_setuid))
        return r.error(*node, *problem);

    if (const toml::node* args = r.get("args")) {
        auto items = r.strings(*args, "args", false);
        if (!items)
            return Error{items.error()};
        for (auto& item : *items)
            config.args.push_back(std::move(item.first));
    } else {
        config.args.push_back(fs::path(config.program).filename().string());
    }
    return std::nullopt;
}

std::optional<Error> read_environment(const ServiceReader& r, ServiceConfig& config)
{
    std::vector<std::string> added;
    bool has_path = false;
    auto add = [&](const toml::node& at, const std::string& name, const std::string& value) -> std::optional<Error> {
        if (!valid_env_name(name))
            return r.error(at, "'" + name + "' is not a valid environment variable name");
        if (std::find(std::begin(kReservedEnv), std::end(kReservedEnv), name) != std::end(kReservedEnv))
            return r.error(at, name + " is set by superd for each connection");
        for (const std::string& existing : added)
            if (existing.compare(0, name.size() + 1, name + "=") == 0)
                return r.error(at, name + " is set twice (env and pass_env)");
        has_path = has_path || name == "PATH";
        added.push_back(name + "=" + value);
        return std::nullopt;
    };

    if (const toml::node* env = r.get("env")) {
        const toml::table* table = env->as_table();
        if (!table)
            return r.error(*env, "env must be a table, e.g. env = { TZ = \"UTC\" }");
        for (const auto& [key, value] : *table) {
            const auto* s = value.as_string();
            if (!s)
                return r.error(value, "env." + std::string(key.str()) + " must be a string");
            if (auto e = add(value, std::string(key.str()), s->get()))
                return e;
        }
    }
    if (const toml::node* pass = r.get("pass_env")) {
        auto names = r.strings(*pass, "pass_env", false);
        if (!names)
            return Error{names.error()};
        for (const auto& [name, line] : *names) {
            // A variable superd itself lacks is simply not passed.
            if (const char* value = std::getenv(name.c_str())) {
                if (auto e = add(*pass, name, value))
                    return e;
            } else if (!valid_env_name(name)) {
                return r.error(*pass, "'" + name + "' is not a valid environment variable name");
            }
        }
    }
    if (!has_path)
        config.env.push_back(kDefaultPath);
    config.env.insert(config.env.end(), added.begin(), added.end());
    return std::nullopt;
}

std::optional<Error> read_spawn_settings(const ServiceReader& r, const Source& src, ServiceConfig& config)
{
    if (const toml::node* node = r.get("mode")) {
        auto mode = r.choice<Mode>(*node, "mode", {{"nowait", Mode::kNowait}, {"wait", Mode::kWait}});
        if (!mode)
            return Error{mode.error()};
        config.mode = *mode;
    }
    if (const toml::node* node = r.get("fd_convention")) {
        auto convention = r.choice<FdConvention>(
            *node, "fd_convention", {{"inetd", FdConvention::kInetd}, {"systemd", FdConvention::kSystemd}});
        if (!convention)
            return Error{convention.error()};
        config.fd_convention = *convention;
    }
    if (config.protocol == Protocol::kUdp && config.mode == Mode::kNowait)
        return src.at(config.line, "service '" + config.name
                                       + "': a UDP service runs as mode = \"wait\" (it gets the socket and reads "
                                         "the datagrams itself), unless it is a builtin");
    if (auto e = read_program(r, src, config))
        return e;

    const toml::node* user = r.get("user");
    const toml::node* group = r.get("group");
    if (user || group) {
        std::string user_name, group_name;
        if (user) {
            auto name = r.string(*user, "user");
            if (!name)
                return Error{name.error()};
            user_name = *name;
        }
        if (group) {
            auto name = r.string(*group, "group");
            if (!name)
                return Error{name.error()};
            group_name = *name;
        }
        auto identity = resolve_identity(user_name, group_name);
        if (!identity)
            return r.error(user ? *user : *group, identity.error());
        config.identity = std::move(identity.value());
    }

    if (auto e = read_environment(r, config))
        return e;

    // A socket-activated daemon's stderr belongs in a log, not on fd 3's peer.
    config.stderr_target =
        config.fd_convention == FdConvention::kSystemd ? StderrTarget::kLog : StderrTarget::kSocket;
    if (const toml::node* node = r.get("stderr")) {
        auto target = r.choice<StderrTarget>(
            *node, "stderr",
            {{"socket", StderrTarget::kSocket}, {"log", StderrTarget::kLog}, {"null", StderrTarget::kNull}});
        if (!target)
            return Error{target.error()};
        config.stderr_target = *target;
    }
    if (const toml::node* node = r.get("cwd")) {
        auto cwd = r.string(*node, "cwd");
        if (!cwd)
            return Error{cwd.error()};
        config.cwd = src.absolute(*cwd);
        struct stat st;
        if (::stat(config.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            return r.error(*node, "cwd " + config.cwd + " is not a directory");
    }
    if (const toml::node* node = r.get("umask")) {
        auto umask = r.file_mode(*node, "umask");
        if (!umask)
            return Error{umask.error()};
        if (*umask > 0777)
            return r.error(*node, "umask must be at most 0777");
        config.umask = *umask;
    }
    if (const toml::node* node = r.get("nice")) {
        auto nice = r.integer(*node, "nice", -20, 19);
        if (!nice)
            return Error{nice.error()};
        config.nice = static_cast<int>(*nice);
    }
    return std::nullopt;
}

std::optional<Error> read_admission(const ServiceReader& r, ServiceConfig& config)
{
    if (config.mode == Mode::kWait)
        for (std::string_view key : kAdmissionKeys)
            if (const toml::node* n = r.get(key))
                return r.error(*n, std::string(key) + " does not apply to mode = \"wait\" (its program accepts "
                                                      "the connections itself)");
    auto count = [&](std::string_view key, std::optional<unsigned>& out) -> std::optional<Error> {
        if (const toml::node* n = r.get(key)) {
            auto value = r.integer(*n, key, 1, 1000000);
            if (!value)
                return Error{value.error()};
            out = static_cast<unsigned>(*value);
        }
        return std::nullopt;
    };
    if (auto e = count("max_instances", config.max_instances))
        return e;
    if (auto e = count("max_per_source", config.max_per_source))
        return e;
    if (const toml::node* n = r.get("on_limit")) {
        auto policy = r.choice<OnLimit>(*n, "on_limit", {{"queue", OnLimit::kQueue}, {"reject", OnLimit::kReject}});
        if (!policy)
            return Error{policy.error()};
        config.on_limit = *policy;
    }
    if (const toml::node* n = r.get("busy_message")) {
        auto message = r.string(*n, "busy_message");
        if (!message)
            return Error{message.error()};
        if (config.on_limit != OnLimit::kReject)
            return r.error(*n, "busy_message goes with on_limit = \"reject\"");
        config.busy_message = *message;
    }
    if (const toml::node* n = r.get("source_prefix_v4")) {
        auto bits = r.integer(*n, "source_prefix_v4", 0, 32);
        if (!bits)
            return Error{bits.error()};
        config.source_prefix_v4 = static_cast<int>(*bits);
    }
    if (const toml::node* n = r.get("source_prefix_v6")) {
        auto bits = r.integer(*n, "source_prefix_v6", 0, 128);
        if (!bits)
            return Error{bits.error()};
        config.source_prefix_v6 = static_cast<int>(*bits);
    }
    auto rate = [&](std::string_view key, std::string_view burst_key, std::optional<double>& out,
                    double& burst) -> std::optional<Error> {
        const toml::node* n = r.get(key);
        const toml::node* b = r.get(burst_key);
        if (!n) {
            if (b)
                return r.error(*b, std::string(burst_key) + " goes with " + std::string(key));
            return std::nullopt;
        }
        const auto* text = n->as_string();
        auto per_second = text ? parse_rate(text->get()) : Result<double>(Error{"it is not a string"});
        if (!per_second)
            return r.error(*n, std::string(key) + ": " + per_second.error());
        out = *per_second;
        burst = default_burst(*per_second);
        if (b) {
            auto value = r.integer(*b, burst_key, 1, kMaxBurst);
            if (!value)
                return Error{value.error()};
            burst = static_cast<double>(*value);
        }
        return std::nullopt;
    };
    if (auto e = rate("rate", "burst", config.rate, config.burst))
        return e;
    if (auto e = rate("rate_per_source", "burst_per_source", config.rate_per_source, config.burst_per_source))
        return e;
    if (auto e = rate("stderr_rate", "stderr_burst", config.stderr_rate, config.stderr_burst))
        return e;

    std::vector<Cidr> lists[2];
    const char* names[2] = {"allow", "deny"};
    for (int i = 0; i < 2; ++i) {
        const toml::node* n = r.get(names[i]);
        if (!n)
            continue;
        auto items = r.strings(*n, names[i], false);
        if (!items)
            return Error{items.error()};
        for (const auto& [text, line] : *items) {
            auto cidr = Cidr::parse(text);
            if (!cidr)
                return r.error(*n, std::string(names[i]) + ": " + cidr.error());
            lists[i].push_back(*cidr);
        }
    }
    config.access = AccessList(std::move(lists[0]), std::move(lists[1]));

    if (const toml::node* n = r.get("backlog")) {
        if (config.protocol == Protocol::kUdp)
            return r.error(*n, "backlog is for stream sockets (tcp, unix)");
        auto value = r.integer(*n, "backlog", 1, 65535);
        if (!value)
            return Error{value.error()};
        config.backlog = static_cast<int>(*value);
    }
    return std::nullopt;
}

std::optional<Error> read_lifetime(const ServiceReader& r, ServiceConfig& config)
{
    if (const toml::node* n = r.get("timeout")) {
        auto timeout = r.duration(*n, "timeout");
        if (!timeout)
            return Error{timeout.error()};
        config.timeout = *timeout;
    }
    if (const toml::node* n = r.get("kill_grace")) {
        auto grace = r.duration(*n, "kill_grace");
        if (!grace)
            return Error{grace.error()};
        config.kill_grace = *grace;
    }
    for (const RlimitKey& k : kRlimitKeys) {
        if (const toml::node* n = r.get(k.key)) {
            auto value = r.limit(*n, k.key, k.bytes);
            if (!value)
                return Error{value.error()};
            config.rlimits.push_back({k.resource, *value});
        }
    }
    return std::nullopt;
}

std::optional<Error> read_socket_ownership(const ServiceReader& r, ServiceConfig& config)
{
    for (std::string_view key : {"socket_mode", "socket_user", "socket_group"})
        if (const toml::node* node = r.get(key); node && config.protocol != Protocol::kUnix)
            return r.error(*node, std::string(key) + " is for unix sockets (protocol = \"unix\")");
    if (const toml::node* node = r.get("socket_mode")) {
        auto mode = r.file_mode(*node, "socket_mode");
        if (!mode)
            return Error{mode.error()};
        config.socket_mode = *mode;
    }
    if (const toml::node* node = r.get("socket_user")) {
        auto name = r.string(*node, "socket_user");
        auto uid = name ? resolve_uid(*name) : Result<uid_t>(Error{name.error()});
        if (!uid)
            return r.error(*node, uid.error());
        config.socket_uid = *uid;
    }
    if (const toml::node* node = r.get("socket_group")) {
        auto name = r.string(*node, "socket_group");
        auto gid = name ? resolve_gid(*name) : Result<gid_t>(Error{name.error()});
        if (!gid)
            return r.error(*node, gid.error());
        config.socket_gid = *gid;
    }
    return std::nullopt;
}

Result<ServiceConfig> parse_service(const Source& src, const toml::key& name, const toml::node& node)
{
    std::string service(name.str());
    if (!valid_service_name(service))
        return src.at(name, "service name '" + service
                                + "' may only use letters, digits, '_', '-' and '.' (at most 64)");
    const toml::table* table = node.as_table();
    if (!table)
        return src.at(name, "service." + service + " must be a table");

    ServiceConfig config;
    config.name = service;
    config.file = src.path;
    config.line = Source::line_of(node);
    for (const auto& [key, value] : *table) {
        if (std::find(std::begin(kServiceKeys), std::end(kServiceKeys), key.str()) == std::end(kServiceKeys))
            return src.at(key, "service '" + service + "': unknown key '" + std::string(key.str()) + "'");
    }
    ServiceReader r(src, config.name, *table);

    if (const toml::node* p = r.get("protocol")) {
        auto protocol = r.choice<Protocol>(
            *p, "protocol", {{"tcp", Protocol::kTcp}, {"udp", Protocol::kUdp}, {"unix", Protocol::kUnix}});
        if (!protocol)
            return Error{protocol.error()};
        config.protocol = *protocol;
    }
    if (!r.get("listen"))
        return src.at(config.line, "service '" + service + "': missing key 'listen'");
    if (auto e = read_listen(r, src, config))
        return *e;

    if (const toml::node* b = r.get("builtin")) {
        auto builtin = r.choice<Builtin>(*b, "builtin",
                                         {{"echo", Builtin::kEcho},
                                          {"discard", Builtin::kDiscard},
                                          {"chargen", Builtin::kChargen},
                                          {"daytime", Builtin::kDaytime},
                                          {"time", Builtin::kTime}});
        if (!builtin)
            return Error{builtin.error()};
        config.builtin = *builtin;
        for (std::string_view key : kSpawnKeys)
            if (const toml::node* n = r.get(key))
                return r.error(*n, std::string(key) + " does not apply to a builtin (it runs inside superd)");
        if (config.protocol == Protocol::kUnix)
            return r.error(*b, "builtins serve TCP and UDP, not unix sockets");
        if (const toml::node* n = r.get("allow_amplification")) {
            auto allow = r.boolean(*n, "allow_amplification");
            if (!allow)
                return Error{allow.error()};
            config.allow_amplification = *allow;
        }
    } else if (auto key = std::find_if(std::begin(kBuiltinKeys), std::end(kBuiltinKeys),
                                       [&](std::string_view k) { return r.get(k) != nullptr; });
               key != std::end(kBuiltinKeys)) {
        return r.error(*r.get(*key), std::string(*key) + " applies only to builtins");
    } else if (auto e = read_spawn_settings(r, src, config)) {
        return *e;
    } else if (auto e2 = read_lifetime(r, config)) {
        return *e2;
    }
    if (auto e = read_admission(r, config))
        return *e;
    if (auto e = read_socket_ownership(r, config))
        return *e;
    return config;
}

std::string where(const ServiceConfig& s, int line) { return s.file + ":" + std::to_string(line); }

// Two listeners clash when bind() would refuse the second: the same kind of
// socket, family and port, and the same address or a wildcard on either side.
// Each is looked up, not compared with every other (20,000 services must not
// take seconds): by kind and address for the same address, and by kind,
// family and port for a wildcard against the first other address there.
// Listeners checked before never clash with each other, so the first match
// found is the one a pairwise search would find.
class ListenerIndex {
public:
    struct Owner {
        size_t service;
        size_t listener;
    };

    std::optional<Owner> clash(const ServiceConfig& s, const SocketAddress& a) const
    {
        if (auto same = exact_.find(exact_key(s, a)); same != exact_.end())
            return same->second;
        auto port = ports_.find(port_key(s, a));
        if (port == ports_.end())
            return std::nullopt;
        return a.is_wildcard() ? port->second.specific : port->second.wildcard;
    }

    void add(const ServiceConfig& s, const SocketAddress& a, Owner owner)
    {
        exact_.emplace(exact_key(s, a), owner);
        Port& port = ports_[port_key(s, a)];
        std::optional<Owner>& slot = a.is_wildcard() ? port.wildcard : port.specific;
        if (!slot)
            slot = owner;
    }

private:
    struct Port {
        std::optional<Owner> wildcard, specific; // the first of each
    };
    static bool stream(const ServiceConfig& s) { return s.protocol != Protocol::kUdp; }
    static std::string exact_key(const ServiceConfig& s, const SocketAddress& a)
    {
        return (stream(s) ? "s " : "d ") + a.to_string();
    }
    static uint64_t port_key(const ServiceConfig& s, const SocketAddress& a)
    {
        return (uint64_t{stream(s)} << 48) | (static_cast<uint64_t>(a.family()) << 16) | a.port();
    }

    std::unordered_map<std::string, Owner> exact_;
    std::unordered_map<uint64_t, Port> ports_;
};

std::optional<Error> check_unique(const std::vector<ServiceConfig>& services)
{
    auto error_at = [](const ServiceConfig& s, int line, const std::string& message) {
        return Error{where(s, line) + ": " + message};
    };
    std::unordered_map<std::string_view, size_t> names;
    ListenerIndex listeners;
    for (size_t i = 0; i < services.size(); ++i) {
        const ServiceConfig& mine = services[i];
        if (auto [first, added] = names.emplace(mine.name, i); !added) {
            const ServiceConfig& other = services[first->second];
            return error_at(mine, mine.line,
                            "service '" + mine.name + "' is already defined at " + where(other, other.line));
        }
        for (size_t k = 0; k < mine.listen.size(); ++k) {
            const ListenAddress& la = mine.listen[k];
            auto owner = listeners.clash(mine, la.address);
            // The two sockets of one "PORT" entry are one listen address.
            if (owner && !(owner->service == i && services[i].listen[owner->listener].entry == la.entry)) {
                const ServiceConfig& other = services[owner->service];
                const ListenAddress& lb = other.listen[owner->listener];
                return error_at(mine, la.line,
                                "service '" + mine.name + "': " + la.text + " is already used by service '"
                                    + other.name + "' (" + lb.text + " at " + where(other, lb.line) + ")");
            }
            listeners.add(mine, la.address, {i, k});
        }
    }
    return std::nullopt;
}

// Reads the [service.NAME] tables of one TOML document into `out`; with
// `main`, also its [superd] table into `includes` and `inetd_conf`.
// What only the main file's [superd] table says.
struct MainSettings {
    std::vector<std::pair<std::string, int>> includes; // patterns and their lines
    std::string inetd_conf;
    int inetd_conf_line = 0;
    std::optional<unsigned> max_children;
};

std::optional<Error> read_document(const Source& src, const toml::table& root, bool main,
                                   std::vector<ServiceConfig>& out, MainSettings& settings)
{
    auto& includes = settings.includes;
    auto& inetd_conf = settings.inetd_conf;
    size_t first = out.size();
    for (const auto& [key, value] : root) {
        if (key == "superd") {
            if (!main)
                return src.at(key, "[superd] belongs in the main config file, not in an included one");
            const toml::table* table = value.as_table();
            if (!table)
                return src.at(key, "'superd' must be a table");
            for (const auto& [k, v] : *table) {
                if (k == "include") {
                    const toml::array* array = v.as_array();
                    if (!array && !v.as_string())
                        return src.at(v, "include must be a list of file patterns");
                    auto push = [&](const toml::node& n) -> std::optional<Error> {
                        if (!n.as_string() || n.as_string()->get().empty())
                            return src.at(n, "include must be a list of file patterns");
                        includes.emplace_back(src.absolute(n.as_string()->get()), Source::line_of(n));
                        return std::nullopt;
                    };
                    if (array) {
                        for (const toml::node& n : *array)
                            if (auto e = push(n))
                                return e;
                    } else if (auto e = push(v)) {
                        return e;
                    }
                } else if (k == "max_children") {
                    const auto* cap = v.as_integer();
                    if (!cap || cap->get() < 1 || cap->get() > 1000000)
                        return src.at(v, "max_children must be an integer between 1 and 1000000");
                    settings.max_children = static_cast<unsigned>(cap->get());
                } else if (k == "inetd_conf") {
                    if (!v.as_string() || v.as_string()->get().empty())
                        return src.at(v, "inetd_conf must be a file name");
                    inetd_conf = src.absolute(v.as_string()->get());
                    settings.inetd_conf_line = Source::line_of(v);
                } else {
                    return src.at(k, "[superd]: unknown key '" + std::string(k.str()) + "'");
                }
            }
        } else if (key == "service") {
            const toml::table* services = value.as_table();
            if (!services)
                return src.at(key, "'service' must be a table of [service.NAME] tables");
            for (const auto& [name, node] : *services) {
                auto service = parse_service(src, name, node);
                if (!service)
                    return Error{service.error()};
                out.push_back(std::move(*service));
            }
        } else {
            return src.at(key, "unknown key '" + std::string(key.str()) + "' (expected [superd] or [service.NAME])");
        }
    }
    // toml++ keeps keys sorted; the file's own order reads better in logs and
    // makes a clash point at the later of two lines.
    std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                     [](const ServiceConfig& a, const ServiceConfig& b) { return a.line < b.line; });
    return std::nullopt;
}

// toml++ 3.3 (Debian 12's) recurses once per segment of a dotted key or
// table header, and a long enough one overflows the stack (fixed in 3.4 by
// TOML_MAX_DOTTED_KEYS_DEPTH). A reload must never crash the daemon, so keys
// deeper than any real config are refused before parsing.
//
// The scan counts the segments of each key, not the dots of a line: dots in
// values (1.5, a list of floats, a time) are no nesting. It keeps just enough
// of TOML's grammar to know where keys are: a line's start outside any value,
// and after '{' or ',' in an inline table; a key ends at '='. Strings and
// comments are skipped. Where it could be wrong, it errs on counting: a dot
// it counts that toml++ would read as a value costs at most a false refusal
// of a file toml++ refuses anyway.
constexpr int kMaxKeyDepth = 64;

std::optional<Error> too_deep(const Source& src, std::string_view text)
{
    if (text.size() > kMaxConfigSize)
        return src.at(1, std::string("the file is ") + kTooLarge);
    std::vector<char> open; // '[' and '{' of the values around this point
    bool in_key = true;
    int line = 1, segments = 1;
    auto start_key = [&] {
        in_key = true;
        segments = 1;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\n') {
            ++line;
            if (open.empty())
                start_key();
        } else if (c == '#') {
            while (i + 1 < text.size() && text[i + 1] != '\n')
                ++i;
        } else if (c == '"' || c == '\'') {
            bool multi = text.substr(i, 3) == std::string(3, c);
            std::string_view close = multi ? text.substr(i, 3) : text.substr(i, 1);
            size_t j = i + close.size();
            while (j < text.size() && text.substr(j, close.size()) != close) {
                if (c == '"' && text[j] == '\\')
                    ++j;
                if (j < text.size() && text[j] == '\n')
                    ++line;
                if (!multi && j < text.size() && text[j] == '\n')
                    break; // an unterminated string: the parser says so
                ++j;
            }
            i = j + close.size() - 1;
        } else if (in_key) {
            if (c == '=' || (c == '}' && !open.empty() && open.back() == '{')) {
                in_key = false; // a value follows, or an inline table ({} or {a = 1,}) that is one ended
                if (c == '}')
                    open.pop_back();
            }
            else if (c == '.' && ++segments > kMaxKeyDepth)
                return src.at(line, "a key nested more than " + std::to_string(kMaxKeyDepth) + " levels deep");
        } else if (c == '[' || c == '{') {
            open.push_back(c);
            if (c == '{')
                start_key();
        } else if ((c == ']' || c == '}') && !open.empty() && open.back() == (c == ']' ? '[' : '{')) {
            open.pop_back();
        } else if (c == ',' && !open.empty() && open.back() == '{') {
            start_key();
        }
    }
    return std::nullopt;
}

Result<toml::table> parse_toml(const Source& src, std::string_view text)
{
    if (auto e = too_deep(src, text))
        return *e;
    try {
        return toml::parse(text, src.path);
    } catch (const toml::parse_error& e) {
        return src.at(static_cast<int>(e.source().begin.line), std::string(e.description()));
    }
}

// The folder a pattern's matches live in: its part before the first
// component with a wildcard.
fs::path fixed_folder(const std::string& pattern)
{
    fs::path folder;
    for (const fs::path& part : fs::path(pattern)) {
        if (part.string().find_first_of("*?[\\") != std::string::npos)
            return folder;
        folder /= part;
    }
    return folder.parent_path();
}

// Everything a configuration is made of, gathered file by file.
struct Loader {
    Config config;
    std::string inetd_conf; // named in the main file's [superd], at this line
    int inetd_conf_line = 0;
    std::optional<Source> main;
    // Every file read, by device and inode, so that none is read twice
    // whatever path leads to it (a relative --config, a link).
    std::set<FileId> read;

    std::optional<Error> main_file(std::string_view text, const std::string& path, std::optional<FileId> id)
    {
        main = source_for(path);
        const Source& src = *main;
        config.files.push_back(path);
        if (id)
            read.insert(*id);
        auto root = parse_toml(src, text);
        if (!root)
            return Error{root.error()};
        MainSettings settings;
        if (auto e = read_document(src, *root, true, config.services, settings))
            return e;
        inetd_conf = settings.inetd_conf;
        inetd_conf_line = settings.inetd_conf_line;
        config.max_children = settings.max_children;
        for (const auto& [pattern, line] : settings.includes)
            if (auto e = included(src, pattern, line))
                return e;
        return std::nullopt;
    }

    // A pattern matching no file is fine: a drop-in folder may be empty. A
    // file already read is skipped: "*.toml" beside the main file matches
    // the main file itself.
    std::optional<Error> included(const Source& from, const std::string& pattern, int line)
    {
        // An empty folder that others may write to is the way in for a
        // drop-in of theirs, so the folder is checked before what it holds.
        if (superd_is_root())
            if (auto why = untrusted_folders(fixed_folder(pattern)))
                return from.at(line, "include '" + pattern + "': " + *why);
        glob_t matches{};
        // A folder that does not exist holds no files; one that cannot be
        // read might hold services, which is an error.
        auto unreadable = [](const char*, int err) { return err == ENOENT || err == ENOTDIR ? 0 : 1; };
        int rc = ::glob(pattern.c_str(), 0, unreadable, &matches);
        std::vector<std::string> files(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
        ::globfree(&matches);
        if (rc != 0 && rc != GLOB_NOMATCH)
            return from.at(line, "include '" + pattern + "': a folder cannot be read");
        for (const std::string& file : files) {
            auto text = read_file(file);
            if (!text)
                return from.at(line, text.error());
            if (!read.insert(text->id).second)
                continue;
            config.files.push_back(file);
            Source src = source_for(file);
            auto root = parse_toml(src, text->text);
            if (!root)
                return Error{root.error()};
            MainSettings unused;
            if (auto e = read_document(src, *root, false, config.services, unused))
                return e;
        }
        return std::nullopt;
    }

    // `line` is where the main file names it; 0 when the command line does.
    std::optional<Error> inetd_file(const std::string& path, int line)
    {
        auto text = read_file(path);
        if (!text)
            return line && main ? main->at(line, text.error()) : Error{text.error()};
        if (!read.insert(text->id).second)
            return std::nullopt;
        config.files.push_back(path);
        auto services = parse_inetd_conf(text->text, path);
        if (!services)
            return Error{services.error()};
        for (ServiceConfig& s : *services)
            config.services.push_back(std::move(s));
        return std::nullopt;
    }

    Result<Config> finish()
    {
        if (!inetd_conf.empty())
            if (auto e = inetd_file(inetd_conf, inetd_conf_line))
                return *e;
        if (config.services.empty()) {
            std::string file = config.files.empty() ? std::string("config") : config.files.front();
            return Error{file + ":1: no services defined (add a [service.NAME] table)"};
        }
        if (auto e = check_unique(config.services))
            return *e;
        return std::move(config);
    }
};

// Runs `load`, turning an exception into an error: a reload must never end
// superd, and running out of memory is no reason to.
template <typename Load>
Result<Config> guarded(const std::string& path, Load load)
{
    try {
        return load();
    } catch (const std::bad_alloc&) {
        return Error{path + ": out of memory while loading the configuration"};
    } catch (const std::exception& e) {
        return Error{path + ": cannot load the configuration: " + e.what()};
    }
}

} // namespace

const char* to_string(Builtin builtin)
{
    switch (builtin) {
    case Builtin::kEcho:
        return "echo";
    case Builtin::kDiscard:
        return "discard";
    case Builtin::kChargen:
        return "chargen";
    case Builtin::kDaytime:
        return "daytime";
    case Builtin::kTime:
        return "time";
    }
    return "?";
}

std::optional<Builtin> builtin_named(std::string_view name)
{
    for (Builtin b : {Builtin::kEcho, Builtin::kDiscard, Builtin::kChargen, Builtin::kDaytime, Builtin::kTime})
        if (name == to_string(b))
            return b;
    return std::nullopt;
}

size_t Config::listener_count() const
{
    size_t n = 0;
    for (const ServiceConfig& s : services)
        n += s.listen.size();
    return n;
}

Result<Config> parse_config(std::string_view text, const std::string& path)
{
    return guarded(path, [&]() -> Result<Config> {
        Loader loader;
        struct stat st;
        std::optional<FileId> id;
        if (::stat(path.c_str(), &st) == 0)
            id = FileId{st.st_dev, st.st_ino};
        if (auto e = loader.main_file(text, path, id))
            return *e;
        return loader.finish();
    });
}

Result<Config> load_config(const ConfigSources& sources)
{
    return guarded(sources.config.empty() ? sources.inetd_conf : sources.config, [&]() -> Result<Config> {
        Loader loader;
        if (!sources.config.empty()) {
            auto file = read_file(sources.config);
            if (!file)
                return Error{file.error()};
            if (auto e = loader.main_file(file->text, sources.config, file->id))
                return *e;
        }
        if (!sources.inetd_conf.empty())
            if (auto e = loader.inetd_file(sources.inetd_conf, 0))
                return *e;
        return loader.finish();
    });
}

Result<Config> load_config(const std::string& path) { return load_config(ConfigSources{path, ""}); }

} // namespace superd

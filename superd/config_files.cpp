#include "superd/builtin_kind.h"
#include "superd/config.h"
#include "superd/config_keys.h"
#include "superd/fd.h"
#include "superd/inetd_conf.h"
#include "superd/trust.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

// Loading a configuration: the main TOML file, its drop-ins, an inetd.conf,
// and the checks that span services (a name or an address used twice). What
// one service's table says is config_keys.cpp's job.

namespace superd {

namespace {

namespace fs = std::filesystem;

// What a file that is not a regular one is, for the message.
struct FileKind {
    mode_t type;
    const char* name;
};
constexpr FileKind kFileKinds[] = {
    {S_IFDIR, "a directory"},    {S_IFIFO, "a FIFO"},    {S_IFCHR, "a character device"},
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
                                "service '" + mine.name + "': " + la.text + " is already used by service '" + other.name
                                    + "' (" + lb.text + " at " + where(other, lb.line) + ")");
            }
            listeners.add(mine, la.address, {i, k});
        }
    }
    // A forward into a forward listener of superd's own would take a
    // connection and a backend connect per connection, until no fd is left.
    for (const ServiceConfig& mine : services) {
        if (mine.builtin != find_builtin("forward"))
            continue;
        auto owner = listeners.clash(mine, mine.forward_to);
        if (owner && services[owner->service].builtin == mine.builtin) {
            const ServiceConfig& other = services[owner->service];
            return error_at(mine, mine.forward_to_line,
                            "service '" + mine.name + "': forward_to " + mine.forward_to.to_string()
                                + " is superd's own listener of service '" + other.name
                                + "', a forward too: each connection would forward to itself");
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
    std::optional<std::string> control;
    std::optional<gid_t> control_group;
    std::string control_group_name;
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
                } else if (k == "control") {
                    if (!v.as_string())
                        return src.at(v, "control must be the path of the control socket, or \"\" for none");
                    std::string path = v.as_string()->get();
                    if (!path.empty())
                        path = src.absolute(path);
                    // The kernel keeps at most 107 bytes of a unix socket's path.
                    if (path.size() >= sizeof(sockaddr_un::sun_path))
                        return src.at(v, "control: the path is longer than a unix socket's "
                                             + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
                    settings.control = path;
                } else if (k == "control_group") {
                    if (!v.as_string() || v.as_string()->get().empty())
                        return src.at(v, "control_group must be a group name or number");
                    auto gid = resolve_gid(v.as_string()->get());
                    if (!gid)
                        return src.at(v, "control_group: " + gid.error());
                    settings.control_group = *gid;
                    settings.control_group_name = v.as_string()->get();
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
            // A ServiceConfig is large: growing the vector would move each
            // one several times over, a sixth of a 20,000-service load.
            out.reserve(out.size() + services->size());
            for (const auto& [name, node] : *services) {
                auto service = read_service(src, name, node);
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
            } else if (c == '.' && ++segments > kMaxKeyDepth)
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
        main = Source::of(path);
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
        if (settings.control) {
            config.control.path = *settings.control;
            config.control.required = true;
        }
        config.control.group = settings.control_group;
        config.control.group_name = settings.control_group_name;
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
            Source src = Source::of(file);
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
        if (sources.control) {
            loader.config.control.path = *sources.control;
            loader.config.control.required = true;
        }
        return loader.finish();
    });
}

Result<Config> load_config(const std::string& path) { return load_config(ConfigSources{path, "", std::nullopt}); }

} // namespace superd

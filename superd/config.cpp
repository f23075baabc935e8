#include "superd/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace superd {

namespace {

namespace fs = std::filesystem;

// Where errors point: the file and the folder that relative paths start from.
struct Source {
    std::string path;
    fs::path folder;

    Error at(int line, const std::string& message) const
    {
        return Error{path + ":" + std::to_string(line) + ": " + message};
    }
    Error at(const toml::node& node, const std::string& message) const
    {
        return at(static_cast<int>(node.source().begin.line), message);
    }
    Error at(const toml::key& key, const std::string& message) const
    {
        return at(static_cast<int>(key.source().begin.line), message);
    }
};

bool valid_service_name(std::string_view name)
{
    if (name.empty() || name.size() > 64)
        return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
                  || c == '-' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

// The list of strings at `node` with their lines, or an error naming `what`.
// Where `lone_string_ok`, a string alone is taken as a list of one.
Result<std::vector<std::pair<std::string, int>>> string_list(const Source& src, const toml::node& node,
                                                             const std::string& what, bool lone_string_ok)
{
    std::vector<std::pair<std::string, int>> items;
    if (auto s = node.as_string(); s && lone_string_ok) {
        items.emplace_back(s->get(), static_cast<int>(node.source().begin.line));
        return items;
    }
    const toml::array* array = node.as_array();
    if (!array)
        return src.at(node, what + " must be a list of strings");
    for (const toml::node& element : *array) {
        auto s = element.as_string();
        if (!s)
            return src.at(element, what + " must be a list of strings");
        items.emplace_back(s->get(), static_cast<int>(element.source().begin.line));
    }
    return items;
}

// Checks that `program` names an executable file; returns its absolute path.
Result<std::string> resolve_program(const Source& src, const toml::node& node, const std::string& service)
{
    const auto* value = node.as_string();
    if (!value || value->get().empty())
        return src.at(node, "service '" + service + "': program must be a non-empty string");
    fs::path path(value->get());
    if (path.is_relative())
        path = src.folder / path;
    path = path.lexically_normal();

    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
        return src.at(node, "service '" + service + "': program " + path.string() + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        return src.at(node, "service '" + service + "': program " + path.string() + " is not a regular file");
    if (::access(path.c_str(), X_OK) != 0)
        return src.at(node, "service '" + service + "': program " + path.string() + " is not executable");
    return path.string();
}

Result<ServiceConfig> parse_service(const Source& src, const toml::key& name, const toml::node& node)
{
    std::string service(name.str());
    if (!valid_service_name(service))
        return src.at(name, "service name '" + service + "' may only use letters, digits, '_', '-' and '.' "
                                                          "(at most 64)");
    const toml::table* table = node.as_table();
    if (!table)
        return src.at(name, "service." + service + " must be a table");

    ServiceConfig config;
    config.name = service;
    config.line = static_cast<int>(node.source().begin.line);
    bool has_listen = false, has_program = false;

    for (const auto& [key, value] : *table) {
        if (key == "listen") {
            auto items = string_list(src, value, "service '" + service + "': listen", true);
            if (!items)
                return Error{items.error()};
            if (items->empty())
                return src.at(value, "service '" + service + "': listen is empty");
            for (const auto& [text, line] : *items) {
                auto addresses = parse_listen_address(text);
                if (!addresses)
                    return src.at(line, "service '" + service + "': listen " + addresses.error());
                for (const SocketAddress& a : *addresses)
                    config.listen.push_back({text, a, line});
            }
            has_listen = true;
        } else if (key == "program") {
            auto program = resolve_program(src, value, service);
            if (!program)
                return Error{program.error()};
            config.program = std::move(*program);
            has_program = true;
        } else if (key == "args") {
            auto items = string_list(src, value, "service '" + service + "': args", false);
            if (!items)
                return Error{items.error()};
            if (items->empty())
                return src.at(value, "service '" + service + "': args is empty (argv[0] is needed)");
            for (auto& item : *items)
                config.args.push_back(std::move(item.first));
        } else {
            return src.at(key, "service '" + service + "': unknown key '" + std::string(key.str()) + "'");
        }
    }
    if (!has_listen)
        return src.at(config.line, "service '" + service + "': missing key 'listen'");
    if (!has_program)
        return src.at(config.line, "service '" + service + "': missing key 'program'");
    if (config.args.empty())
        config.args.push_back(fs::path(config.program).filename().string());
    return config;
}

// Two listeners clash when bind() would refuse the second: the same family and
// port, and the same address or a wildcard on either side.
bool clash(const SocketAddress& a, const SocketAddress& b)
{
    return a.family() == b.family() && a.port() == b.port() && (a == b || a.is_wildcard() || b.is_wildcard());
}

std::optional<Error> check_unique_listeners(const Source& src, const std::vector<ServiceConfig>& services)
{
    for (size_t i = 0; i < services.size(); ++i) {
        for (const ListenAddress& mine : services[i].listen) {
            for (size_t j = 0; j <= i; ++j) {
                for (const ListenAddress& theirs : services[j].listen) {
                    if (&theirs == &mine)
                        break;
                    if (!clash(mine.address, theirs.address))
                        continue;
                    if (i == j && mine.line == theirs.line && mine.text == theirs.text)
                        continue; // the two sockets of one "PORT" entry
                    return src.at(mine.line, "service '" + services[i].name + "': " + mine.text
                                                 + " is already used by service '" + services[j].name + "' ("
                                                 + theirs.text + " at line " + std::to_string(theirs.line) + ")");
                }
            }
        }
    }
    return std::nullopt;
}

} // namespace

size_t Config::listener_count() const
{
    size_t n = 0;
    for (const ServiceConfig& s : services)
        n += s.listen.size();
    return n;
}

Result<Config> parse_config(std::string_view text, const std::string& path)
{
    Source src{path, fs::absolute(fs::path(path)).parent_path()};

    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        return src.at(static_cast<int>(e.source().begin.line), std::string(e.description()));
    }

    Config config;
    config.path = path;
    for (const auto& [key, value] : root) {
        if (key != "service")
            return src.at(key, "unknown key '" + std::string(key.str()) + "' (expected [service.NAME] tables)");
        const toml::table* services = value.as_table();
        if (!services)
            return src.at(key, "'service' must be a table of [service.NAME] tables");
        for (const auto& [name, node] : *services) {
            auto service = parse_service(src, name, node);
            if (!service)
                return Error{service.error()};
            config.services.push_back(std::move(*service));
        }
    }
    if (config.services.empty())
        return src.at(1, "no services defined (add a [service.NAME] table)");
    // toml++ keeps keys sorted; the file's own order reads better in logs and
    // makes a clash point at the later of the two lines.
    std::stable_sort(config.services.begin(), config.services.end(),
                     [](const ServiceConfig& a, const ServiceConfig& b) { return a.line < b.line; });
    if (auto error = check_unique_listeners(src, config.services))
        return *error;
    return config;
}

Result<Config> load_config(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error{path + ": cannot read: " + std::strerror(errno)};
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad())
        return Error{path + ": cannot read: " + std::strerror(errno)};
    return parse_config(contents.str(), path);
}

} // namespace superd

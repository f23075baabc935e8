// The keys of a [service.NAME] table: one table with a row per key, saying
// which kinds of service the key applies to and how its value is read into
// a ServiceConfig. Reading a service is walking that table; loading files
// (the main file, drop-ins, inetd.conf) is config_files.cpp's job, and this
// module reads no file and opens nothing (it does look up users and check
// that a program exists, as a value's meaning needs).
//
// A new key is one row in kServiceKeys (config_keys.cpp), a ServiceConfig
// field, and a line in the README's config reference and in superd.toml(5)
// (man/superd.toml.5.scd; tests check that both name the table's keys). A
// builtin's own setting is also named in that builtin's row (builtin_kind.h).
#pragma once

#include "superd/config.h"
#include "superd/result.h"

#include <toml++/toml.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace superd {

// Where errors point: a file, and the folder its relative paths start from.
struct Source {
    std::string path;
    std::filesystem::path folder;

    static Source of(const std::string& path);

    Error at(int line, const std::string& message) const;
    Error at(const toml::node& node, const std::string& message) const { return at(line_of(node), message); }
    Error at(const toml::key& key, const std::string& message) const;
    static int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

    // `p` as an absolute path, relative ones from `folder`.
    std::string absolute(const std::string& p) const;
};

// The kinds of service a key applies to, as bits: a key applies to a
// service when both the service's kind and its protocol are among them.
enum ServiceKinds : unsigned {
    kNowaitProgram = 1u << 0,
    kWaitProgram = 1u << 1,
    kBuiltin = 1u << 2,
    kTcp = 1u << 3,
    kUdp = 1u << 4,
    kUnix = 1u << 5,
    // A builtin's own setting: applies to the builtins whose row in the
    // builtin table names the key (BuiltinKind::settings), and no other.
    kOwnSetting = 1u << 6,

    kProgram = kNowaitProgram | kWaitProgram,
    // Services whose connections superd accepts itself; a wait service's
    // program accepts its own, so admission cannot apply to it.
    kAccepted = kNowaitProgram | kBuiltin,
    kAnyKind = kProgram | kBuiltin,
    kStream = kTcp | kUnix,
    kAnyProtocol = kTcp | kUdp | kUnix,
};

class Value;

// One key of [service.NAME].
//
// `read` stores the key's value into the ServiceConfig, or says what is
// wrong with it at the value's own line. It runs only when the key applies
// to the service, and only when the key is set, unless `always`: then it
// also runs without the key, to set a default that depends on other keys or
// to say that a required key is missing. A key whose `read` is null is read
// by the row named in its comment (burst with rate: one needs the other);
// its row still says where it applies.
//
// Rows are read in table order, and a row may rely on what rows above it
// stored: the kind of service is known once protocol, builtin and mode are.
struct ServiceKey {
    std::string_view name;
    unsigned applies; // ServiceKinds: kinds | protocols
    std::optional<Error> (*read)(const Value& value, ServiceConfig& config);
    bool always = false;
};

std::span<const ServiceKey> service_keys();

// The key `name` when a [service.NAME] table may hold it.
const ServiceKey* service_key(std::string_view name);

// Reads the table `node` of [service.NAME] (`name` as written, for its line):
// every key known, applying to this kind of service, and well formed, each
// error at its own line.
Result<ServiceConfig> read_service(const Source& src, const toml::key& name, const toml::node& node);

} // namespace superd

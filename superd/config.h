// The configuration: what superd serves, as read from TOML files and,
// optionally, a classic inetd.conf.
//
// load_config() parses and validates everything with no side effects on the
// daemon: it reads files, looks up users and checks that programs exist,
// nothing more. Any problem comes back as one error "FILE:LINE: message", so
// a caller can refuse the whole configuration and keep running what it had;
// no exception leaves it, and no file can make it block or read without end
// (only regular files of at most 16 MiB are read). `superd --check` and a
// reload run exactly this.
//
// Run as root, it also refuses what someone other than root could change:
// config files, drop-ins, an inetd.conf, include folders and programs (and
// the folders above them) that are not root's or that group or others may
// write, and set-user-ID programs unless a service allows them (trust.h).
//
// Three files implement it: config_files.cpp loads files (load_config,
// parse_config: includes, inetd.conf, the checks across services),
// config_keys.cpp reads one service's keys through its table of keys, and
// config.cpp holds the rest.
//
//     [superd]
//     include    = ["superd.d/*.toml"]   # more [service.NAME] tables
//     inetd_conf = "/etc/inetd.conf"     # optional
//     control    = "/run/superd/control.sock"   # the default; "" for none
//     control_group = "adm"              # optional: may use superctl too
//
//     [service.echo]
//     listen  = ["127.0.0.1:7007", "[::1]:7007"]
//     program = "/usr/libexec/superd/echo"   # or relative to the file's folder
//     args    = ["echo"]                     # optional argv, argv[0] included
#pragma once

#include "superd/address.h"
#include "superd/identity.h"
#include "superd/limits.h"
#include "superd/proxy_header.h"
#include "superd/result.h"
#include "superd/sandbox.h"

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

enum class Mode { kNowait, kWait };
enum class FdConvention { kInetd, kSystemd };
enum class StderrTarget { kSocket, kLog, kNull };
enum class OnLimit { kQueue, kReject };

// setrlimit() for a spawned program: soft and hard limit alike.
struct ResourceLimit {
    int resource;   // RLIMIT_NOFILE, ...
    uint64_t value; // RLIM_INFINITY for "unlimited"
};

enum class TlsVersion { k1_2, k1_3 };

// [service.NAME.tls]: superd terminates TLS for the service (tls.h).
struct TlsSettings {
    std::string cert;      // PEM chain, leaf first
    std::string key;       // PEM private key (RSA, ECDSA or Ed25519), mode 0600 or stricter
    std::string client_ca; // empty: no client certificate asked for; else required and verified
    TlsVersion min_version = TlsVersion::k1_2;
    std::vector<std::string> alpn; // the server's preference order; empty: no ALPN
    std::chrono::milliseconds handshake_timeout{10000};

    // Equal settings can still load a different context (the files behind
    // them may have been replaced): a reload loads again regardless.
    bool operator==(const TlsSettings&) const = default;
};

class TlsContext;

// A row of the builtin table (builtin_kind.h), which holds the lookup by name.
struct BuiltinKind;

// The PATH a program gets unless its service sets one.
inline constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct ListenAddress {
    std::string text; // as written in the file, for messages
    SocketAddress address;
    int line = 0;
    int entry = 0; // which list entry: "PORT" makes two addresses of one entry
};

struct ServiceConfig {
    std::string name;
    std::string file; // where it is defined
    int line = 0;     // where its table starts

    Protocol protocol = Protocol::kTcp;
    std::vector<ListenAddress> listen; // one socket each; "PORT" yields two
    Mode mode = Mode::kNowait;
    FdConvention fd_convention = FdConvention::kInetd;

    const BuiltinKind* builtin = nullptr; // in-process; else program and args
    std::string program;                  // absolute path
    std::vector<std::string> args;        // argv, never empty
    bool allow_setuid = false;            // a set-user-ID or set-group-ID program may run
    // UDP builtins whose reply can dwarf the datagram (chargen) answer only
    // with this set: a spoofed source would make them an amplifier.
    bool allow_amplification = false;
    std::string file_path; // file: the file it sends, absolute
    // forward: where each connection goes, how long its connect may take,
    // and which PROXY protocol header (if any) the backend gets first.
    SocketAddress forward_to;
    int forward_to_line = 0;
    std::chrono::milliseconds connect_timeout{5000};
    ProxyVersion send_proxy = ProxyVersion::kNone;
    // TLS in front of the service: its settings and the context loaded from
    // them when the file was read (the files are read again on each load);
    // a certificate about to expire is a warning, logged when it is applied.
    std::optional<TlsSettings> tls;
    std::shared_ptr<const TlsContext> tls_context;
    std::vector<std::string> tls_warnings;

    std::optional<Identity> identity;
    // [service.NAME.sandbox] (sandbox.h): the settings, and what was prepared
    // from them when the file was read (namespaces, Landlock ruleset,
    // seccomp filter), which the launcher applies in each child.
    std::optional<SandboxSettings> sandbox;
    std::shared_ptr<const Sandbox> sandbox_prepared;
    std::vector<std::string> env; // "NAME=value", PATH first; per-connection variables come later
    StderrTarget stderr_target = StderrTarget::kSocket;
    std::optional<double> stderr_rate; // stderr = "log": lines a second; none: stderr_log.h's default
    double stderr_burst = 0;
    std::string cwd; // empty: superd's own
    std::optional<mode_t> umask;
    std::optional<int> nice;

    // Admission, checked in the daemon before anything is spawned.
    std::optional<unsigned> max_instances; // children (or builtin connections) at once
    OnLimit on_limit = OnLimit::kQueue;
    std::string busy_message; // written before closing, with on_limit = "reject"
    std::optional<unsigned> max_per_source;
    int source_prefix_v4 = 32;
    int source_prefix_v6 = 64;
    std::optional<double> rate; // connections a second, for the whole service
    double burst = 0;
    std::optional<double> rate_per_source;
    double burst_per_source = 0;
    AccessList access;
    // PROXY protocol on ingress (proxy_stage.h): which header comes first,
    // from whom only, within how long. Admission then sees the header's client.
    std::optional<ProxyAccept> proxy_protocol;
    std::vector<Cidr> proxy_from;
    std::chrono::milliseconds proxy_timeout{5000};
    std::optional<int> backlog; // default: the system's maximum
    // SO_REUSEPORT: other processes (another superd, of the same user) may
    // listen on the same address, and the kernel spreads connections.
    bool reuse_port = false;

    // Lifetime and resources of a spawned program.
    std::optional<std::chrono::milliseconds> timeout;
    std::chrono::milliseconds kill_grace{2000};
    std::vector<ResourceLimit> rlimits;

    // Unix sockets only.
    std::optional<mode_t> socket_mode;
    std::optional<uid_t> socket_uid;
    std::optional<gid_t> socket_gid;
};

// Where the control socket (control.h) is and who may use it, from
// [superd] control and control_group.
struct ControlSettings {
    std::string path;           // empty: no control socket
    std::optional<gid_t> group; // its members may connect too
    std::string group_name;     // as configured, for messages
    // Named by the file or --control: a socket that cannot be made fails
    // the start or reload. The default one is given up with a warning
    // instead (superd run by a user who may not write to /run).
    bool required = false;

    bool operator==(const ControlSettings&) const = default;
};
inline constexpr const char* kDefaultControlPath = "/run/superd/control.sock";

struct Config {
    std::vector<ServiceConfig> services;  // in file order, includes after the main file
    std::optional<unsigned> max_children; // across all services
    ControlSettings control{kDefaultControlPath, std::nullopt, "", false};
    std::vector<std::string> files; // every file that was read

    size_t listener_count() const;
};

// Where a configuration comes from: a TOML file, an inetd.conf, or both
// (an inetd_conf named in the TOML file is read as well).
struct ConfigSources {
    std::string config;
    std::string inetd_conf;
    // superd --control: the control socket's path, whatever [superd] says.
    std::optional<std::string> control;
};

Result<Config> load_config(const ConfigSources& sources);
Result<Config> load_config(const std::string& path);

// Validates `text` as if it were the contents of the TOML file at `path`;
// relative paths resolve against that file's folder.
Result<Config> parse_config(std::string_view text, const std::string& path);

} // namespace superd

// The configuration: what superd serves, as read from a TOML file.
//
// load_config() parses and validates a whole file with no side effects on the
// daemon: it reads files and checks that programs exist, nothing more. Any
// problem comes back as one error "FILE:LINE: message", so a caller can refuse
// the file and keep running what it had.
//
//     [service.echo]
//     listen  = ["127.0.0.1:7007", "[::1]:7007"]
//     program = "/usr/libexec/superd/echo"   # or relative to the file's folder
//     args    = ["echo"]                     # optional argv, argv[0] included
#pragma once

#include "superd/address.h"
#include "superd/result.h"

#include <string>
#include <string_view>
#include <vector>

namespace superd {

struct ListenAddress {
    std::string text; // as written in the file, for messages
    SocketAddress address;
    int line = 0;
};

struct ServiceConfig {
    std::string name;
    std::vector<ListenAddress> listen; // one socket each; "PORT" yields two
    std::string program;               // absolute path
    std::vector<std::string> args;     // argv, never empty
    int line = 0;                      // where the service's table starts
};

struct Config {
    std::string path;
    std::vector<ServiceConfig> services;

    size_t listener_count() const;
};

// Reads and validates the file at `path`.
Result<Config> load_config(const std::string& path);

// Validates `text` as if it were the contents of the file at `path`; relative
// program paths resolve against that file's folder.
Result<Config> parse_config(std::string_view text, const std::string& path);

} // namespace superd

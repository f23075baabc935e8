// inetd.conf: the classic one-line-per-service format, read into the same
// ServiceConfig as the TOML file, so users of inetd can move to superd with
// their file as it is.
//
//   [addr:]service  stream|dgram  tcp|udp|tcp4|udp4|tcp6|udp6|tcp46|udp46|unix
//       wait|nowait[.max]  user[:group]|user[.group]  /path/to/server|internal  [argv...]
//
// "service" is a name from /etc/services or a port number (a socket path for
// unix). A line "addr:" alone sets the default address of the lines after
// it, "*:" resets it (OpenBSD). tcp and udp are IPv4, tcp6 and udp6 IPv6,
// tcp46 and udp46 both. "nowait.N" becomes a rate of N a minute (burst N),
// which delays spawns past it. Each line becomes a service named
// "SERVICE-PROTO".
#pragma once

#include "superd/config.h"
#include "superd/result.h"

#include <string>
#include <string_view>
#include <vector>

namespace superd {

Result<std::vector<ServiceConfig>> parse_inetd_conf(std::string_view text, const std::string& path);

} // namespace superd

// Whom superd trusts with what it runs as root: config files, drop-ins, an
// inetd.conf, include folders and programs, and every folder above them.
//
// As OpenSSH's StrictModes and cron do: whoever could change a config file, a
// drop-in or a program that root runs could run anything as root, so each
// must be owned by root and writable by nobody else, and so must every folder
// above it (a folder writable by others lets them swap the file). A sticky
// folder such as /tmp is fine: there, others cannot rename or remove root's
// entries. As another user superd may only use what that user can reach
// anyway, so nothing is checked then. Each check returns why not, or nothing.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>

namespace superd {

bool superd_is_root();

// Why root must not trust the file or folder `st` describes, if it must not:
// "refusing PATH: mode 0666, owner nobody:nogroup: writable by others".
std::optional<std::string> untrusted(const std::string& path, const struct stat& st);

// The first folder from `folder` up to "/" that root must not trust. A
// folder that does not exist holds nothing yet; whoever creates it owns it,
// and the next load refuses it then.
std::optional<std::string> untrusted_folders(std::filesystem::path folder);

// The folders above `path` as written and, when links lead elsewhere, above
// the file they lead to: both can be changed to change what is read.
std::optional<std::string> untrusted_path(const std::string& path);

// What keeps `path` from being run as a service, if anything: it must be
// an executable regular file and, when superd runs as root, one that only
// root can change, and not set-user-ID unless `allow_setuid`.
std::optional<std::string> program_problem(const std::string& path, bool allow_setuid = false);

} // namespace superd

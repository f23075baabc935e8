#include "superd/trust.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace superd {

namespace fs = std::filesystem;

namespace {

std::string user_name(uid_t uid)
{
    char buffer[1024];
    passwd entry{}, *found = nullptr;
    if (::getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found)
        return found->pw_name;
    return std::to_string(uid);
}

std::string group_name(gid_t gid)
{
    char buffer[1024];
    group entry{}, *found = nullptr;
    if (::getgrgid_r(gid, &entry, buffer, sizeof buffer, &found) == 0 && found)
        return found->gr_name;
    return std::to_string(gid);
}

std::string octal_mode(mode_t mode)
{
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

} // namespace

bool superd_is_root() { return ::geteuid() == 0; }

std::optional<std::string> untrusted(const std::string& path, const struct stat& st)
{
    bool sticky_folder = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
    std::vector<std::string> reasons;
    if (st.st_uid != 0)
        reasons.push_back("not owned by root");
    if ((st.st_mode & S_IWGRP) && !sticky_folder)
        reasons.push_back("writable by group " + group_name(st.st_gid));
    if ((st.st_mode & S_IWOTH) && !sticky_folder)
        reasons.push_back("writable by others");
    if (reasons.empty())
        return std::nullopt;
    std::string why = reasons.front();
    for (size_t i = 1; i < reasons.size(); ++i)
        why += " and " + reasons[i];
    return "refusing " + path + ": mode " + octal_mode(st.st_mode) + ", owner " + user_name(st.st_uid) + ":"
           + group_name(st.st_gid) + ": " + why + " (superd runs as root)";
}

std::optional<std::string> untrusted_folders(fs::path folder)
{
    for (;;) {
        struct stat st;
        if (::stat(folder.c_str(), &st) == 0) {
            if (auto why = untrusted(folder.string(), st))
                return why;
        } else if (errno != ENOENT && errno != ENOTDIR) {
            return "cannot check folder " + folder.string() + ": " + std::strerror(errno);
        }
        if (!folder.has_relative_path())
            return std::nullopt; // "/"
        folder = folder.parent_path();
    }
}

std::optional<std::string> untrusted_path(const std::string& path)
{
    std::error_code ignored;
    fs::path written = fs::absolute(path, ignored).lexically_normal().parent_path();
    if (auto why = untrusted_folders(written))
        return why;
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
    if (real && fs::path(real.get()).parent_path() != written)
        return untrusted_folders(fs::path(real.get()).parent_path());
    return std::nullopt;
}

std::optional<std::string> program_problem(const std::string& path, bool allow_setuid)
{
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
        return "program " + path + ": " + std::strerror(errno);
    if (!S_ISREG(st.st_mode))
        return "program " + path + " is not a regular file";
    if (::access(path.c_str(), X_OK) != 0)
        return "program " + path + " is not executable";
    if (!superd_is_root())
        return std::nullopt;
    if (auto why = untrusted(path, st))
        return "program " + path + ": " + *why;
    if (auto why = untrusted_path(path))
        return "program " + path + ": " + *why;
    // Such a program runs as its file's owner or group, not as the service's
    // user: that has to be asked for.
    if ((st.st_mode & (S_ISUID | S_ISGID)) && !allow_setuid)
        return "program " + path + " is set-user-ID or set-group-ID (mode " + octal_mode(st.st_mode)
               + "): refused unless the service says allow_setuid = true";
    return std::nullopt;
}

} // namespace superd

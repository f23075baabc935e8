// sandbox_probe: a test service that tries what a sandbox should stop. It
// reads commands from fd 0, one a line, until EOF, and answers each on fd 1
// with "COMMAND: ok", "COMMAND: ERRNAME" or "COMMAND: what it read":
//   connect PORT        a TCP connection to 127.0.0.1:PORT
//   write PATH TEXT     creates PATH holding TEXT
//   read PATH           the first line of PATH
//   unshare             unshare(CLONE_NEWUTS)
//   mount               mount a tmpfs on a folder that does not exist
//                       (ENOENT where mount is allowed, and harmless)
//   ptrace              ptrace(PTRACE_TRACEME)
//   dup3                dup3(0, 100, 0), closed again
//   seccomp             seccomp(SECCOMP_GET_ACTION_AVAIL), which changes nothing
//   ppid                its parent's pid
//   status              CapEff, CapBnd, CapAmb and NoNewPrivs from
//                       /proc/self/status, one line each, in its order
// It never opens anything before the commands ask.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

std::string outcome(long rc) { return rc < 0 ? strerrorname_np(errno) : "ok"; }

std::string read_line(const std::string& path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strerrorname_np(errno);
    char buffer[4096];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    ::close(fd);
    if (n < 0)
        return strerrorname_np(errno);
    std::string text(buffer, static_cast<size_t>(n));
    return text.substr(0, text.find('\n'));
}

std::string run(const std::string& command, const std::string& rest)
{
    if (command == "connect") {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return outcome(fd);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<uint16_t>(std::stoi(rest)));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        std::string result = outcome(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
        ::close(fd);
        return result;
    }
    if (command == "write") {
        size_t space = rest.find(' ');
        std::string path = rest.substr(0, space), text = space == std::string::npos ? "" : rest.substr(space + 1);
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return outcome(fd);
        long rc = ::write(fd, text.data(), text.size());
        ::close(fd);
        return outcome(rc);
    }
    if (command == "read")
        return read_line(rest);
    if (command == "unshare")
        return outcome(::unshare(CLONE_NEWUTS));
    if (command == "mount")
        return outcome(::mount("none", "/nonexistent-superd-sandbox-probe", "tmpfs", 0, nullptr));
    if (command == "ptrace")
        return outcome(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
    if (command == "dup3") {
        int fd = ::dup3(0, 100, 0);
        std::string result = outcome(fd);
        if (fd >= 0)
            ::close(fd);
        return result;
    }
    if (command == "seccomp") {
        uint32_t action = SECCOMP_RET_ALLOW;
        return outcome(::syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action));
    }
    if (command == "ppid")
        return std::to_string(::getppid());
    if (command == "status") {
        std::string report;
        FILE* status = std::fopen("/proc/self/status", "re");
        if (!status)
            return strerrorname_np(errno);
        char line[512];
        while (std::fgets(line, sizeof line, status))
            for (const char* field : {"NoNewPrivs:", "CapEff:", "CapBnd:", "CapAmb:"})
                if (std::strncmp(line, field, std::strlen(field)) == 0)
                    report += std::string("\n") + std::string(line, std::strcspn(line, "\n"));
        std::fclose(status);
        return report;
    }
    return "unknown command";
}

} // namespace

int main()
{
    std::string input;
    char buffer[4096];
    for (ssize_t n; (n = ::read(0, buffer, sizeof buffer)) > 0;)
        input.append(buffer, static_cast<size_t>(n));
    std::string output;
    for (size_t start = 0; start < input.size();) {
        size_t end = input.find('\n', start);
        if (end == std::string::npos)
            end = input.size();
        std::string line = input.substr(start, end - start);
        start = end + 1;
        size_t space = line.find(' ');
        std::string command = line.substr(0, space), rest = space == std::string::npos ? "" : line.substr(space + 1);
        output += command + ": " + run(command, rest) + "\n";
    }
    for (size_t done = 0; done < output.size();) {
        ssize_t n = ::write(1, output.data() + done, output.size() - done);
        if (n <= 0)
            return 1;
        done += static_cast<size_t>(n);
    }
    return 0;
}

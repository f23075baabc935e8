// waiter: a wait-mode test service. It takes the socket superd hands it, on
// fd 0 (inetd convention) or fd 3 (systemd convention, LISTEN_FDS=1 and
// LISTEN_PID naming this process), serves one client and exits:
//   TCP: accepts one connection, sends its report line, echoes until EOF;
//   UDP: receives one datagram, replies with its report line and the data.
// The report: "waiter pid=PID fd=FD listen_fds=N|unset listen_pid=ok|wrong|unset
// names=NAMES blocking=yes|no\n". With the argument "linger", a TCP waiter
// then closes the listening socket and lives on for 2 s, as a daemon
// finishing its work might.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::string report(int fd)
{
    const char* fds = std::getenv("LISTEN_FDS");
    const char* pid = std::getenv("LISTEN_PID");
    const char* names = std::getenv("LISTEN_FDNAMES");
    std::string listen_pid = !pid ? "unset" : std::atol(pid) == ::getpid() ? "ok" : "wrong";
    bool blocking = !(::fcntl(fd, F_GETFL) & O_NONBLOCK);
    return "waiter pid=" + std::to_string(::getpid()) + " fd=" + std::to_string(fd)
           + " listen_fds=" + (fds ? fds : "unset") + " listen_pid=" + listen_pid
           + " names=" + (names ? names : "unset") + " blocking=" + (blocking ? "yes" : "no") + "\n";
}

void send_all(int fd, const std::string& data)
{
    for (size_t sent = 0; sent < data.size();) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, 0);
        if (n <= 0)
            std::exit(1);
        sent += static_cast<size_t>(n);
    }
}

} // namespace

int main(int argc, char** argv)
{
    int fd = std::getenv("LISTEN_FDS") ? 3 : 0;
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return 2;

    char buffer[65536];
    if (type == SOCK_DGRAM) {
        sockaddr_storage from{};
        socklen_t from_len = sizeof from;
        ssize_t n = ::recvfrom(fd, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0)
            return 1;
        std::string reply = report(fd) + std::string(buffer, static_cast<size_t>(n));
        ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
        return 0;
    }
    int client = ::accept(fd, nullptr, nullptr);
    if (client < 0)
        return 1;
    send_all(client, report(fd));
    for (ssize_t n; (n = ::read(client, buffer, sizeof buffer)) > 0;)
        send_all(client, std::string(buffer, static_cast<size_t>(n)));
    if (argc > 1 && std::strcmp(argv[1], "linger") == 0) {
        for (int i = 0; i <= std::max(fd, 2); ++i) // every copy of the socket, first,
            ::close(i);                            // so the client's EOF says it is free
        ::close(client);
        ::sleep(2);
    }
    return 0;
}

// soak_client: makes CONNECTIONS round trips to 127.0.0.1:PORT from
// CONCURRENCY threads, each: connect, send a line, half-close, read the echo
// to EOF, check it. Prints "N passed, N failed" and exits 1 on any failure.
//
//   soak_client PORT CONNECTIONS CONCURRENCY
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

bool round_trip(uint16_t port, const std::string& message)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0
              && ::send(fd, message.data(), message.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(message.size())
              && ::shutdown(fd, SHUT_WR) == 0;
    std::string reply;
    char buffer[512];
    for (ssize_t n; ok && (n = ::recv(fd, buffer, sizeof buffer, 0)) != 0;) {
        if (n < 0) {
            ok = false;
            break;
        }
        reply.append(buffer, static_cast<size_t>(n));
    }
    ::close(fd);
    return ok && reply == message;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 4) {
        std::fprintf(stderr, "usage: soak_client PORT CONNECTIONS CONCURRENCY\n");
        return 2;
    }
    auto port = static_cast<uint16_t>(std::atoi(argv[1]));
    long total = std::atol(argv[2]);
    int threads = std::atoi(argv[3]);
    std::atomic<long> next{0}, passed{0}, failed{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            for (long i; (i = next++) < total;)
                ++(round_trip(port, "soak " + std::to_string(i) + "\n") ? passed : failed);
        });
    }
    for (auto& t : pool)
        t.join();
    std::printf("%ld passed, %ld failed\n", passed.load(), failed.load());
    return failed == 0 ? 0 : 1;
}

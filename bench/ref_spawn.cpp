// ref_spawn: the "nothing but the exec" reference server. Listens on
// 127.0.0.1:PORT and for every connection posix_spawn()s PROGRAM with the
// connection on fds 0, 1 and 2 -- no config, no limits, no logging -- so
// loadgen against it shows what fork+exec alone costs per connection.
//
//   g++ -std=c++20 -O2 -I. -o ref_spawn bench/ref_spawn.cpp
//   ref_spawn PORT PROGRAM [ARG...]
//
// As in inetd.conf, ARGs are the complete argv including argv[0]; with no
// ARGs argv is just PROGRAM. The environment is only PATH. Runs until killed.
#include "bench/tools.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void usage(const char* why)
{
    if (why)
        std::fprintf(stderr, "ref_spawn: %s\n", why);
    std::fprintf(stderr, "usage: ref_spawn PORT PROGRAM [ARG...]\n");
    std::exit(2);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3)
        usage(nullptr);
    std::optional<uint16_t> port = bench::parse_port(argv[1]);
    if (!port)
        usage("bad PORT");
    const char* program = argv[2];
    // Checked once here so a typo fails loudly instead of once per connection.
    if (::access(program, X_OK) != 0) {
        std::fprintf(stderr, "ref_spawn: %s: %s\n", program, std::strerror(errno));
        return 2;
    }

    std::vector<char*> child_argv;
    if (argc > 3)
        child_argv.assign(argv + 3, argv + argc);
    else
        child_argv.push_back(argv[2]);
    child_argv.push_back(nullptr);
    const char* path = std::getenv("PATH");
    std::string path_env = std::string("PATH=") + (path ? path : "/usr/local/bin:/usr/bin:/bin");
    char* child_env[] = {path_env.data(), nullptr};

    // If we were started with 0/1/2 closed, accept4 could hand out one of
    // them, and dup2 onto itself would leave it close-on-exec in the child.
    for (int fd = 0; fd < 3; ++fd)
        if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) < 0)
            return 1;

    // Kernel auto-reaps children, so there is no waitpid bookkeeping at all.
    ::signal(SIGCHLD, SIG_IGN);

    // Linux keeps an ignored SIGCHLD ignored across exec, which would break
    // children that wait for their own children; give them the default back.
    posix_spawnattr_t attr;
    ::posix_spawnattr_init(&attr);
    sigset_t defaults;
    ::sigemptyset(&defaults);
    ::sigaddset(&defaults, SIGCHLD);
    ::sigaddset(&defaults, SIGPIPE);
    ::posix_spawnattr_setsigdefault(&attr, &defaults);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);

    int listener = bench::listen_loopback(*port, 0, "ref_spawn");
    if (listener < 0)
        return 1;

    for (;;) {
        int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // Out of resources: back off instead of spinning on the same error.
                std::perror("ref_spawn: accept4");
                ::usleep(10'000);
            }
            continue; // EINTR, ECONNABORTED and friends: just take the next one
        }
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        // dup2 clears close-on-exec on 0/1/2; the original conn fd stays CLOEXEC.
        ::posix_spawn_file_actions_adddup2(&actions, conn, 0);
        ::posix_spawn_file_actions_adddup2(&actions, conn, 1);
        ::posix_spawn_file_actions_adddup2(&actions, conn, 2);
        pid_t pid;
        if (int rc = ::posix_spawn(&pid, program, &actions, &attr, child_argv.data(), child_env); rc != 0)
            std::fprintf(stderr, "ref_spawn: posix_spawn %s: %s\n", program, std::strerror(rc));
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(conn);
    }
}

// superd: the command line. Everything else lives in the core library.
//
// Exit status: 0 after SIGTERM/SIGINT, a successful --check or an upgrade
// that handed over; 1 when superd cannot start (a port already bound, ...);
// 2 for a bad command line or an invalid config file. Started by an upgrade
// (--ready-fd), superd also writes why it cannot start on that fd.
#include "superd/config.h"
#include "superd/daemon.h"
#include "superd/log.h"
#include "superd/notify.h"
#include "superd/process.h"
#include "superd/upgrade.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/un.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace {

constexpr int kExitCannotStart = 1;
constexpr int kExitUsage = 2;

const char kUsage[] = "usage: superd --config FILE [--inetd-conf FILE] [--control PATH] [--check] [--log-level LEVEL]\n"
                      "\n"
                      "  -c, --config FILE      the services to run (TOML)\n"
                      "      --inetd-conf FILE  also (or only) the services of a classic inetd.conf\n"
                      "      --control PATH     superctl's socket, in place of [superd] control (\"\": none)\n"
                      "      --check            validate the configuration and exit: 0 when valid, 2 when not\n"
                      "  -l, --log-level LEVEL  trace, debug, info (default), warn or error\n"
                      "      --ready-fd FD      write \"ready\" on FD once serving, or why superd cannot\n"
                      "                         start (an upgrade starts superd with it)\n"
                      "  -V, --version          print the version and exit\n"
                      "  -h, --help             print this help and exit\n"
                      "\n"
                      "superd runs in the foreground and logs to stderr. SIGHUP reloads the\n"
                      "configuration; SIGUSR2 starts the superd binary at this one's path again,\n"
                      "which takes over every socket; SIGTERM or SIGINT stop superd.\n";

int usage_error(const std::string& message)
{
    std::fprintf(stderr, "superd: %s\n%s", message.c_str(), kUsage);
    return kExitUsage;
}

// An fd superd was started with, above stderr.
std::optional<int> parse_inherited_fd(std::string_view text)
{
    int fd = -1;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), fd);
    if (error != std::errc() || end != text.data() + text.size() || fd <= 2 || ::fcntl(fd, F_GETFD) < 0)
        return std::nullopt;
    return fd;
}

} // namespace

int main(int argc, char** argv)
{
    enum { kCheck = 256, kInetdConf, kControl, kReadyFd };
    const option options[] = {
        {"config", required_argument, nullptr, 'c'},
        {"check", no_argument, nullptr, kCheck},
        {"inetd-conf", required_argument, nullptr, kInetdConf},
        {"control", required_argument, nullptr, kControl},
        {"ready-fd", required_argument, nullptr, kReadyFd},
        {"log-level", required_argument, nullptr, 'l'},
        {"version", no_argument, nullptr, 'V'},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0},
    };
    superd::ConfigSources sources;
    bool check = false;
    auto level = spdlog::level::info;
    superd::ReadyPipe ready;

    opterr = 0;
    for (int opt; (opt = getopt_long(argc, argv, "c:l:Vh", options, nullptr)) != -1;) {
        switch (opt) {
        case 'c':
            sources.config = optarg;
            break;
        case kInetdConf:
            sources.inetd_conf = optarg;
            break;
        case kControl:
            sources.control = optarg[0] ? std::filesystem::absolute(optarg).string() : std::string();
            if (sources.control->size() >= sizeof(sockaddr_un::sun_path))
                return usage_error(std::string("--control: the path is longer than a unix socket's ")
                                   + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
            break;
        case kCheck:
            check = true;
            break;
        case kReadyFd:
            if (auto fd = parse_inherited_fd(optarg))
                ready = superd::ReadyPipe(superd::UniqueFd(*fd));
            else
                return usage_error(std::string("--ready-fd: '") + optarg + "' is not an open fd above 2");
            break;
        case 'l':
            if (auto parsed = superd::parse_log_level(optarg))
                level = *parsed;
            else
                return usage_error(std::string("unknown log level '") + optarg + "'");
            break;
        case 'V':
            std::printf("superd %s\n", SUPERD_VERSION);
            return 0;
        case 'h':
            std::printf("%s", kUsage);
            return 0;
        default:
            return usage_error(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
        }
    }
    if (optind < argc)
        return usage_error(std::string("unexpected argument '") + argv[optind] + "'");
    if (sources.config.empty() && sources.inetd_conf.empty())
        return usage_error("--config FILE (or --inetd-conf FILE) is required");

    auto started = superd::prepare_process();
    if (!started) {
        std::fprintf(stderr, "superd: %s\n", started.error().c_str());
        ready.failed(started.error());
        return kExitCannotStart;
    }
    superd::init_logging(level);
    // Before the configuration is read: pass_env must not find the service
    // manager's variables, which are addressed to superd alone.
    superd::DaemonSeams seams;
    seams.notifier = superd::Notifier::from_environment();
    seams.self = superd::SelfCommand::of_this_process(argc, argv);
    seams.replacing = ready.active();
    auto inherited = superd::take_inherited_sockets();
    if (!inherited) {
        spdlog::error("cannot start: {}", inherited.error());
        ready.failed("cannot start: " + inherited.error());
        return kExitCannotStart;
    }
    if (ready.active())
        inherited->from_upgrade();

    auto config = superd::load_config(sources);
    if (!config) {
        spdlog::error("{}", config.error());
        ready.failed(config.error());
        return kExitUsage;
    }
    if (check) {
        for (const std::string& file : config->files)
            std::printf("%s: ok\n", file.c_str());
        for (const superd::ServiceConfig& service : config->services)
            for (const std::string& warning : service.tls_warnings)
                std::printf("warning: service '%s': %s\n", service.name.c_str(), warning.c_str());
        std::printf("%zu services on %zu listeners\n", config->services.size(), config->listener_count());
        return 0;
    }

    superd::Daemon daemon(sources, started->nofile, std::move(seams));
    if (auto error = daemon.start(std::move(*config), std::move(*inherited))) {
        spdlog::error("cannot start: {}", error->message);
        ready.failed("cannot start: " + error->message);
        return kExitCannotStart;
    }
    ready.ready();
    return daemon.run();
}

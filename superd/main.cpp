// superd: the command line. Everything else lives in the core library.
//
// Exit status: 0 after SIGTERM/SIGINT or a successful --check; 1 when superd
// cannot start (a port already bound, ...); 2 for a bad command line or an
// invalid config file.
#include "superd/config.h"
#include "superd/daemon.h"
#include "superd/log.h"
#include "superd/process.h"

#include <getopt.h>

#include <cstdio>
#include <string>

namespace {

constexpr int kExitCannotStart = 1;
constexpr int kExitUsage = 2;

const char kUsage[] = "usage: superd --config FILE [--check] [--log-level LEVEL]\n"
                      "\n"
                      "  -c, --config FILE      the services to run (TOML)\n"
                      "      --check            validate FILE and exit: 0 when valid, 2 when not\n"
                      "  -l, --log-level LEVEL  trace, debug, info (default), warn or error\n"
                      "  -V, --version          print the version and exit\n"
                      "  -h, --help             print this help and exit\n"
                      "\n"
                      "superd runs in the foreground and logs to stderr. SIGTERM or SIGINT stop it.\n";

int usage_error(const std::string& message)
{
    std::fprintf(stderr, "superd: %s\n%s", message.c_str(), kUsage);
    return kExitUsage;
}

} // namespace

int main(int argc, char** argv)
{
    enum { kCheck = 256 };
    const option options[] = {
        {"config", required_argument, nullptr, 'c'}, {"check", no_argument, nullptr, kCheck},
        {"log-level", required_argument, nullptr, 'l'}, {"version", no_argument, nullptr, 'V'},
        {"help", no_argument, nullptr, 'h'}, {nullptr, 0, nullptr, 0},
    };
    std::string config_path;
    bool check = false;
    auto level = spdlog::level::info;

    opterr = 0;
    for (int opt; (opt = getopt_long(argc, argv, "c:l:Vh", options, nullptr)) != -1;) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case kCheck:
            check = true;
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
    if (config_path.empty())
        return usage_error("--config FILE is required");

    if (auto error = superd::prepare_process()) {
        std::fprintf(stderr, "superd: %s\n", error->message.c_str());
        return kExitCannotStart;
    }
    superd::init_logging(level);

    auto config = superd::load_config(config_path);
    if (!config) {
        spdlog::error("{}", config.error());
        return kExitUsage;
    }
    if (check) {
        std::printf("%s: ok, %zu services on %zu listeners\n", config_path.c_str(), config->services.size(),
                    config->listener_count());
        return 0;
    }

    superd::Daemon daemon(std::move(*config));
    if (auto error = daemon.start()) {
        spdlog::error("cannot start: {}", error->message);
        return kExitCannotStart;
    }
    return daemon.run();
}

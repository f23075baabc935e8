#include "superctl/cli.h"

#include <getopt.h>

#include <charconv>
#include <climits>
#include <cmath>

namespace superctl {

namespace {

// Every command of the protocol (/tmp/s12/protocol.md), in the order the
// usage lists them.
constexpr Command kCommands[] = {
    {"status", "", 0, 0, Shape::Status},
    {"services", "", 0, 0, Shape::Services},
    {"children", "[SERVICE]", 0, 1, Shape::Children},
    {"reload", "", 0, 0, Shape::Message},
    {"upgrade", "", 0, 0, Shape::Message},
    {"pause", "SERVICE", 1, 1, Shape::Message},
    {"resume", "SERVICE", 1, 1, Shape::Message},
    {"kill", "PID [SIGNAL]", 1, 2, Shape::Message},
    {"log-level", "LEVEL", 1, 1, Shape::Message},
};

// The longest a timeout may be: a day, far past any reply superd gives,
// and far from overflowing the milliseconds it becomes.
constexpr double kMaxTimeoutSeconds = 86'400;

superd::Error usage_error(std::string message) { return superd::Error{std::move(message)}; }

// A word of the request line: not empty, no space, no control character.
bool sendable(std::string_view word)
{
    if (word.empty())
        return false;
    for (unsigned char c : word)
        if (c <= ' ' || c == 0x7f)
            return false;
    return true;
}

bool positive_pid(std::string_view text)
{
    int value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size() && value > 0;
}

// SECONDS: a positive number, fractions allowed ("0.5").
superd::Result<std::chrono::milliseconds> parse_timeout(const std::string& text)
{
    double seconds = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (error != std::errc() || end != text.data() + text.size() || !(seconds > 0) || seconds > kMaxTimeoutSeconds)
        return usage_error("timeout '" + text + "' is not a number of seconds from 0 to 86400");
    return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

} // namespace

const Command* find_command(std::string_view name)
{
    for (const Command& command : kCommands)
        if (command.name == name)
            return &command;
    return nullptr;
}

std::string usage()
{
    std::string text = "usage: superctl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARG...]\n"
                       "\n"
                       "  -s, --socket PATH      superd's control socket (default $SUPERD_CONTROL, else "
                       + std::string(kDefaultSocket)
                       + ")\n"
                         "      --json             print superd's reply as it came, one JSON object\n"
                         "  -t, --timeout SECONDS  wait this long for the reply (default 30)\n"
                         "  -V, --version          print the version and exit\n"
                         "  -h, --help             print this help and exit\n"
                         "\n"
                         "commands:\n";
    for (const Command& command : kCommands) {
        text += "  ";
        text += command.name;
        if (!command.args.empty()) {
            text += ' ';
            text += command.args;
        }
        text += '\n';
    }
    text += "\nexit status: 0 done, 1 refused or failed, 2 usage, 3 superd not reached\n";
    return text;
}

superd::Result<Invocation> parse_command_line(const std::vector<std::string>& args,
                                              const std::string& environment_socket)
{
    enum { kJson = 256 };
    const option options[] = {
        {"socket", required_argument, nullptr, 's'},  {"json", no_argument, nullptr, kJson},
        {"timeout", required_argument, nullptr, 't'}, {"version", no_argument, nullptr, 'V'},
        {"help", no_argument, nullptr, 'h'},          {nullptr, 0, nullptr, 0},
    };
    // getopt_long permutes its argv: it gets copies, so that options may
    // follow the command ("superctl services --json").
    std::vector<std::string> words = {"superctl"};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& word : words)
        argv.push_back(word.data());
    argv.push_back(nullptr);
    int argc = static_cast<int>(words.size());

    Invocation invocation;
    invocation.socket = environment_socket.empty() ? std::string(kDefaultSocket) : environment_socket;
    opterr = 0;
    optind = 0; // glibc: start afresh, as for a new argv
    for (int opt; (opt = getopt_long(argc, argv.data(), "s:t:Vh", options, nullptr)) != -1;) {
        switch (opt) {
        case 's':
            invocation.socket = optarg;
            if (invocation.socket.empty())
                return usage_error("the socket path is empty");
            break;
        case kJson:
            invocation.json = true;
            break;
        case 't': {
            auto timeout = parse_timeout(optarg);
            if (!timeout)
                return usage_error(timeout.error());
            invocation.timeout = *timeout;
            break;
        }
        case 'V':
            invocation.action = Invocation::Action::Version;
            return invocation;
        case 'h':
            invocation.action = Invocation::Action::Help;
            return invocation;
        default:
            return usage_error("unknown or incomplete option '" + std::string(argv[optind - 1]) + "'");
        }
    }
    if (optind >= argc)
        return usage_error("no command given");

    std::string name = argv[optind];
    invocation.command = find_command(name);
    if (!invocation.command)
        return usage_error("unknown command '" + name + "'");
    const Command& command = *invocation.command;
    std::vector<std::string> command_args(argv.begin() + optind + 1, argv.begin() + argc);
    std::string usage_line = "usage: superctl " + name + (command.args.empty() ? "" : " ") + std::string(command.args);
    if (command_args.size() < command.min_args || command_args.size() > command.max_args)
        return usage_error(usage_line);
    if (name == "kill" && !positive_pid(command_args[0]))
        return usage_error("PID '" + command_args[0] + "' is not a positive number; " + usage_line);

    invocation.request = name;
    for (const std::string& arg : command_args) {
        if (!sendable(arg))
            return usage_error("argument '" + arg + "' is empty or holds a space or control character");
        invocation.request += ' ';
        invocation.request += arg;
    }
    return invocation;
}

} // namespace superctl

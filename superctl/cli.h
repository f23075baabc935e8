// The command line of superctl: what to ask superd, where, and how to show
// the answer, checked before anything is connected.
//
// The commands are one table (cli.cpp) with their argument counts and the
// shape of their reply; the usage text is made from it. A request is one
// line of words, so an argument that is empty or holds a space or a control
// character cannot be sent and is a usage error here, as are a wrong count
// and a PID that is not a positive number. Whatever superd may still refuse
// (an unknown service, signal or log level) it says in its reply.
#pragma once

#include "superd/result.h"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace superctl {

// How a command's reply is shown to a person (format.h).
enum class Shape { Status, Services, Children, Message };

struct Command {
    std::string_view name;
    std::string_view args; // as the usage shows them
    size_t min_args;
    size_t max_args;
    Shape shape;
};

// The command called `name`, or nullptr.
const Command* find_command(std::string_view name);

// What the command line asks for.
struct Invocation {
    enum class Action { Run, Help, Version };
    Action action = Action::Run;
    std::string socket;
    bool json = false;
    std::chrono::milliseconds timeout{30'000};
    const Command* command = nullptr;
    // The request line, without its newline: "kill 4242 TERM".
    std::string request;
};

constexpr std::string_view kDefaultSocket = "/run/superd/control.sock";
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;      // superd said ok: false
constexpr int kExitUsage = 2;       // a bad command line
constexpr int kExitUnreachable = 3; // no reply from superd, or not one it would give

// Reads `args` (argv without argv[0]). `environment_socket` is
// $SUPERD_CONTROL (empty when unset); -s wins over it, and it over the
// default. The error is the message to print before the usage.
superd::Result<Invocation> parse_command_line(const std::vector<std::string>& args,
                                              const std::string& environment_socket);

// The usage text, with the commands of the table.
std::string usage();

} // namespace superctl

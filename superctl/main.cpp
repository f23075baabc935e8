// superctl: the command line. It asks superd one thing on its control
// socket and shows the answer; cli.h reads the command line, client.h
// carries the exchange, format.h shows the reply.
//
// Exit status: 0 done; 1 superd refused or failed (ok: false); 2 a bad
// command line; 3 superd not reached (no socket, closed without a reply, no
// reply in time, a reply superd would not give).
#include "superctl/cli.h"
#include "superctl/client.h"
#include "superctl/follow.h"
#include "superctl/format.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv)
{
    const char* environment_socket = std::getenv("SUPERD_CONTROL");
    auto invocation = superctl::parse_command_line(std::vector<std::string>(argv + 1, argv + argc),
                                                   environment_socket ? environment_socket : "");
    if (!invocation) {
        std::fprintf(stderr, "superctl: %s\n%s", invocation.error().c_str(), superctl::usage().c_str());
        return superctl::kExitUsage;
    }
    switch (invocation->action) {
    case superctl::Invocation::Action::Help:
        std::printf("%s", superctl::usage().c_str());
        return superctl::kExitOk;
    case superctl::Invocation::Action::Version:
        std::printf("superctl %s\n", SUPERD_VERSION);
        return superctl::kExitOk;
    case superctl::Invocation::Action::Run:
        break;
    }

    auto reply = superctl::exchange(invocation->socket, invocation->request, invocation->timeout);
    if (!reply) {
        std::fprintf(stderr, "superctl: %s\n", reply.error().c_str());
        return superctl::kExitUnreachable;
    }
    if (invocation->command->name == "upgrade")
        *reply = superctl::follow_upgrade(invocation->socket, *reply, invocation->timeout);
    superctl::Outcome outcome = superctl::present(*invocation, *reply);
    std::fwrite(outcome.out.data(), 1, outcome.out.size(), stdout);
    std::fwrite(outcome.err.data(), 1, outcome.err.size(), stderr);
    return outcome.status;
}

// increment: the protocol of shared/seeds/002 (see increment_machine.h),
// one reply write per read so a chunk's answer leaves in one segment.
#include "services/increment_machine.h"
#include "services/support.h"

#include <string>

int main()
{
    service::log_client("increment");
    const char greeting = service::IncrementMachine::kGreeting;
    if (!service::write_all(1, &greeting, 1))
        return 1;

    service::IncrementMachine machine;
    std::string reply;
    char buffer[4096];
    ssize_t n;
    while ((n = service::read_some(0, buffer, sizeof buffer)) > 0) {
        reply.clear();
        machine.feed(std::string_view(buffer, static_cast<size_t>(n)), reply);
        if (!service::write_all(1, reply.data(), reply.size()))
            return 1;
    }
    return n == 0 ? 0 : 1;
}

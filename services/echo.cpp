// echo (RFC 862): sends back everything the client sends, until EOF.
#include "services/support.h"

int main()
{
    service::log_client("echo");
    char buffer[65536];
    ssize_t n;
    while ((n = service::read_some(0, buffer, sizeof buffer)) > 0)
        if (!service::write_all(1, buffer, static_cast<size_t>(n)))
            return 1;
    return n == 0 ? 0 : 1;
}

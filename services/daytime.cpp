// daytime (RFC 867): one human-readable line with the local date and time,
// in the RFC's suggested shape, then close.
#include "services/support.h"

#include <ctime>

int main()
{
    std::time_t now = std::time(nullptr);
    std::tm local{};
    char line[128];
    size_t n = 0;
    if (::localtime_r(&now, &local))
        n = std::strftime(line, sizeof line, "%A, %B %d, %Y %H:%M:%S-%Z\r\n", &local);
    if (n == 0)
        return 1;
    return service::write_all(1, line, n) ? 0 : 1;
}

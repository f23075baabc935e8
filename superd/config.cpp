#include "superd/config.h"

namespace superd {

size_t Config::listener_count() const
{
    size_t n = 0;
    for (const ServiceConfig& s : services)
        n += s.listen.size();
    return n;
}

} // namespace superd

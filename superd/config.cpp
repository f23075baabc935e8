#include "superd/config.h"

namespace superd {

const char* to_string(Builtin builtin)
{
    switch (builtin) {
    case Builtin::kEcho:
        return "echo";
    case Builtin::kDiscard:
        return "discard";
    case Builtin::kChargen:
        return "chargen";
    case Builtin::kDaytime:
        return "daytime";
    case Builtin::kTime:
        return "time";
    }
    return "?";
}

std::optional<Builtin> builtin_named(std::string_view name)
{
    for (Builtin b : {Builtin::kEcho, Builtin::kDiscard, Builtin::kChargen, Builtin::kDaytime, Builtin::kTime})
        if (name == to_string(b))
            return b;
    return std::nullopt;
}

size_t Config::listener_count() const
{
    size_t n = 0;
    for (const ServiceConfig& s : services)
        n += s.listen.size();
    return n;
}

} // namespace superd

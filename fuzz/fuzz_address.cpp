// Fuzzes the address, CIDR and rate parsers, and checks that what parses
// prints back as something that parses to the same address.
#include "superd/address.h"
#include "superd/limits.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto addresses = superd::parse_listen_address(text); addresses.ok()) {
        for (const superd::SocketAddress& a : *addresses) {
            auto again = superd::parse_listen_address(a.to_string());
            if (a.is_wildcard() && a.family() == AF_INET6)
                continue; // "[::]:P" is one address, "P" is two
            if (!again.ok() || again->size() != 1 || !(again->front() == a))
                std::abort();
        }
    }
    if (auto cidr = superd::Cidr::parse(text); cidr.ok()) {
        auto again = superd::Cidr::parse(cidr->to_string());
        if (!again.ok() || again->to_string() != cidr->to_string())
            std::abort();
    }
    (void)superd::parse_rate(text);
    return 0;
}

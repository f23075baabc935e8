// Fuzzes the PROXY header parser with what a load balancer, or anyone who
// reaches the port, may send, and checks its promises: a header it accepts
// is accepted again from its own bytes alone, every shorter prefix of it
// asks for more without asking past its end, and the addresses it reads
// survive being written and read again in both versions.
#include "superd/proxy_header.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace {

using superd::ProxyAccept;
using superd::ProxyParse;

bool same(const superd::ProxyHeader& a, const superd::ProxyHeader& b)
{
    return a.command == b.command && a.source == b.source && a.destination == b.destination && a.length == b.length
           && a.version == b.version && a.authority == b.authority && a.unique_id == b.unique_id;
}

void check_rewritten(const superd::ProxyHeader& header)
{
    std::array<uint8_t, 232> v2;
    ProxyParse again =
        superd::parse_proxy_header(superd::write_proxy_v2(header.source, header.destination, v2), ProxyAccept::kV2);
    if (again.status != ProxyParse::Status::kDone || !(again.header.source == header.source)
        || !(again.header.destination == header.destination))
        std::abort();
    if (header.source.family() == AF_UNIX)
        return; // v1 has no unix family
    std::array<char, 108> v1;
    std::string_view line = superd::write_proxy_v1(header.source, header.destination, v1);
    again = superd::parse_proxy_header({reinterpret_cast<const uint8_t*>(line.data()), line.size()}, ProxyAccept::kV1);
    if (again.status != ProxyParse::Status::kDone || !(again.header.source == header.source)
        || !(again.header.destination == header.destination) || again.header.length != line.size())
        std::abort();
}

void check(std::span<const uint8_t> bytes, ProxyAccept accept)
{
    ProxyParse parse = superd::parse_proxy_header(bytes, accept);
    switch (parse.status) {
    case ProxyParse::Status::kNeed:
        if (parse.need == 0)
            std::abort();
        return;
    case ProxyParse::Status::kInvalid:
        if (parse.reason.empty())
            std::abort();
        return;
    case ProxyParse::Status::kDone:
        break;
    }
    size_t length = parse.header.length;
    if (length > bytes.size() || length < 15)
        std::abort();
    ProxyParse alone = superd::parse_proxy_header(bytes.first(length), accept);
    if (alone.status != ProxyParse::Status::kDone || !same(alone.header, parse.header))
        std::abort();
    for (size_t k = 0; k < length; ++k) {
        ProxyParse prefix = superd::parse_proxy_header(bytes.first(k), accept);
        if (prefix.status != ProxyParse::Status::kNeed || prefix.need == 0 || k + prefix.need > length)
            std::abort();
    }
    if (parse.header.command == superd::ProxyCommand::kProxy)
        check_rewritten(parse.header);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::span<const uint8_t> bytes(data, size);
    for (ProxyAccept accept : {ProxyAccept::kV1, ProxyAccept::kV2, ProxyAccept::kAny})
        check(bytes, accept);
    return 0;
}

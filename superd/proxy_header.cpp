#include "superd/proxy_header.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <utility>

namespace superd {

namespace {

constexpr std::array<uint8_t, 12> kV2Signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kV2Local = 0x20; // version 2, command LOCAL
constexpr uint8_t kV2Proxy = 0x21; // version 2, command PROXY
constexpr uint8_t kV2Stream = 0x01;
constexpr size_t kUnixPathLength = 108; // the protocol's, whatever the system's sun_path
constexpr uint8_t kTlvAuthority = 0x02;
constexpr uint8_t kTlvUniqueId = 0x05;
constexpr size_t kMaxUniqueId = 128;
constexpr std::string_view kV1Start = "PROXY ";
constexpr size_t kV1Fields = 4; // source, destination, source port, destination port

static_assert(sizeof(sockaddr_un::sun_path) >= kUnixPathLength);
static_assert(offsetof(sockaddr_un, sun_path) + kUnixPathLength <= sizeof(sockaddr_storage));
// The writers' buffers hold the longest header of their version.
static_assert(kProxyV1MaxLength + 1 == 108); // and a NUL, as the specification suggests
static_assert(kProxyV2FixedLength + 2 * kUnixPathLength == 232);

// One row per v2 family byte a receiver may see with PROXY; the address
// block's length follows from it. `family` is AF_UNSPEC for the ones
// superd does not take (UDP, unspecified), which read as LOCAL.
struct V2Family {
    uint8_t byte;
    int family;
    size_t address_length;
};
constexpr V2Family kV2Families[] = {
    {0x00, AF_UNSPEC, 0},
    {0x11, AF_INET, 12},
    {0x12, AF_UNSPEC, 12},
    {0x21, AF_INET6, 36},
    {0x22, AF_UNSPEC, 36},
    {0x31, AF_UNIX, 2 * kUnixPathLength},
    {0x32, AF_UNSPEC, 2 * kUnixPathLength},
};

// One row per v1 protocol word. `min_address` is the shortest address text
// of the family ("0.0.0.0", "::"); UNKNOWN takes anything up to the CRLF.
struct V1Protocol {
    std::string_view name;
    int family;
    size_t min_address;
};
constexpr V1Protocol kV1Protocols[] = {{"TCP4", AF_INET, 7}, {"TCP6", AF_INET6, 2}, {"UNKNOWN", AF_UNSPEC, 0}};

constexpr size_t v1_min_field(const V1Protocol& protocol, size_t index) { return index < 2 ? protocol.min_address : 1; }

// The shortest line, CRLF included, that starts "PROXY <name>".
constexpr size_t v1_min_line(const V1Protocol& protocol)
{
    size_t length = kV1Start.size() + protocol.name.size() + 2;
    if (protocol.family != AF_UNSPEC) {
        for (size_t i = 0; i < kV1Fields; ++i)
            length += 1 + v1_min_field(protocol, i);
    }
    return length;
}

constexpr const V1Protocol& kV1Unknown = kV1Protocols[2];
constexpr size_t kV1MinLine = v1_min_line(kV1Unknown); // "PROXY UNKNOWN\r\n"
static_assert(kV1MinLine < kProxyV2FixedLength);

const void* ip_bytes(const SocketAddress& a)
{
    if (a.family() == AF_INET)
        return &reinterpret_cast<const sockaddr_in&>(a.storage).sin_addr;
    return &reinterpret_cast<const sockaddr_in6&>(a.storage).sin6_addr;
}

void* ip_bytes(SocketAddress& a) { return const_cast<void*>(ip_bytes(std::as_const(a))); }

size_t ip_length(int family) { return family == AF_INET ? sizeof(in_addr) : sizeof(in6_addr); }

// An IPv4 or IPv6 address with the given port and every address bit zero.
SocketAddress inet_address(int family, uint16_t port)
{
    return family == AF_INET ? SocketAddress::any_ipv4(port) : SocketAddress::any_ipv6(port);
}

ProxyParse need(size_t bytes)
{
    ProxyParse parse;
    parse.status = ProxyParse::Status::kNeed;
    parse.need = bytes;
    return parse;
}

ProxyParse invalid(std::string_view reason)
{
    ProxyParse parse;
    parse.status = ProxyParse::Status::kInvalid;
    parse.reason = reason;
    return parse;
}

ProxyParse done(ProxyHeader header)
{
    ProxyParse parse;
    parse.status = ProxyParse::Status::kDone;
    parse.header = std::move(header);
    return parse;
}

// ---- v1 ----

const V1Protocol* v1_protocol(std::string_view word)
{
    for (const V1Protocol& protocol : kV1Protocols) {
        if (protocol.name == word)
            return &protocol;
    }
    return nullptr;
}

// The shortest whole line, CRLF included, that `text` (a line so far, with
// no CR or LF) can still become, or why it cannot become one. Every valid
// completion is at least this long: that is what lets `need` promise never
// to reach past the header.
struct V1Bound {
    size_t min_length = 0;
    std::string_view reason;
};

V1Bound v1_bound(std::string_view text)
{
    if (!text.starts_with(kV1Start))
        return kV1Start.starts_with(text) ? V1Bound{kV1MinLine, {}} : V1Bound{0, "bad signature"};
    std::string_view after = text.substr(kV1Start.size());
    size_t space = after.find(' ');
    if (space == std::string_view::npos) {
        // The protocol word is still arriving.
        size_t shortest = 0;
        for (const V1Protocol& protocol : kV1Protocols) {
            if (protocol.name.starts_with(after) && (shortest == 0 || v1_min_line(protocol) < shortest))
                shortest = v1_min_line(protocol);
        }
        if (shortest == 0)
            return {0, "unknown v1 protocol"};
        return {std::max(shortest, text.size() + 2), {}};
    }
    const V1Protocol* protocol = v1_protocol(after.substr(0, space));
    if (!protocol)
        return {0, "unknown v1 protocol"};
    if (protocol->family == AF_UNSPEC)
        return {text.size() + 2, {}}; // the rest of an UNKNOWN line is ignored
    std::string_view fields = after.substr(space + 1);
    size_t index = 0;
    size_t start = 0;
    for (size_t end; (end = fields.find(' ', start)) != std::string_view::npos; start = end + 1) {
        if (end == start)
            return {0, "bad v1 spacing"};
        if (++index == kV1Fields)
            return {0, "too many v1 fields"};
    }
    size_t typed = fields.size() - start;
    size_t more = v1_min_field(*protocol, index) > typed ? v1_min_field(*protocol, index) - typed : 0;
    for (size_t later = index + 1; later < kV1Fields; ++later)
        more += 1 + v1_min_field(*protocol, later);
    return {text.size() + more + 2, {}};
}

bool parse_v1_ip(std::string_view text, SocketAddress& out)
{
    char host[INET6_ADDRSTRLEN];
    // inet_pton stops at a NUL, which must not hide the rest of the field.
    if (text.size() >= sizeof host || text.find('\0') != std::string_view::npos)
        return false;
    std::memcpy(host, text.data(), text.size());
    host[text.size()] = '\0';
    return inet_pton(out.family(), host, ip_bytes(out)) == 1;
}

std::optional<uint16_t> parse_v1_port(std::string_view text)
{
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > 65535)
        return std::nullopt;
    return static_cast<uint16_t>(value);
}

// A whole line, without its CRLF, that v1_bound() found complete.
ProxyParse finish_v1(std::string_view line)
{
    ProxyHeader header;
    header.version = ProxyVersion::kV1;
    header.length = line.size() + 2;
    std::string_view after = line.substr(kV1Start.size());
    size_t space = after.find(' ');
    const V1Protocol* protocol = v1_protocol(after.substr(0, space));
    if (protocol->family == AF_UNSPEC)
        return done(std::move(header));

    std::array<std::string_view, kV1Fields> fields;
    std::string_view rest = after.substr(space + 1);
    for (size_t i = 0; i < kV1Fields; ++i) {
        size_t end = std::min(rest.find(' '), rest.size());
        fields[i] = rest.substr(0, end);
        rest = rest.substr(std::min(end + 1, rest.size()));
    }
    std::optional<uint16_t> source_port = parse_v1_port(fields[2]);
    std::optional<uint16_t> destination_port = parse_v1_port(fields[3]);
    header.source = inet_address(protocol->family, source_port.value_or(0));
    header.destination = inet_address(protocol->family, destination_port.value_or(0));
    if (!parse_v1_ip(fields[0], header.source))
        return invalid("bad v1 source address");
    if (!parse_v1_ip(fields[1], header.destination))
        return invalid("bad v1 destination address");
    if (!source_port)
        return invalid("bad v1 source port");
    if (!destination_port)
        return invalid("bad v1 destination port");
    header.command = ProxyCommand::kProxy;
    return done(std::move(header));
}

ProxyParse parse_v1(std::string_view text)
{
    std::string_view window = text.substr(0, kProxyV1MaxLength);
    size_t eol = window.find_first_of("\r\n");
    V1Bound bound = v1_bound(window.substr(0, eol));
    if (!bound.reason.empty())
        return invalid(bound.reason);
    if (bound.min_length > kProxyV1MaxLength)
        return invalid("v1 line too long");
    if (eol == std::string_view::npos)
        return need(bound.min_length - text.size());
    if (bound.min_length > eol + 2)
        return invalid("missing v1 fields");
    if (text[eol] == '\n')
        return invalid("v1 line ends in LF without CR");
    if (eol + 1 == text.size())
        return need(1);
    if (text[eol + 1] != '\n')
        return invalid("v1 CR without LF");
    return finish_v1(text.substr(0, eol));
}

// ---- v2 ----

const V2Family* v2_family(uint8_t byte)
{
    for (const V2Family& row : kV2Families) {
        if (row.byte == byte)
            return &row;
    }
    return nullptr;
}

const V2Family* v2_stream_family(int family)
{
    for (const V2Family& row : kV2Families) {
        if (row.family == family && (row.byte & 0x0F) == kV2Stream)
            return &row;
    }
    return nullptr;
}

uint16_t read16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

void write16(uint8_t* p, size_t value)
{
    p[0] = static_cast<uint8_t>(value >> 8);
    p[1] = static_cast<uint8_t>(value);
}

SocketAddress unix_address(const uint8_t* path)
{
    SocketAddress a;
    auto& sun = reinterpret_cast<sockaddr_un&>(a.storage);
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path, kUnixPathLength);
    size_t n = strnlen(sun.sun_path, kUnixPathLength);
    // A path of all 108 bytes has no NUL, as the kernel allows.
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + (n < kUnixPathLength ? 1 : 0));
    return a;
}

void read_addresses(const V2Family& family, const uint8_t* block, ProxyHeader& header)
{
    if (family.family == AF_UNIX) {
        header.source = unix_address(block);
        header.destination = unix_address(block + kUnixPathLength);
    } else {
        size_t n = ip_length(family.family);
        header.source = inet_address(family.family, read16(block + 2 * n));
        header.destination = inet_address(family.family, read16(block + 2 * n + 2));
        std::memcpy(ip_bytes(header.source), block, n);
        std::memcpy(ip_bytes(header.destination), block + n, n);
    }
    header.command = ProxyCommand::kProxy;
}

// The reason the TLVs are wrong, or empty when they are not.
std::string_view read_tlvs(std::span<const uint8_t> tlvs, ProxyHeader& header)
{
    while (!tlvs.empty()) {
        if (tlvs.size() < 3)
            return "truncated TLV";
        uint8_t type = tlvs[0];
        size_t length = read16(&tlvs[1]);
        if (length > tlvs.size() - 3)
            return "TLV overruns header";
        std::string_view value(reinterpret_cast<const char*>(tlvs.data() + 3), length);
        if (type == kTlvAuthority) {
            if (header.authority)
                return "duplicate authority TLV";
            auto control = [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; };
            if (value.empty() || std::any_of(value.begin(), value.end(), control))
                return "bad authority TLV";
            header.authority.emplace(value);
        } else if (type == kTlvUniqueId) {
            if (header.unique_id)
                return "duplicate unique id TLV";
            if (length > kMaxUniqueId)
                return "unique id TLV too long";
            header.unique_id.emplace(value);
        }
        tlvs = tlvs.subspan(3 + length);
    }
    return {};
}

ProxyParse parse_v2(std::span<const uint8_t> bytes)
{
    size_t signature = std::min(bytes.size(), kV2Signature.size());
    if (std::memcmp(bytes.data(), kV2Signature.data(), signature) != 0)
        return invalid("bad signature");
    if (bytes.size() > 12 && (bytes[12] >> 4) != 2)
        return invalid("unsupported v2 version");
    if (bytes.size() > 12 && bytes[12] != kV2Local && bytes[12] != kV2Proxy)
        return invalid("unsupported v2 command");
    // LOCAL skips the whole block, family and TLVs included, as the
    // specification says; PROXY must name a family it defines.
    const V2Family* family = nullptr;
    if (bytes.size() > 13 && bytes[12] == kV2Proxy && !(family = v2_family(bytes[13])))
        return invalid("unsupported family");
    if (bytes.size() < kProxyV2FixedLength)
        return need(kProxyV2FixedLength - bytes.size());
    size_t block = read16(&bytes[14]);
    if (family && block < family->address_length)
        return invalid("truncated address block");
    size_t length = kProxyV2FixedLength + block;
    if (bytes.size() < length)
        return need(length - bytes.size());

    ProxyHeader header;
    header.version = ProxyVersion::kV2;
    header.length = length;
    if (!family)
        return done(std::move(header));
    std::span<const uint8_t> body = bytes.subspan(kProxyV2FixedLength, block);
    if (family->family != AF_UNSPEC)
        read_addresses(*family, body.data(), header);
    if (std::string_view reason = read_tlvs(body.subspan(family->address_length), header); !reason.empty())
        return invalid(reason);
    return done(std::move(header));
}

} // namespace

std::string_view write_proxy_v1(const SocketAddress& src, const SocketAddress& dst, std::array<char, 108>& out)
{
    const V1Protocol* protocol = nullptr;
    for (const V1Protocol& row : kV1Protocols) {
        if (row.family != AF_UNSPEC && row.family == src.family() && row.family == dst.family())
            protocol = &row;
    }
    size_t n = 0;
    auto put = [&](std::string_view text) {
        std::memcpy(out.data() + n, text.data(), text.size());
        n += text.size();
    };
    auto put_ip = [&](const SocketAddress& a) {
        // Never fails: the buffer outlasts the longest address.
        inet_ntop(a.family(), ip_bytes(a), out.data() + n, static_cast<socklen_t>(out.size() - n));
        n += std::strlen(out.data() + n);
    };
    auto put_port = [&](const SocketAddress& a) {
        n = static_cast<size_t>(std::to_chars(out.data() + n, out.data() + out.size(), a.port()).ptr - out.data());
    };

    put(kV1Start);
    if (!protocol) {
        put(kV1Unknown.name);
        put("\r\n");
        return {out.data(), n};
    }
    put(protocol->name);
    put(" ");
    put_ip(src);
    put(" ");
    put_ip(dst);
    put(" ");
    put_port(src);
    put(" ");
    put_port(dst);
    put("\r\n");
    return {out.data(), n};
}

std::span<const uint8_t> write_proxy_v2(const SocketAddress& src, const SocketAddress& dst,
                                        std::array<uint8_t, 232>& out)
{
    std::copy(kV2Signature.begin(), kV2Signature.end(), out.begin());
    const V2Family* family = src.family() == dst.family() ? v2_stream_family(src.family()) : nullptr;
    uint8_t* block = out.data() + kProxyV2FixedLength;
    if (family && family->family == AF_UNIX) {
        std::memset(block, 0, family->address_length);
        std::string_view paths[] = {src.path(), dst.path()};
        for (size_t i = 0; i < 2; ++i)
            std::copy_n(paths[i].data(), std::min(paths[i].size(), kUnixPathLength), block + i * kUnixPathLength);
    } else if (family) {
        size_t n = ip_length(family->family);
        std::memcpy(block, ip_bytes(src), n);
        std::memcpy(block + n, ip_bytes(dst), n);
        write16(block + 2 * n, src.port());
        write16(block + 2 * n + 2, dst.port());
    }
    out[12] = family ? kV2Proxy : kV2Local;
    out[13] = family ? family->byte : 0x00;
    size_t length = family ? family->address_length : 0;
    write16(&out[14], length);
    return {out.data(), kProxyV2FixedLength + length};
}

ProxyParse parse_proxy_header(std::span<const uint8_t> bytes, ProxyAccept accept)
{
    bool v1 = accept != ProxyAccept::kV2;
    bool v2 = accept != ProxyAccept::kV1;
    if (bytes.empty())
        return need(v1 ? kV1MinLine : kProxyV2FixedLength);
    if (v2 && bytes[0] == kV2Signature[0])
        return parse_v2(bytes);
    if (v1 && bytes[0] == static_cast<uint8_t>(kV1Start[0]))
        return parse_v1({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    return invalid("bad signature");
}

} // namespace superd

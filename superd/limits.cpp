#include "superd/limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace superd {

namespace {

// "'TEXT': REASON", built with append: GCC 12 at -O3 warns falsely
// (-Wrestrict, bug 105329) on chains of operator+ that start with a literal.
Error quoted(std::string_view text, std::string_view reason)
{
    std::string message = "'";
    message.append(text).append("'").append(reason);
    return Error{std::move(message)};
}

// The address bytes to compare, IPv4-mapped IPv6 taken as IPv4.
int address_bytes(const SocketAddress& a, std::array<uint8_t, 16>& out)
{
    if (a.family() == AF_INET) {
        std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in&>(a.storage).sin_addr, 4);
        return AF_INET;
    }
    if (a.family() == AF_INET6) {
        const in6_addr& v6 = reinterpret_cast<const sockaddr_in6&>(a.storage).sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&v6)) {
            std::memcpy(out.data(), &v6.s6_addr[12], 4);
            return AF_INET;
        }
        std::memcpy(out.data(), &v6, 16);
        return AF_INET6;
    }
    return 0;
}

void mask(std::array<uint8_t, 16>& bytes, int bits)
{
    for (int i = 0; i < 16; ++i) {
        int keep = std::clamp(bits - 8 * i, 0, 8);
        bytes[static_cast<size_t>(i)] &= static_cast<uint8_t>(0xff00u >> keep);
    }
}

} // namespace

Result<Cidr> Cidr::parse(std::string_view text)
{
    std::string_view address = text, length;
    if (size_t slash = text.find('/'); slash != std::string_view::npos) {
        address = text.substr(0, slash);
        length = text.substr(slash + 1);
    }
    Cidr cidr;
    std::string host(address);
    if (inet_pton(AF_INET, host.c_str(), cidr.bytes.data()) == 1) {
        cidr.family = AF_INET;
        cidr.bits = 32;
    } else if (inet_pton(AF_INET6, host.c_str(), cidr.bytes.data()) == 1) {
        cidr.family = AF_INET6;
        cidr.bits = 128;
    } else {
        return quoted(text, " is not an address or prefix such as 10.0.0.0/8 or ::1/128");
    }
    if (text.find('/') != std::string_view::npos) {
        int bits = -1;
        auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), bits);
        if (length.empty() || ec != std::errc() || end != length.data() + length.size() || bits < 0 || bits > cidr.bits)
            return quoted(text, ": the prefix length must be 0 to " + std::to_string(cidr.bits));
        cidr.bits = bits;
    }
    mask(cidr.bytes, cidr.bits);
    return cidr;
}

bool Cidr::contains(const SocketAddress& address) const
{
    std::array<uint8_t, 16> candidate{};
    if (address_bytes(address, candidate) != family)
        return false;
    mask(candidate, bits);
    return candidate == bytes;
}

std::string Cidr::to_string() const
{
    char text[INET6_ADDRSTRLEN] = "?";
    inet_ntop(family, bytes.data(), text, sizeof text);
    return std::string(text) + "/" + std::to_string(bits);
}

bool AccessList::allows(const SocketAddress& address) const
{
    int best_allow = -1, best_deny = -1;
    for (const Cidr& c : allow_)
        if (c.contains(address))
            best_allow = std::max(best_allow, c.bits);
    for (const Cidr& c : deny_)
        if (c.contains(address))
            best_deny = std::max(best_deny, c.bits);
    if (best_allow < 0 && best_deny < 0)
        return allow_.empty(); // an allow list admits only what it names
    return best_allow > best_deny;
}

SourceKey SourceKey::of(const SocketAddress& address, int prefix_v4, int prefix_v6)
{
    std::array<uint8_t, 16> bytes{};
    int family = address_bytes(address, bytes);
    mask(bytes, family == AF_INET ? prefix_v4 : prefix_v6);
    SourceKey key;
    key.bytes[0] = static_cast<uint8_t>(family);
    std::copy(bytes.begin(), bytes.end(), key.bytes.begin() + 1);
    return key;
}

size_t SourceKeyHash::operator()(const SourceKey& key) const
{
    // FNV-1a: keys are short and an attacker chooses only the host bits.
    size_t h = 1469598103934665603ull;
    for (uint8_t b : key.bytes)
        h = (h ^ b) * 1099511628211ull;
    return h;
}

Result<double> parse_rate(std::string_view text)
{
    size_t slash = text.find('/');
    double count = 0;
    std::string_view number = text.substr(0, slash),
                     unit = slash == std::string_view::npos ? "" : text.substr(slash + 1);
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), count);
    double per = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
    if (number.empty() || ec != std::errc() || end != number.data() + number.size() || per == 0 || !(count > 0)
        || !std::isfinite(count))
        return quoted(text, " is not a rate such as \"50/s\", \"300/m\" or \"1000/h\"");
    return count / per;
}

double default_burst(double per_second)
{
    if (per_second >= static_cast<double>(kMaxBurst))
        return static_cast<double>(kMaxBurst);
    auto whole = static_cast<double>(static_cast<int64_t>(per_second));
    return std::max(1.0, whole < per_second ? whole + 1 : whole);
}

void TokenBucket::refill(Clock::time_point now)
{
    if (now > last_) {
        std::chrono::duration<double> elapsed = now - last_;
        tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
        last_ = now;
    }
}

bool TokenBucket::take(Clock::time_point now)
{
    refill(now);
    if (tokens_ < 1)
        return false;
    tokens_ -= 1;
    return true;
}

std::chrono::milliseconds TokenBucket::wait(Clock::time_point now)
{
    refill(now);
    if (tokens_ >= 1)
        return std::chrono::milliseconds(0);
    // Rounded up, so that the token is there when the wait is over; capped
    // at a day, for rates so slow that the wait would overflow.
    using Seconds = std::chrono::duration<double>;
    Seconds until_token = std::min<Seconds>(Seconds((1 - tokens_) / rate_), std::chrono::hours(24));
    return std::chrono::ceil<std::chrono::milliseconds>(until_token);
}

bool TokenBucket::full(Clock::time_point now) const
{
    std::chrono::duration<double> elapsed = now > last_ ? now - last_ : Clock::duration(0);
    return tokens_ + elapsed.count() * rate_ >= burst_;
}

std::optional<std::chrono::milliseconds> QuickExitPacer::exited(Clock::duration ran, bool left_undone)
{
    in_a_row_ = ran < policy_.quick && left_undone ? in_a_row_ + 1 : 0;
    if (in_a_row_ < policy_.tolerated)
        return std::nullopt;
    int doublings = std::min(in_a_row_ - policy_.tolerated, 10);
    return std::min(policy_.first * (1 << doublings), policy_.max);
}

} // namespace superd

#include "superd/notify.h"

#include "superd/fd.h"
#include "superd/log.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace superd {

struct Notifier::Channel {
    UniqueFd fd;
    sockaddr_un address{};
    socklen_t length = 0;
    std::string name; // as given, for the log
    bool failed = false;

    // Sends `message` if the socket takes it now; logs the first failure.
    void send(std::string_view message)
    {
        ssize_t n;
        do
            n = ::sendto(fd.get(), message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                         reinterpret_cast<const sockaddr*>(&address), length);
        while (n < 0 && errno == EINTR);
        if (n >= 0 || failed)
            return;
        // Debug: superd run by hand with a stale $NOTIFY_SOCKET is fine.
        failed = true;
        spdlog::debug("notify socket={} reason=\"{}\" (not told again)", Escaped{name}, std::strerror(errno));
    }
};

namespace {

// A decimal number that fits, and nothing else.
std::optional<unsigned long long> parse_number(const char* text)
{
    if (!text)
        return std::nullopt;
    std::string_view s(text);
    unsigned long long value = 0;
    auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || error != std::errc() || end != s.data() + s.size())
        return std::nullopt;
    return value;
}

} // namespace

Notifier::Notifier(std::string_view address, std::optional<std::chrono::microseconds> watchdog)
{
    auto channel = std::make_unique<Channel>();
    channel->name = address;
    channel->address.sun_family = AF_UNIX;
    // "@name" is abstract: its first byte is NUL, and it is as long as the
    // name, with no NUL at the end. A path (systemd gives absolute ones) ends
    // with one.
    bool abstract = !address.empty() && address[0] == '@';
    size_t size = abstract ? address.size() : address.size() + 1;
    if (address.size() < 2 || (!abstract && address[0] != '/') || size > sizeof channel->address.sun_path) {
        spdlog::debug("notify socket={} reason=\"not a unix socket's address\" (nothing is sent)", Escaped{address});
        return;
    }
    std::memcpy(channel->address.sun_path, address.data(), address.size());
    if (abstract)
        channel->address.sun_path[0] = '\0';
    channel->length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + size);
    // Long-lived: up with the listeners, out of the way of a child's few fds.
    channel->fd.reset(move_high(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
    if (!channel->fd) {
        spdlog::debug("notify socket={} reason=\"socket: {}\" (nothing is sent)", Escaped{address},
                      std::strerror(errno));
        return;
    }
    channel_ = std::move(channel);
    if (watchdog && watchdog->count() > 0)
        watchdog_ = watchdog;
}

Notifier Notifier::from_environment()
{
    const char* socket = std::getenv("NOTIFY_SOCKET");
    std::optional<std::chrono::microseconds> watchdog;
    auto usec = parse_number(std::getenv("WATCHDOG_USEC"));
    const char* pid_text = std::getenv("WATCHDOG_PID");
    auto pid = parse_number(pid_text);
    // A watchdog meant for another process (superd started by a wrapper
    // that was the unit's main process) is not superd's to feed.
    bool ours = !pid_text || (pid && *pid == static_cast<unsigned long long>(::getpid()));
    if (usec && *usec > 0 && *usec <= static_cast<unsigned long long>(std::chrono::microseconds::max().count()) && ours)
        watchdog = std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(*usec));
    Notifier notifier = socket ? Notifier(socket, watchdog) : Notifier();
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    return notifier;
}

Notifier::Notifier() = default;
Notifier::Notifier(Notifier&&) noexcept = default;
Notifier& Notifier::operator=(Notifier&&) noexcept = default;
Notifier::~Notifier() = default;

void Notifier::ready(std::string_view status)
{
    if (channel_)
        channel_->send(fmt::format("READY=1\nSTATUS={}", Escaped{status}));
}

void Notifier::reloading()
{
    if (!channel_)
        return;
    // The clock systemd compares it with (Type=notify-reload): CLOCK_MONOTONIC.
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    auto usec = static_cast<unsigned long long>(now.tv_sec) * 1000000ULL
                + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
    channel_->send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec));
}

void Notifier::stopping()
{
    if (channel_)
        channel_->send("STOPPING=1");
}

void Notifier::status(std::string_view status)
{
    if (channel_)
        channel_->send(fmt::format("STATUS={}", Escaped{status}));
}

void Notifier::hand_over(pid_t successor)
{
    if (!channel_)
        return;
    channel_->send(fmt::format("MAINPID={}\nSTATUS=handed over to pid {}", successor, successor));
    watchdog_event_.reset();
    channel_.reset();
}

std::vector<std::string> Notifier::environment() const
{
    std::vector<std::string> out;
    if (!channel_)
        return out;
    out.push_back("NOTIFY_SOCKET=" + channel_->name);
    if (watchdog_)
        out.push_back("WATCHDOG_USEC=" + std::to_string(watchdog_->count()));
    return out;
}

std::optional<std::chrono::microseconds> Notifier::watchdog_interval() const
{
    if (!channel_ || !watchdog_)
        return std::nullopt;
    return std::max(*watchdog_ / 2, std::chrono::microseconds(1));
}

bool Notifier::start_watchdog(event_base* base)
{
    auto interval = watchdog_interval();
    if (!interval)
        return false;
    watchdog_event_.reset(event_new(base, -1, EV_PERSIST, on_watchdog, channel_.get()));
    timeval every{static_cast<time_t>(interval->count() / 1000000),
                  static_cast<suseconds_t>(interval->count() % 1000000)};
    if (!watchdog_event_ || event_add(watchdog_event_.get(), &every) != 0) {
        watchdog_event_.reset();
        spdlog::warn("notify socket={} reason=\"cannot set the watchdog's timer\"", Escaped{channel_->name});
        return false;
    }
    return true;
}

void Notifier::on_watchdog(evutil_socket_t, short, void* channel)
{
    static_cast<Channel*>(channel)->send("WATCHDOG=1");
}

} // namespace superd

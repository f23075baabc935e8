// Notifier: superd's side of systemd's notification protocol (sd_notify(3))
// without libsystemd. A message is one datagram of "NAME=value" lines sent
// to the unix socket that $NOTIFY_SOCKET names: a path, or "@name" for the
// abstract namespace.
//
// What superd says, and when (see daemon.cpp): READY=1 once every listener
// is open; RELOADING=1 with MONOTONIC_USEC= when a SIGHUP reload starts and
// READY=1 when it ends, applied or refused; STOPPING=1 on SIGTERM or SIGINT;
// STATUS=, one line for `systemctl status`, with each READY=1. Under
// WatchdogSec= ($WATCHDOG_USEC), WATCHDOG=1 every half of that period from
// the event loop itself, so that a loop that is stuck stops sending and the
// service manager restarts superd.
//
// The service manager is told, never waited for: the socket is non-blocking
// and every send is MSG_DONTWAIT. A send that fails (nobody listens, the
// manager is busy) is dropped and logged once at debug level. A Notifier
// made without $NOTIFY_SOCKET sends nothing at all.
#pragma once

#include "superd/event.h"

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

class Notifier {
public:
    // Tells no one.
    Notifier();
    // Tells the socket at `address` ("/path" or "@abstract"); `watchdog` is
    // the service manager's period ($WATCHDOG_USEC). An address that is not
    // a unix socket's (relative, too long, empty) tells no one, said at debug
    // level.
    Notifier(std::string_view address, std::optional<std::chrono::microseconds> watchdog);
    // From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the watchdog is
    // superd's only when that pid is unset or superd's own), which it then
    // removes from the environment: they are addressed to superd, and a
    // service that found them (through pass_env) would speak for superd.
    // Call it before the configuration is read.
    static Notifier from_environment();

    Notifier(Notifier&&) noexcept;
    Notifier& operator=(Notifier&&) noexcept;
    ~Notifier();

    // Whether there is anyone to tell.
    bool active() const { return channel_ != nullptr; }

    // READY=1 and STATUS=`status`. `status` is one line: a newline or other
    // control byte is escaped as in the log (log.h), so it cannot add an
    // assignment of its own.
    void ready(std::string_view status);
    // RELOADING=1 and MONOTONIC_USEC=, the time on CLOCK_MONOTONIC.
    void reloading();
    void stopping();
    void status(std::string_view status);

    // An upgrade's new process `successor` serves now (upgrade.h): says
    // MAINPID= (which systemd takes from the main process), then tells no
    // one: the new process speaks for superd from here on.
    void hand_over(pid_t successor);
    // NOTIFY_SOCKET= and WATCHDOG_USEC= as superd found them, for the new
    // process of an upgrade (without WATCHDOG_PID, so the watchdog is its
    // own); nothing when no one is told.
    std::vector<std::string> environment() const;

    // How often WATCHDOG=1 is due: half of $WATCHDOG_USEC, as systemd
    // advises; none without a watchdog or anyone to tell.
    std::optional<std::chrono::microseconds> watchdog_interval() const;
    // Sends WATCHDOG=1 every watchdog_interval() from `base`'s loop until
    // the Notifier goes, which must be before `base` is freed. False when
    // there is no watchdog or the timer could not be set.
    bool start_watchdog(event_base* base);

private:
    // The socket and its address: on the heap, where the watchdog's event
    // can point whatever happens to the Notifier.
    struct Channel;
    static void on_watchdog(evutil_socket_t, short, void* channel);

    std::unique_ptr<Channel> channel_;
    std::optional<std::chrono::microseconds> watchdog_;
    Event watchdog_event_; // after channel_, which it points to
};

} // namespace superd

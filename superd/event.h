// RAII for libevent: an event base and events that free themselves.
//
// The Daemon owns the one EventBase; every Event belongs to the object whose
// callback it runs, so a callback can never outlive its target.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>

#include <memory>

namespace superd {

struct EventBaseDeleter {
    void operator()(event_base* base) const { event_base_free(base); }
};
struct EventDeleter {
    void operator()(event* ev) const { event_free(ev); }
};

struct BuffereventDeleter {
    void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};

using EventBase = std::unique_ptr<event_base, EventBaseDeleter>;
using Event = std::unique_ptr<event, EventDeleter>;
using Bufferevent = std::unique_ptr<bufferevent, BuffereventDeleter>;

// An event that is added only while it is wanted, for relays that watch a
// socket's reading and writing apart. Each change is an epoll_ctl, so only
// a change of wish makes one.
struct Interest {
    Event ev;
    bool on = false;

    void want(bool wanted)
    {
        if (on == wanted)
            return;
        on = wanted;
        if (wanted)
            event_add(ev.get(), nullptr);
        else
            event_del(ev.get());
    }
};

} // namespace superd

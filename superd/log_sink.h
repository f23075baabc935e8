// LogSink: the end of superd's log, written so that the event loop never
// waits on whoever reads it (a stuck s6-log, a full disk, `| less` left at
// its prompt).
//
// A line goes straight to the log's fd when nothing is queued and the fd
// takes it without blocking. Whatever the fd does not take waits in a queue
// of at most `queue_limit` bytes, written when the fd becomes writable: an
// EV_WRITE event, armed only while something waits and only once a loop is
// attached. With the queue full, new lines are dropped whole and counted;
// once the queue has drained, one line "dropped N log lines" (at warning, in
// the usual format) says how many. A log that is gone (EPIPE, EBADF, ENOSPC,
// ...) drops and counts the same way: superd never dies of its log.
//
// Lines are never reordered and never cut: a line the fd took in part has
// its rest queued before anything else. A regular file is the exception: it
// only takes part of a line when it cannot grow (a full disk), and epoll
// cannot say when it can again, so the rest is dropped and counted, and the
// next line is tried as it comes.
//
// Single-threaded, like superd (null_mutex). The owner must detach() before
// freeing the attached event base. finish() writes what is queued for at
// most a bounded time, so a stuck logger never keeps superd from exiting;
// the destructor does it with kExitWait.
#pragma once

#include "superd/event.h"
#include "superd/fd.h"

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace superd {

// Where log lines go and how to write there without blocking.
struct LogFd {
    int fd = -1;
    bool socket = false; // written with send(MSG_DONTWAIT | MSG_NOSIGNAL)
    UniqueFd owned;      // a description of superd's own, when one was opened
    // epoll can tell when it takes more: not so for a regular file, which
    // never blocks but can fill up (a full disk, RLIMIT_FSIZE).
    bool pollable = true;
};

// How to write to `fd` (superd's stderr) without blocking and without
// changing a file description that someone else shares (see log_sink.cpp).
LogFd open_log_fd(int fd);

class LogSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
public:
    // About 10,000 lines of ~100 bytes: several seconds of a busy superd at
    // debug level, enough to ride out a logger that pauses (log rotation, an
    // fsync) without a loss, and little memory next to superd's ~3 MB even
    // when a stuck logger fills it. Memory is used only while lines wait.
    static constexpr size_t kQueueBytes = size_t{1} << 20;
    static constexpr std::chrono::milliseconds kExitWait{1000};

    explicit LogSink(LogFd out, size_t queue_limit = kQueueBytes);
    ~LogSink() override;
    LogSink(const LogSink&) = delete;
    LogSink& operator=(const LogSink&) = delete;

    void attach(event_base* base);
    void detach();
    // Writes what is queued, waiting at most `limit` for the fd in all;
    // what is still queued then is dropped (and counted).
    void finish(std::chrono::milliseconds limit);

    size_t queued_bytes() const { return queue_.size() - head_; }
    uint64_t dropped() const { return dropped_; }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override;
    // Every line is written (or queued) as it comes: nothing to flush, and
    // spdlog's flush must not wait.
    void flush_() override {}

private:
    static void on_writable(evutil_socket_t, short, void* self);
    // Writes `line` now, or queues it, or drops it.
    void put(std::string_view line);
    // What the fd took of `bytes`: 0 when it would block, -1 when the log is gone.
    ssize_t transmit(std::string_view bytes);
    void write_queue();
    void drop_queue();
    // After a write that left nothing queued: says what was dropped before.
    void report_dropped();
    // Arms the write event while something is queued, disarms it otherwise.
    void watch();

    LogFd out_;
    size_t queue_limit_;
    std::string queue_;
    size_t head_ = 0; // queue_ before head_ is written
    uint64_t dropped_ = 0;
    Event writable_;
    bool armed_ = false;
};

} // namespace superd

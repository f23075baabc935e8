#include "superd/log_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace superd {

LogFd open_log_fd(int fd)
{
    struct stat st;
    if (::fstat(fd, &st) != 0)
        return LogFd{fd, false, {}}; // no stderr: every line is dropped and counted
    // A regular file never blocks; writing to it as given keeps O_APPEND and
    // the offset that the shell (`2>>superd.log`) shares with superd.
    if (S_ISREG(st.st_mode))
        return LogFd{fd, false, {}, false};
    // journald's stream and s6/runit loggers: the flag goes on each call,
    // not on a description the logger's other writers share.
    if (S_ISSOCK(st.st_mode))
        return LogFd{fd, true, {}};
    // A pipe, FIFO, tty or other device: O_NONBLOCK belongs to the open file
    // description, which the shell shares when stderr is its terminal;
    // setting it on fd 2 would leave the user's shell with a non-blocking
    // terminal after superd exits. A fresh description of the same object
    // is superd's alone.
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    int own = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (own >= 0)
        return LogFd{own, false, UniqueFd(own)};
    // No /proc (a chroot), or a pipe whose reader is gone (ENXIO): the only
    // way left not to block is the shared description's own flag.
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0)
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    return LogFd{fd, false, {}};
}

LogSink::LogSink(LogFd out, size_t queue_limit) : out_(std::move(out)), queue_limit_(queue_limit) {}

LogSink::~LogSink()
{
    finish(kExitWait);
    detach();
}

void LogSink::attach(event_base* base)
{
    detach();
    writable_.reset(event_new(base, out_.fd, EV_WRITE | EV_PERSIST, on_writable, this));
    watch();
}

void LogSink::detach()
{
    writable_.reset(); // event_free removes it from its base
    armed_ = false;
}

void LogSink::sink_it_(const spdlog::details::log_msg& msg)
{
    // A line that cannot even be queued is not worth formatting.
    if (queued_bytes() >= queue_limit_) {
        ++dropped_;
        return;
    }
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    put(std::string_view(line.data(), line.size()));
}

void LogSink::put(std::string_view line)
{
    if (queued_bytes() > 0) {
        if (queued_bytes() + line.size() > queue_limit_)
            ++dropped_;
        else
            queue_.append(line);
        return;
    }
    ssize_t n = transmit(line);
    if (n < 0) {
        ++dropped_;
        return;
    }
    if (static_cast<size_t>(n) == line.size()) {
        report_dropped();
        return;
    }
    if (!out_.pollable) { // a full file: no event would ever say "writable"
        ++dropped_;
        return;
    }
    // The fd took part of the line: the rest goes first, whatever the limit.
    queue_.assign(line.substr(static_cast<size_t>(n)));
    head_ = 0;
    watch();
}

ssize_t LogSink::transmit(std::string_view bytes)
{
    for (;;) {
        ssize_t n = out_.socket ? ::send(out_.fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                                : ::write(out_.fd, bytes.data(), bytes.size());
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1; // EPIPE, EBADF, ENOSPC, EIO: the log is gone for now
    }
}

void LogSink::write_queue()
{
    bool wrote = false;
    while (queued_bytes() > 0) {
        ssize_t n = transmit(std::string_view(queue_).substr(head_));
        if (n < 0) {
            drop_queue();
            break;
        }
        if (n == 0)
            break;
        head_ += static_cast<size_t>(n);
        wrote = true;
    }
    if (queued_bytes() == 0) {
        queue_.clear();
        // A stuck logger's megabyte is given back once it is written.
        if (queue_.capacity() > queue_limit_ / 16)
            queue_.shrink_to_fit();
        head_ = 0;
        if (wrote)
            report_dropped();
    } else if (head_ > queue_.size() / 2) {
        queue_.erase(0, head_);
        head_ = 0;
    }
    watch();
}

void LogSink::drop_queue()
{
    // A line partly written counts as dropped too: its end is lost.
    auto pending = std::string_view(queue_).substr(head_);
    dropped_ += static_cast<uint64_t>(std::count(pending.begin(), pending.end(), '\n'));
    queue_.clear();
    head_ = 0;
}

void LogSink::report_dropped()
{
    if (dropped_ == 0)
        return;
    std::string text = "dropped " + std::to_string(dropped_) + " log lines";
    dropped_ = 0;
    spdlog::details::log_msg msg("superd", spdlog::level::warn, text);
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    // Reports again only after a later write succeeds: no loop on a dead log.
    put(std::string_view(line.data(), line.size()));
}

void LogSink::watch()
{
    bool wanted = writable_ && queued_bytes() > 0;
    if (wanted == armed_)
        return;
    if (wanted)
        armed_ = event_add(writable_.get(), nullptr) == 0;
    else
        armed_ = event_del(writable_.get()) != 0;
}

void LogSink::on_writable(evutil_socket_t, short, void* self) { static_cast<LogSink*>(self)->write_queue(); }

void LogSink::finish(std::chrono::milliseconds limit)
{
    auto deadline = std::chrono::steady_clock::now() + limit;
    write_queue();
    while (queued_bytes() > 0) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd p{out_.fd, POLLOUT, 0};
        int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0)
            write_queue();
    }
    if (queued_bytes() > 0) {
        drop_queue();
        watch();
    }
}

} // namespace superd

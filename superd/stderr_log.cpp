#include "superd/stderr_log.h"

#include "superd/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace superd {

namespace {

// A longer line is logged in pieces of this size.
constexpr size_t kMaxLine = 4096;

// Reads per wake-up, so a chatty child cannot keep the loop to itself.
constexpr int kReadsPerWakeup = 16;

} // namespace

Result<std::unique_ptr<StderrPipe>> StderrPipe::open(event_base* base, std::string service, ClosedHandler on_closed)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return Error{std::string("pipe: ") + std::strerror(errno)};
    UniqueFd read_end(move_high(fds[0])), write_end(fds[1]);
    // Only our end is non-blocking: the child writes as to any stderr.
    ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
    std::unique_ptr<StderrPipe> pipe(
        new StderrPipe(std::move(read_end), std::move(write_end), std::move(service), std::move(on_closed)));
    pipe->event_.reset(event_new(base, pipe->read_end_.get(), EV_READ | EV_PERSIST, on_readable, pipe.get()));
    event_add(pipe->event_.get(), nullptr);
    return pipe;
}

StderrPipe::StderrPipe(UniqueFd read_end, UniqueFd write_end, std::string service, ClosedHandler on_closed)
    : read_end_(std::move(read_end)),
      write_end_(std::move(write_end)),
      service_(std::move(service)),
      on_closed_(std::move(on_closed))
{
}

void StderrPipe::started(pid_t pid) { pid_ = pid; }

void StderrPipe::on_readable(evutil_socket_t, short, void* self) { static_cast<StderrPipe*>(self)->read_available(); }

void StderrPipe::emit(std::string_view line)
{
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    spdlog::info("stderr service={} pid={} line=\"{}\"", service_, pid_, Escaped{line});
}

void StderrPipe::read_available()
{
    char buffer[8192];
    for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
        ssize_t n = ::read(read_end_.get(), buffer, sizeof buffer);
        if (n > 0) {
            partial_.append(buffer, static_cast<size_t>(n));
            size_t start = 0;
            for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1)
                emit(std::string_view(partial_).substr(start, nl - start));
            partial_.erase(0, start);
            while (partial_.size() >= kMaxLine) {
                emit(std::string_view(partial_).substr(0, kMaxLine));
                partial_.erase(0, kMaxLine);
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        // EOF (every writer has closed) or an error: this pipe is done.
        if (!partial_.empty())
            emit(partial_);
        event_del(event_.get());
        on_closed_(this); // destroys this object
        return;
    }
}

} // namespace superd

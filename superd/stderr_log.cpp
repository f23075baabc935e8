#include "superd/stderr_log.h"

#include "superd/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace superd {

namespace {

// A longer line is logged in pieces of this size.
constexpr size_t kMaxLine = 4096;

// Reads per wake-up, so a chatty child cannot keep the loop to itself.
constexpr int kReadsPerWakeup = 16;

// The shortest rest of a pipe over its budget: at most ten reads a second
// of a child that floods, however fast its budget refills by single lines.
constexpr std::chrono::milliseconds kMinPause{100};

} // namespace

StderrBudget::StderrBudget(event_base* base, std::string service, std::optional<double> rate, double burst,
                           Clock::time_point now)
    : service_(std::move(service)), rate_(rate.value_or(kDefaultStderrRate)),
      burst_(rate ? burst : kDefaultStderrBurst), bucket_(rate_, burst_, now),
      report_(evtimer_new(base, on_report, this))
{
}

StderrBudget::~StderrBudget() { report(); }

std::shared_ptr<StderrBudget> StderrBudget::keep_or_make(std::shared_ptr<StderrBudget> old, event_base* base,
                                                         std::string service, std::optional<double> rate, double burst,
                                                         Clock::time_point now)
{
    if (old && old->rate_ == rate.value_or(kDefaultStderrRate) && old->burst_ == (rate ? burst : kDefaultStderrBurst))
        return old;
    return std::make_shared<StderrBudget>(base, std::move(service), rate, burst, now);
}

void StderrBudget::dropped(uint64_t lines)
{
    unreported_ += lines;
    if (unreported_ > 0 && report_ && !evtimer_pending(report_.get(), nullptr)) {
        timeval tv = to_timeval(kReportEvery);
        evtimer_add(report_.get(), &tv);
    }
}

void StderrBudget::on_report(evutil_socket_t, short, void* self) { static_cast<StderrBudget*>(self)->report(); }

void StderrBudget::report()
{
    if (unreported_ == 0)
        return;
    spdlog::warn("stderr service={} dropped={} reason=rate", service_, unreported_);
    unreported_ = 0;
}

Result<std::unique_ptr<StderrPipe>> StderrPipe::open(event_base* base, std::string service,
                                                     std::shared_ptr<StderrBudget> budget, ClosedHandler on_closed)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return Error{std::string("pipe: ") + std::strerror(errno)};
    UniqueFd read_end(move_high(fds[0])), write_end(fds[1]);
    // Only our end is non-blocking: the child writes as to any stderr.
    ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
    std::unique_ptr<StderrPipe> pipe(new StderrPipe(std::move(read_end), std::move(write_end), std::move(service),
                                                    std::move(budget), std::move(on_closed)));
    pipe->event_.reset(event_new(base, pipe->read_end_.get(), EV_READ | EV_PERSIST, on_readable, pipe.get()));
    pipe->resume_.reset(evtimer_new(base, on_resume, pipe.get()));
    event_add(pipe->event_.get(), nullptr);
    return pipe;
}

StderrPipe::StderrPipe(UniqueFd read_end, UniqueFd write_end, std::string service, std::shared_ptr<StderrBudget> budget,
                       ClosedHandler on_closed)
    : read_end_(std::move(read_end)), write_end_(std::move(write_end)), service_(std::move(service)),
      budget_(std::move(budget)), on_closed_(std::move(on_closed))
{
}

void StderrPipe::started(pid_t pid) { pid_ = pid; }

void StderrPipe::on_readable(evutil_socket_t, short, void* self) { static_cast<StderrPipe*>(self)->read_available(); }

void StderrPipe::on_resume(evutil_socket_t, short, void* self)
{
    auto* pipe = static_cast<StderrPipe*>(self);
    event_add(pipe->event_.get(), nullptr);
}

void StderrPipe::emit(std::string_view line)
{
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    spdlog::info("stderr service={} pid={} line=\"{}\"", service_, pid_, Escaped{line});
}

bool StderrPipe::take_lines(Clock::time_point now)
{
    bool within = true;
    uint64_t dropped = 0;
    size_t start = 0;
    for (;;) {
        // A line ends at its newline, or is cut into kMaxLine pieces.
        size_t nl = partial_.find('\n', start);
        size_t end = 0, next = 0;
        if (nl != std::string::npos && nl - start < kMaxLine)
            end = nl, next = nl + 1;
        else if (partial_.size() - start >= kMaxLine)
            end = next = start + kMaxLine;
        else
            break;
        within = within && budget_->take(now);
        if (within)
            emit(std::string_view(partial_).substr(start, end - start));
        else
            ++dropped; // not even formatted
        start = next;
    }
    partial_.erase(0, start);
    if (dropped > 0)
        budget_->dropped(dropped);
    return within;
}

void StderrPipe::pause(Clock::time_point now)
{
    event_del(event_.get());
    timeval tv = to_timeval(std::max(budget_->wait(now), kMinPause));
    evtimer_add(resume_.get(), &tv);
}

void StderrPipe::read_available()
{
    char buffer[8192];
    for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
        ssize_t n = ::read(read_end_.get(), buffer, sizeof buffer);
        if (n > 0) {
            partial_.append(buffer, static_cast<size_t>(n));
            auto now = Clock::now();
            if (!take_lines(now)) {
                pause(now);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        // EOF (every writer has closed) or an error: this pipe is done.
        if (!partial_.empty()) {
            if (budget_->take(Clock::now()))
                emit(partial_);
            else
                budget_->dropped(1);
        }
        event_del(event_.get());
        on_closed_(this); // destroys this object
        return;
    }
}

} // namespace superd

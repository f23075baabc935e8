#include "superd/log.h"

#include "superd/log_sink.h"

#include <event2/event.h>

#include <unistd.h>

#include <cstdlib>

namespace superd {

namespace {

void on_libevent_log(int severity, const char* message)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        spdlog::debug("libevent: {}", message);
        break;
    case EVENT_LOG_MSG:
        spdlog::info("libevent: {}", message);
        break;
    case EVENT_LOG_WARN:
        spdlog::warn("libevent: {}", message);
        break;
    default:
        spdlog::error("libevent: {}", message);
        break;
    }
}

// The sink init_logging installed, if it did.
std::shared_ptr<LogSink> installed_sink()
{
    auto logger = spdlog::default_logger();
    if (!logger || logger->sinks().empty())
        return nullptr;
    return std::dynamic_pointer_cast<LogSink>(logger->sinks().front());
}

[[noreturn]] void on_libevent_fatal(int err)
{
    spdlog::critical("libevent: fatal error {}", err);
    // Not spdlog::shutdown(): destroying the sink would free its event
    // inside a libevent that has just failed. The wait is bounded.
    if (auto sink = installed_sink())
        sink->finish(LogSink::kExitWait);
    std::abort();
}

} // namespace

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name)
{
    if (name == "trace")
        return spdlog::level::trace;
    if (name == "debug")
        return spdlog::level::debug;
    if (name == "info")
        return spdlog::level::info;
    if (name == "warn")
        return spdlog::level::warn;
    if (name == "error")
        return spdlog::level::err;
    return std::nullopt;
}

std::shared_ptr<spdlog::logger> make_logger(std::shared_ptr<spdlog::sinks::sink> sink, spdlog::level::level_enum level)
{
    auto logger = std::make_shared<spdlog::logger>("superd", std::move(sink));
    // %^ and %$ mark the level for colour, which LogSink (like spdlog's
    // stderr_sink_st before it) ignores: the log is plain text everywhere.
    // Each line is written as it comes: nothing waits for a flush.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    logger->set_level(level);
    return logger;
}

void init_logging(spdlog::level::level_enum level)
{
    // The sink's destructor (when spdlog's registry goes at exit) writes
    // what is still queued, for at most LogSink::kExitWait.
    auto logger = make_logger(std::make_shared<LogSink>(open_log_fd(STDERR_FILENO)), level);
    spdlog::set_default_logger(std::move(logger));

    event_set_log_callback(on_libevent_log);
    event_set_fatal_callback(on_libevent_fatal);
}

LogAttachment attach_logging(event_base* base)
{
    auto sink = installed_sink();
    if (sink)
        sink->attach(base);
    return LogAttachment(std::move(sink));
}

LogAttachment::~LogAttachment()
{
    if (sink_)
        sink_->detach();
}

LogAttachment& LogAttachment::operator=(LogAttachment&& other) noexcept
{
    if (this != &other) {
        if (sink_)
            sink_->detach();
        sink_ = std::move(other.sink_);
    }
    return *this;
}

} // namespace superd

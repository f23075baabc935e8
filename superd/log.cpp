#include "superd/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <event2/event.h>

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

[[noreturn]] void on_libevent_fatal(int err)
{
    spdlog::critical("libevent: fatal error {}", err);
    spdlog::shutdown();
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

void init_logging(spdlog::level::level_enum level)
{
    auto logger = std::make_shared<spdlog::logger>("superd", std::make_shared<spdlog::sinks::stderr_sink_st>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    logger->set_level(level);
    // Lines are short and a crash should not lose the last ones.
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));

    event_set_log_callback(on_libevent_log);
    event_set_fatal_callback(on_libevent_fatal);
}

} // namespace superd

#include "superd/log.h"

#include "superd/log_sink.h"

#include <spdlog/pattern_formatter.h>

#include <event2/event.h>

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
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

// The syslog priority of each spdlog level, in the order of level_enum:
// trace and debug are debug, err and critical both error, as sd-daemon(3)
// maps them.
constexpr std::string_view kPriorities[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<3>", "<6>"};

// The %* flag: the line's priority, for the journal.
class PriorityFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override
    {
        auto level = static_cast<size_t>(msg.level);
        std::string_view priority = level < std::size(kPriorities) ? kPriorities[level] : kPriorities[2];
        dest.append(priority.data(), priority.data() + priority.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<PriorityFlag>(); }
};

// "DEVICE:INODE" as systemd writes it.
bool parse_dev_ino(std::string_view text, unsigned long long& dev, unsigned long long& ino)
{
    size_t colon = text.find(':');
    if (colon == std::string_view::npos)
        return false;
    auto whole = [](std::string_view part, unsigned long long& value) {
        auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), value);
        return !part.empty() && error == std::errc() && end == part.data() + part.size();
    };
    return whole(text.substr(0, colon), dev) && whole(text.substr(colon + 1), ino);
}

} // namespace

bool is_journal_stream(int fd, const char* journal_stream)
{
    unsigned long long dev = 0, ino = 0;
    if (!journal_stream || !parse_dev_ino(journal_stream, dev, ino))
        return false;
    struct stat st;
    if (::fstat(fd, &st) != 0)
        return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

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

std::shared_ptr<spdlog::logger> make_logger(std::shared_ptr<spdlog::sinks::sink> sink, spdlog::level::level_enum level,
                                            LogFormat format)
{
    auto logger = std::make_shared<spdlog::logger>("superd", std::move(sink));
    // %^ and %$ mark the level for colour, which LogSink (like spdlog's
    // stderr_sink_st before it) ignores: the log is plain text everywhere.
    // Each line is written as it comes: nothing waits for a flush.
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    if (format == LogFormat::kJournal)
        formatter->add_flag<PriorityFlag>('*').set_pattern("%*%^%l%$ %v");
    else
        formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    logger->set_formatter(std::move(formatter));
    logger->set_level(level);
    return logger;
}

void init_logging(spdlog::level::level_enum level)
{
    // The sink's destructor (when spdlog's registry goes at exit) writes
    // what is still queued, for at most LogSink::kExitWait.
    // systemd sets $JOURNAL_STREAM for a service whose stderr is the journal;
    // stderr redirected elsewhere (superd run from a shell in such a
    // service) no longer matches it.
    LogFormat format =
        is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM")) ? LogFormat::kJournal : LogFormat::kPlain;
    auto logger = make_logger(std::make_shared<LogSink>(open_log_fd(STDERR_FILENO)), level, format);
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

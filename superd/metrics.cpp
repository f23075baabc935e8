#include "superd/metrics.h"

#include "superd/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <sstream>
#include <vector>

namespace superd {

namespace {

const char* type_name(MetricsPage::Type type)
{
    switch (type) {
    case MetricsPage::Type::kCounter:
        return "counter";
    case MetricsPage::Type::kGauge:
        return "gauge";
    case MetricsPage::Type::kHistogram:
        return "histogram";
    }
    return "untyped";
}

// The whole of a small file under /proc.
std::optional<std::string> read_proc(const char* path)
{
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    std::string text;
    std::array<char, 4096> chunk;
    for (;;) {
        ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return std::nullopt;
        if (n == 0)
            return text;
        text.append(chunk.data(), static_cast<size_t>(n));
    }
}

// The boot time, "btime SECONDS" in /proc/stat.
std::optional<uint64_t> boot_time()
{
    auto stat = read_proc("/proc/stat");
    if (!stat)
        return std::nullopt;
    size_t at = stat->find("\nbtime ");
    if (at == std::string::npos)
        return std::nullopt;
    const char* first = stat->data() + at + 7;
    uint64_t seconds = 0;
    if (std::from_chars(first, stat->data() + stat->size(), seconds).ec != std::errc())
        return std::nullopt;
    return seconds;
}

// Descriptors open in this process, not counting the one that lists them.
std::optional<uint64_t> count_open_fds()
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir)
        return std::nullopt;
    uint64_t count = 0;
    std::string own = std::to_string(::dirfd(dir));
    while (dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.' && entry->d_name != own)
            ++count;
    ::closedir(dir);
    return count;
}

// Backslash and newline escaped, and double quotes too when `quotes`.
std::string escape(std::string_view text, bool quotes)
{
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '"' && quotes)
            out += "\\\"";
        else
            out += c;
    }
    return out;
}

} // namespace

void MetricsPage::family(std::string_view name, Type type, std::string_view help)
{
    text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type_name(type));
}

void MetricsPage::sample(std::string_view name, std::initializer_list<MetricLabel> labels, uint64_t value)
{
    write_sample(name, labels, nullptr, metric_number(value));
}

void MetricsPage::sample(std::string_view name, std::initializer_list<MetricLabel> labels, double value)
{
    write_sample(name, labels, nullptr, metric_number(value));
}

void MetricsPage::histogram(std::string_view name, std::initializer_list<MetricLabel> labels,
                            const DurationHistogram& h)
{
    std::string bucket = std::string(name) + "_bucket";
    for (size_t i = 0; i < DurationHistogram::kBounds.size(); ++i) {
        std::string bound = metric_number(DurationHistogram::kBounds[i]);
        MetricLabel le{"le", bound};
        write_sample(bucket, labels, &le, metric_number(h.bucket(i)));
    }
    MetricLabel le{"le", "+Inf"};
    write_sample(bucket, labels, &le, metric_number(h.count()));
    write_sample(std::string(name) + "_sum", labels, nullptr, metric_number(h.sum()));
    write_sample(std::string(name) + "_count", labels, nullptr, metric_number(h.count()));
}

void MetricsPage::write_sample(std::string_view name, std::initializer_list<MetricLabel> labels,
                               const MetricLabel* extra, std::string_view value)
{
    text_ += name;
    if (labels.size() > 0 || extra) {
        char separator = '{';
        auto add = [&](const MetricLabel& label) {
            text_ += separator;
            text_ += label.name;
            text_ += "=\"";
            text_ += escape_label_value(label.value);
            text_ += '"';
            separator = ',';
        };
        for (const MetricLabel& label : labels)
            add(label);
        if (extra)
            add(*extra);
        text_ += '}';
    }
    text_ += ' ';
    text_ += value;
    text_ += '\n';
}

std::string metric_number(uint64_t value) { return fmt::format("{}", value); }

std::string metric_number(double value)
{
    if (std::isnan(value))
        return "NaN";
    if (std::isinf(value))
        return value > 0 ? "+Inf" : "-Inf";
    // fmt writes the shortest text that reads back as the same double.
    return fmt::format("{}", value);
}

std::string escape_label_value(std::string_view value) { return escape(value, true); }

std::string escape_help(std::string_view help) { return escape(help, false); }

std::optional<ProcessFacts> parse_proc_stat(std::string_view stat, long ticks_per_second, long page_size,
                                            uint64_t boot_time)
{
    // "PID (COMM) STATE PPID ...": the command may hold spaces and
    // parentheses, so the fields start after the last ')'.
    size_t close = stat.rfind(')');
    if (close == std::string_view::npos || ticks_per_second <= 0 || page_size <= 0)
        return std::nullopt;
    std::istringstream rest{std::string(stat.substr(close + 1))};
    std::vector<std::string> fields; // fields[0] is field 3 of proc(5), the state
    for (std::string field; rest >> field;)
        fields.push_back(field);
    auto number = [&](size_t field) -> std::optional<uint64_t> {
        if (field - 3 >= fields.size())
            return std::nullopt;
        const std::string& text = fields[field - 3];
        uint64_t value = 0;
        auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc() || end != text.data() + text.size())
            return std::nullopt;
        return value;
    };
    // proc(5): utime 14, stime 15, starttime 22 (clock ticks after boot),
    // vsize 23 (bytes), rss 24 (pages).
    auto utime = number(14), stime = number(15), start = number(22), vsize = number(23), rss = number(24);
    if (!utime || !stime || !start || !vsize || !rss)
        return std::nullopt;
    ProcessFacts facts;
    auto ticks = static_cast<double>(ticks_per_second);
    facts.cpu_seconds = static_cast<double>(*utime + *stime) / ticks;
    facts.start_time_seconds = static_cast<double>(boot_time) + static_cast<double>(*start) / ticks;
    facts.virtual_bytes = *vsize;
    facts.resident_bytes = *rss * static_cast<uint64_t>(page_size);
    return facts;
}

std::optional<ProcessFacts> read_process_facts()
{
    auto stat = read_proc("/proc/self/stat");
    auto booted = boot_time();
    auto open = count_open_fds();
    if (!stat || !booted || !open)
        return std::nullopt;
    auto facts = parse_proc_stat(*stat, ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), *booted);
    if (!facts)
        return std::nullopt;
    facts->open_fds = *open;
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return std::nullopt;
    facts->max_fds = limit.rlim_cur;
    return facts;
}

} // namespace superd

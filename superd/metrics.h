// Metrics: a page in Prometheus' text exposition format 0.0.4, and the facts
// about superd's own process that every Prometheus client library exports as
// process_*. The metrics builtin serves the page the daemon writes with this
// (daemon_metrics.cpp); this module knows nothing of superd's state.
//
// The format is line-based: a family's "# HELP" and "# TYPE" lines, then
// its samples, "name{label="value",...} number", every sample of a family
// together. A label value escapes backslash, double quote and newline, HELP
// text backslash and newline; anything else goes through as it is (UTF-8).
// Counters are written as exact integers, other numbers as the shortest text
// that reads back as the same double, infinities as +Inf and -Inf.
//
// MetricsPage writes what it is told in the order it is told: the caller
// names a family before its samples and keeps families apart. It checks
// nothing, so that it costs nothing; tests run the result through
// `promtool check metrics`.
#pragma once

#include "superd/counters.h"

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace superd {

struct MetricLabel {
    std::string_view name;
    std::string_view value;
};

class MetricsPage {
public:
    enum class Type { kCounter, kGauge, kHistogram };

    // Starts the family `name`: its HELP and TYPE lines.
    void family(std::string_view name, Type type, std::string_view help);
    // One sample of the family last started; for a histogram, use histogram().
    void sample(std::string_view name, std::initializer_list<MetricLabel> labels, uint64_t value);
    void sample(std::string_view name, std::initializer_list<MetricLabel> labels, double value);
    // One histogram of the family `name` last started, with `labels`:
    // name_bucket for each bound and +Inf, name_sum and name_count.
    void histogram(std::string_view name, std::initializer_list<MetricLabel> labels, const DurationHistogram& h);

    const std::string& text() const { return text_; }

private:
    void write_sample(std::string_view name, std::initializer_list<MetricLabel> labels, const MetricLabel* extra,
                      std::string_view value);

    std::string text_;
};

// The text of a number as the format wants it.
std::string metric_number(uint64_t value);
std::string metric_number(double value);
// A label value between its quotes, and HELP text, escaped.
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);

// What client libraries export as process_*, for the process reading it.
struct ProcessFacts {
    double cpu_seconds = 0;        // user and system time
    uint64_t resident_bytes = 0;   // resident set size
    uint64_t virtual_bytes = 0;    // virtual memory size
    uint64_t open_fds = 0;         // descriptors open now
    uint64_t max_fds = 0;          // the soft RLIMIT_NOFILE
    double start_time_seconds = 0; // since the Unix epoch
};

// The facts that /proc/self/stat (`stat`, its whole text) holds, given the
// clock ticks a second, the page size and the boot time (seconds since the
// epoch, /proc/stat's btime); nullopt when `stat` is not such a line.
std::optional<ProcessFacts> parse_proc_stat(std::string_view stat, long ticks_per_second, long page_size,
                                            uint64_t boot_time);
// The facts of this process, from /proc/self and getrlimit; nullopt when
// /proc cannot be read.
std::optional<ProcessFacts> read_process_facts();

} // namespace superd

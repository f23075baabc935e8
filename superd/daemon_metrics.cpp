// Daemon::metrics(): the page the metrics builtin serves. Every service
// superd has served since it started has its samples (states_ keeps them by
// name across reloads), so a counter never goes back while superd runs.
#include "superd/daemon.h"
#include "superd/metrics.h"

namespace superd {

namespace {

using Type = MetricsPage::Type;

double seconds_since_epoch(std::chrono::system_clock::time_point when)
{
    return std::chrono::duration<double>(when.time_since_epoch()).count();
}

// A counter of each service, one row per family: what Counters holds.
struct ServiceCounter {
    const char* name;
    const char* help;
    uint64_t Counters::*counter;
};
constexpr ServiceCounter kServiceCounters[] = {
    {"superd_connections_accepted_total", "Connections accepted, whether then served or refused.", &Counters::accepted},
    {"superd_children_spawned_total", "Programs spawned for connections.", &Counters::spawned},
    {"superd_spawn_failures_total", "Spawns that failed for a reason other than a shortage of descriptors.",
     &Counters::failed_spawn},
    {"superd_children_timed_out_total", "Children killed at their service's timeout.", &Counters::timed_out},
};

struct ExitOutcome {
    const char* name;
    uint64_t Counters::*counter;
};
constexpr ExitOutcome kExitOutcomes[] = {
    {"ok", &Counters::exited_ok},
    {"error", &Counters::exited_error},
    {"signal", &Counters::exited_signal},
};

} // namespace

std::string Daemon::metrics() const
{
    MetricsPage page;
    for (const ServiceCounter& row : kServiceCounters) {
        page.family(row.name, Type::kCounter, row.help);
        for (const auto& [name, state] : states_)
            page.sample(row.name, {{"service", name}}, state.counters.*row.counter);
    }

    // The counters of each service split by a second label: one row of
    // `rows` (kRefusalReasons, kExitOutcomes) a sample.
    auto by = [&](const char* family, const char* help, const char* label, const auto& rows) {
        page.family(family, Type::kCounter, help);
        for (const auto& [name, state] : states_)
            for (const auto& row : rows)
                page.sample(family, {{"service", name}, {label, row.name}}, state.counters.*row.counter);
    };
    by("superd_connections_refused_total",
       "Connections refused, by reason: acl (allow and deny), limit (max_instances or max_children), source "
       "(per_source), rate (rate limits), fds (out of file descriptors), backend (forward: the backend refused, "
       "could not be reached or did not answer in time), tls (the TLS handshake failed or timed out), proxy (a PROXY "
       "header from outside proxy_from, malformed "
       "or late).",
       "reason", kRefusalReasons);
    by("superd_children_exited_total",
       "Programs that exited, by outcome: ok (status 0), error (another status), signal (killed).", "outcome",
       kExitOutcomes);

    page.family("superd_service_running", Type::kGauge,
                "Connections being served now: children, with process groups that outlive them, or builtin "
                "connections.");
    for (const auto& [name, state] : states_)
        page.sample("superd_service_running", {{"service", name}}, uint64_t{state.admission.running()});

    page.family("superd_child_run_seconds", Type::kHistogram, "How long programs ran, from spawn to exit.");
    for (const auto& [name, state] : states_)
        page.histogram("superd_child_run_seconds", {{"service", name}}, state.counters.run_time);

    page.family("superd_reloads_total", Type::kCounter, "Reloads of the configuration, by result.");
    page.sample("superd_reloads_total", {{"result", "success"}}, reloads_ok_);
    page.sample("superd_reloads_total", {{"result", "failure"}}, reloads_failed_);
    page.family("superd_config_last_reload_successful", Type::kGauge,
                "Whether the last reload was applied (1, also before any) or refused (0).");
    page.sample("superd_config_last_reload_successful", {}, uint64_t{!last_reload_ || last_reload_->ok});
    page.family("superd_config_last_reload_success_timestamp_seconds", Type::kGauge,
                "When the running configuration was loaded, at start or by the last applied reload.");
    page.sample("superd_config_last_reload_success_timestamp_seconds", {}, seconds_since_epoch(applied_at_));

    page.family("superd_services", Type::kGauge, "Services configured.");
    page.sample("superd_services", {}, uint64_t{services_.size()});
    page.family("superd_listeners", Type::kGauge, "Listening sockets.");
    page.sample("superd_listeners", {}, uint64_t{listeners_.size()});
    page.family("superd_children", Type::kGauge,
                "Connections of spawned programs still running, for every service and max_children.");
    page.sample("superd_children", {}, uint64_t{live_children()});
    page.family("superd_build_info", Type::kGauge, "superd's version, in the label; the value is always 1.");
    page.sample("superd_build_info", {{"version", SUPERD_VERSION}}, uint64_t{1});

    // As Prometheus' client libraries name and explain them.
    if (auto process = read_process_facts()) {
        page.family("process_cpu_seconds_total", Type::kCounter, "Total user and system CPU time spent in seconds.");
        page.sample("process_cpu_seconds_total", {}, process->cpu_seconds);
        page.family("process_open_fds", Type::kGauge, "Number of open file descriptors.");
        page.sample("process_open_fds", {}, process->open_fds);
        page.family("process_max_fds", Type::kGauge, "Maximum number of open file descriptors.");
        page.sample("process_max_fds", {}, process->max_fds);
        page.family("process_virtual_memory_bytes", Type::kGauge, "Virtual memory size in bytes.");
        page.sample("process_virtual_memory_bytes", {}, process->virtual_bytes);
        page.family("process_resident_memory_bytes", Type::kGauge, "Resident memory size in bytes.");
        page.sample("process_resident_memory_bytes", {}, process->resident_bytes);
        page.family("process_start_time_seconds", Type::kGauge,
                    "Start time of the process since unix epoch in seconds.");
        page.sample("process_start_time_seconds", {}, process->start_time_seconds);
    }
    return page.text();
}

} // namespace superd

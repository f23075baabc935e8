// The commands of the control socket (control.h): what superctl asks a
// running superd, and the replies, as JSON. Each command is a row of
// kCommands; Daemon::control() parses the request line and dispatches.
// The commands read the daemon's state and change it only through what
// signals would do (reload), through listener holds (pause) or through
// its sessions (kill), so nothing here can put superd in a state it could
// not reach by itself.
#include "superd/daemon.h"

#include "superd/log.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace superd {

using nlohmann::json;

namespace {

double unix_seconds(std::chrono::system_clock::time_point t)
{
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

json failure(std::string message) { return {{"ok", false}, {"error", std::move(message)}}; }
json done(std::string message) { return {{"ok", true}, {"message", std::move(message)}}; }

std::vector<std::string_view> words(std::string_view line)
{
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
            ++i;
        size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t')
            ++i;
        if (i > start)
            out.push_back(line.substr(start, i - start));
    }
    return out;
}

const char* level_name(spdlog::level::level_enum level)
{
    switch (level) {
    case spdlog::level::trace:
        return "trace";
    case spdlog::level::debug:
        return "debug";
    case spdlog::level::info:
        return "info";
    case spdlog::level::warn:
        return "warn";
    case spdlog::level::err:
        return "error";
    default:
        return "off";
    }
}

struct SignalName {
    const char* name;
    int number;
};
// The signals one might send a service by hand.
constexpr SignalName kSignalNames[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
};

// "TERM", "SIGTERM", "term" or "15".
std::optional<int> parse_signal(std::string_view text)
{
    int number = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error == std::errc() && end == text.data() + text.size())
        return number >= 1 && number < NSIG ? std::optional<int>(number) : std::nullopt;
    std::string upper;
    for (char c : text)
        upper += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    std::string_view name = upper;
    if (name.starts_with("SIG"))
        name.remove_prefix(3);
    for (const SignalName& s : kSignalNames)
        if (name == s.name)
            return s.number;
    return std::nullopt;
}

std::string signal_name(int number)
{
    for (const SignalName& s : kSignalNames)
        if (s.number == number)
            return std::string("SIG") + s.name;
    return "signal " + std::to_string(number);
}

std::optional<pid_t> parse_pid(std::string_view text)
{
    pid_t pid = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (error != std::errc() || end != text.data() + text.size() || pid <= 0)
        return std::nullopt;
    return pid;
}

} // namespace

// The commands, as friends of the daemon: one function each, and the table.
struct ControlCommands {
    using Args = std::span<const std::string_view>;
    struct Row {
        std::string_view name;
        std::string_view usage; // after the name
        size_t min_args;
        size_t max_args;
        bool changes; // logged at info; the others at debug
        json (*run)(Daemon& d, Args args, const ControlPeer& peer);
    };

    static json status(Daemon& d, Args, const ControlPeer&)
    {
        auto now = std::chrono::system_clock::now();
        json last = nullptr;
        if (d.last_reload_)
            last = {{"time", unix_seconds(d.last_reload_->when)},
                    {"ok", d.last_reload_->ok},
                    {"message", d.last_reload_->message}};
        json upgrade = nullptr;
        if (d.last_upgrade_)
            upgrade = {{"time", unix_seconds(d.last_upgrade_->when)},
                       {"pid", d.last_upgrade_->pid},
                       {"state", d.last_upgrade_->state},
                       {"reason", d.last_upgrade_->reason}};
        return {
            {"ok", true},
            {"pid", ::getpid()},
            {"version", SUPERD_VERSION},
            {"started", unix_seconds(d.started_at_)},
            {"uptime_seconds", std::chrono::duration<double>(now - d.started_at_).count()},
            {"config_files", d.config_files_},
            {"services", d.services_.size()},
            {"listeners", d.listeners_.size()},
            {"running", d.live_children()},
            {"log_level", level_name(spdlog::get_level())},
            {"control", d.control_ ? d.control_->settings().path : std::string()},
            {"last_reload", last},
            {"last_upgrade", upgrade},
            {"handed_to", d.handed_to_ ? json(*d.handed_to_) : json(nullptr)},
        };
    }

    // What a service's listeners are doing, the most telling first.
    static const char* state_of(const Daemon::Service& service)
    {
        if (service.state->paused)
            return "paused";
        unsigned holds = 0;
        for (const Daemon::Slot* slot : service.slots)
            for (Hold h : {kHoldWaitChild, kHoldServiceFull, kHoldAllFull, kHoldRate, kHoldShortage, kHoldPaced})
                if (slot->listener->held(h))
                    holds |= h;
        if (holds & (kHoldShortage | kHoldPaced))
            return "resting";
        if (holds & (kHoldServiceFull | kHoldAllFull | kHoldRate))
            return "queued";
        if (holds & kHoldWaitChild)
            return "waiting";
        return "serving";
    }

    static json services(Daemon& d, Args, const ControlPeer&)
    {
        json rows = json::array();
        for (const auto& service : d.services_) {
            const ServiceConfig& config = service->config;
            const Counters& c = service->state->counters;
            json listen = json::array();
            for (const ListenAddress& la : config.listen)
                listen.push_back(la.address.to_string());
            json refused = json::object();
            for (const RefusalReason& reason : kRefusalReasons)
                refused[reason.name] = c.*reason.counter;
            rows.push_back({
                {"name", config.name},
                {"kind", config.builtin ? "builtin" : "program"},
                {"program", config.builtin ? std::string(config.builtin->name) : config.program},
                {"protocol", to_string(config.protocol)},
                {"mode", config.mode == Mode::kWait ? "wait" : "nowait"},
                {"listen", listen},
                {"state", state_of(*service)},
                {"running", service->state->admission.running()},
                {"accepted", c.accepted},
                {"spawned", c.spawned},
                {"failed_spawn", c.failed_spawn},
                {"refused", refused},
                {"exited", {{"ok", c.exited_ok}, {"error", c.exited_error}, {"signal", c.exited_signal}}},
                {"timed_out", c.timed_out},
            });
        }
        return {{"ok", true}, {"services", rows}};
    }

    static json children(Daemon& d, Args args, const ControlPeer&)
    {
        std::string_view only = args.empty() ? std::string_view() : args[0];
        if (!only.empty()) {
            auto it = d.states_.find(std::string(only));
            if (it == d.states_.end() || !it->second.current)
                return failure("no service '" + std::string(only) + "'");
        }
        auto now = d.timers_.now();
        struct Row {
            pid_t pid;
            const Child* child;
            const char* state;
        };
        std::vector<Row> rows;
        d.children_.each([&](pid_t pid, const Child& child) { rows.push_back({pid, &child, "running"}); });
        for (const auto& [group, lingering] : d.lingering_)
            rows.push_back({group, &lingering.child, "lingering"});
        for (const auto& [relay, relaying] : d.relaying_)
            rows.push_back({relaying.pid, &relaying.child, "relaying"});
        std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
            return a.child->started != b.child->started ? a.child->started < b.child->started : a.pid < b.pid;
        });
        json out = json::array();
        for (const Row& row : rows) {
            if (!only.empty() && row.child->service != only)
                continue;
            json left = nullptr;
            if (auto it = d.deadlines_.find(row.pid); it != d.deadlines_.end())
                left = std::max(0.0, seconds(it->second->due() - now));
            out.push_back({
                {"pid", row.pid},
                {"service", row.child->service},
                {"client", row.child->endpoint.to_string()},
                {"age_seconds", seconds(now - row.child->started)},
                {"timeout_left_seconds", left},
                {"state", row.state},
            });
        }
        return {{"ok", true}, {"children", out}};
    }

    // Replies once the new process is started, not when it is ready: the
    // reply would come from a process that may be gone by then. superctl
    // asks status, on new connections, until the new pid answers.
    static json upgrade(Daemon& d, Args, const ControlPeer& peer)
    {
        auto started = d.upgrade(fmt::format("by=control uid={} pid={}", peer.uid, peer.pid));
        if (!started)
            return failure(started.error());
        return {{"ok", true}, {"pid", *started}, {"message", fmt::format("upgrade started pid={}", *started)}};
    }

    static json reload(Daemon& d, Args, const ControlPeer& peer)
    {
        const auto& outcome = d.reload(fmt::format("by=control uid={} pid={}", peer.uid, peer.pid));
        return outcome.ok ? done(outcome.message) : failure(outcome.message);
    }

    // The running service called `name`, or null.
    static Daemon::ServiceState* configured(Daemon& d, std::string_view name)
    {
        auto it = d.states_.find(std::string(name));
        return it != d.states_.end() && it->second.current ? &it->second : nullptr;
    }

    static json pause(Daemon& d, Args args, const ControlPeer&) { return set_paused(d, args[0], true); }
    static json resume(Daemon& d, Args args, const ControlPeer&) { return set_paused(d, args[0], false); }

    static json set_paused(Daemon& d, std::string_view name, bool paused)
    {
        Daemon::ServiceState* state = configured(d, name);
        if (!state)
            return failure("no service '" + std::string(name) + "'");
        const char* verb = paused ? "paused" : "resumed";
        if (state->paused == paused)
            return done(fmt::format("service={} was {} already", name, paused ? "paused" : "not paused"));
        state->paused = paused;
        for (Daemon::Slot* slot : state->current->slots) {
            if (paused)
                slot->listener->hold(kHoldPaused);
            else
                slot->listener->release(kHoldPaused);
        }
        std::string line = fmt::format("{} service={} listeners={}", verb, name, state->current->slots.size());
        spdlog::info("{}", line);
        return done(line);
    }

    static json kill(Daemon& d, Args args, const ControlPeer&)
    {
        auto pid = parse_pid(args[0]);
        if (!pid)
            return failure("'" + std::string(args[0]) + "' is not a process id");
        int signal = SIGTERM;
        if (args.size() > 1) {
            auto parsed = parse_signal(args[1]);
            if (!parsed)
                return failure("unknown signal '" + std::string(args[1]) + "'");
            signal = *parsed;
        }
        const Child* child = d.children_.find(*pid);
        if (!child)
            if (auto it = d.lingering_.find(*pid); it != d.lingering_.end())
                child = &it->second.child;
        if (!child)
            for (const auto& [relay, relaying] : d.relaying_)
                if (relaying.pid == *pid)
                    child = &relaying.child;
        if (!child)
            return failure(fmt::format("pid {} is not a child of superd ('superctl children' lists them)", *pid));
        // Its whole session, as a timeout does: the connection ends with it.
        d.sessions_.signal(*pid, signal);
        std::string line = fmt::format("sent {} to pid={} service={}", signal_name(signal), *pid, child->service);
        spdlog::info("{}", line);
        return done(line);
    }

    static json log_level(Daemon&, Args args, const ControlPeer&)
    {
        auto level = parse_log_level(args[0]);
        if (!level)
            return failure("unknown log level '" + std::string(args[0]) + "' (trace, debug, info, warn or error)");
        const char* was = level_name(spdlog::get_level());
        spdlog::set_level(*level);
        std::string line = fmt::format("log level {} (was {})", level_name(*level), was);
        spdlog::log(spdlog::level::info, "{}", line);
        return done(line);
    }

    static constexpr Row kCommands[] = {
        {"status", "", 0, 0, false, status},
        {"services", "", 0, 0, false, services},
        {"children", "[SERVICE]", 0, 1, false, children},
        {"reload", "", 0, 0, true, reload},
        {"upgrade", "", 0, 0, true, upgrade},
        {"pause", "SERVICE", 1, 1, true, pause},
        {"resume", "SERVICE", 1, 1, true, resume},
        {"kill", "PID [SIGNAL]", 1, 2, true, kill},
        {"log-level", "LEVEL", 1, 1, true, log_level},
    };
};

std::string Daemon::control(std::string_view request, const ControlPeer& peer)
{
    auto args = words(request);
    if (args.empty())
        return failure("empty request").dump();
    for (const ControlCommands::Row& row : ControlCommands::kCommands) {
        if (args[0] != row.name)
            continue;
        spdlog::log(row.changes ? spdlog::level::info : spdlog::level::debug, "control command=\"{}\" uid={} pid={}",
                    Escaped{request}, peer.uid, peer.pid);
        size_t given = args.size() - 1;
        if (given < row.min_args || given > row.max_args)
            return failure(fmt::format("usage: {}{}{}", row.name, row.usage.empty() ? "" : " ", row.usage)).dump();
        // A reply is whatever the command says, never an exception out of
        // a libevent callback (json throws on invalid UTF-8, for one).
        try {
            return row.run(*this, std::span(args).subspan(1), peer)
                .dump(-1, ' ', false, json::error_handler_t::replace);
        } catch (const std::exception& e) {
            return failure(std::string("internal error: ") + e.what()).dump();
        }
    }
    std::string names;
    for (const ControlCommands::Row& row : ControlCommands::kCommands)
        names += (names.empty() ? "" : ", ") + std::string(row.name);
    return failure("unknown command '" + std::string(args[0]) + "' (" + names + ")")
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace superd

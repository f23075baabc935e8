#include "superctl/format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>

namespace superctl {

namespace {

using nlohmann::json;

std::string integer(const json& value) { return std::to_string(value.get<long long>()); }

std::string joined(const json& list, std::string_view separator)
{
    std::string text;
    for (const json& item : list) {
        if (!text.empty())
            text += separator;
        text += item.get<std::string>();
    }
    return text;
}

// A unix time as the local date and time: "2026-11-29 15:20:00 UTC".
std::string local_time(double unix_seconds)
{
    std::time_t t = static_cast<std::time_t>(std::floor(unix_seconds));
    std::tm tm = {};
    if (!::localtime_r(&t, &tm))
        return std::to_string(t);
    char text[64];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", &tm);
    return text;
}

// "3 (acl 1, rate 2)": the total, and the reasons that refused anyone.
std::string refused(const json& reasons)
{
    long long total = 0;
    std::string which;
    for (const auto& [reason, count] : reasons.items()) {
        long long n = count.get<long long>();
        total += n;
        if (n == 0)
            continue;
        which += which.empty() ? " (" : ", ";
        which += reason + " " + std::to_string(n);
    }
    return std::to_string(total) + (which.empty() ? "" : which + ")");
}

std::string status(const json& reply)
{
    std::string last_reload = "none since start";
    if (const json& reload = reply.at("last_reload"); !reload.is_null()) {
        last_reload = local_time(reload.at("time").get<double>()) + ": ";
        if (!reload.at("ok").get<bool>())
            last_reload += "failed: ";
        last_reload += reload.at("message").get<std::string>();
    }
    std::string last_upgrade = "none since start";
    if (const json& upgrade = reply.value("last_upgrade", json()); upgrade.is_object()) {
        last_upgrade = local_time(upgrade.at("time").get<double>()) + ": pid " + integer(upgrade.at("pid")) + " "
                       + upgrade.at("state").get<std::string>();
        if (upgrade.at("state") == "failed")
            last_upgrade += ": " + upgrade.at("reason").get<std::string>();
    }
    std::vector<std::pair<std::string, std::string>> lines = {
        {"pid", integer(reply.at("pid"))},
        {"version", reply.at("version").get<std::string>()},
        {"started", local_time(reply.at("started").get<double>()) + " (up "
                        + format_duration(reply.at("uptime_seconds").get<double>()) + ")"},
        {"config files", joined(reply.at("config_files"), ", ")},
        {"services", integer(reply.at("services"))},
        {"listeners", integer(reply.at("listeners"))},
        {"running", integer(reply.at("running"))},
        {"log level", reply.at("log_level").get<std::string>()},
        {"control", reply.at("control").get<std::string>()},
        {"last reload", last_reload},
        {"last upgrade", last_upgrade},
    };
    size_t width = 0;
    for (const auto& [key, value] : lines)
        width = std::max(width, key.size());
    std::string text;
    for (const auto& [key, value] : lines)
        text += key + ":" + std::string(width - key.size() + 1, ' ') + value + "\n";
    return text;
}

std::string services(const json& reply)
{
    std::vector<std::vector<std::string>> rows;
    for (const json& service : reply.at("services"))
        rows.push_back({service.at("name").get<std::string>(), service.at("kind").get<std::string>(),
                        joined(service.at("listen"), ","), service.at("state").get<std::string>(),
                        integer(service.at("running")), integer(service.at("accepted")),
                        refused(service.at("refused"))});
    return format_table({"NAME", "KIND", "LISTEN", "STATE", "RUNNING", "ACCEPTED", "REFUSED"},
                        {false, false, false, false, true, true, false}, rows);
}

std::string children(const json& reply)
{
    std::vector<std::vector<std::string>> rows;
    for (const json& child : reply.at("children")) {
        const json& left = child.at("timeout_left_seconds");
        rows.push_back({integer(child.at("pid")), child.at("service").get<std::string>(),
                        child.at("client").get<std::string>(), format_duration(child.at("age_seconds").get<double>()),
                        left.is_null() ? "-" : format_duration(left.get<double>()),
                        child.at("state").get<std::string>()});
    }
    return format_table({"PID", "SERVICE", "CLIENT", "AGE", "TIMEOUT", "STATE"},
                        {true, false, false, true, true, false}, rows);
}

std::string message(const json& reply) { return reply.at("message").get<std::string>() + "\n"; }

} // namespace

std::string format_duration(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        seconds = 0;
    char text[64];
    if (seconds < 59.95) {
        std::snprintf(text, sizeof text, "%.1fs", seconds);
        return text;
    }
    // Whole seconds, cut as a clock does, from where tenths stop: 59.96
    // (60.0 to a tenth) is 1m00s.
    long long whole = static_cast<long long>(seconds + 0.05);
    if (whole < 3600)
        std::snprintf(text, sizeof text, "%lldm%02llds", whole / 60, whole % 60);
    else if (whole < 86400)
        std::snprintf(text, sizeof text, "%lldh%02lldm", whole / 3600, whole % 3600 / 60);
    else
        std::snprintf(text, sizeof text, "%lldd%02lldh", whole / 86400, whole % 86400 / 3600);
    return text;
}

std::string format_table(const std::vector<std::string>& header, const std::vector<bool>& right,
                         const std::vector<std::vector<std::string>>& rows)
{
    std::vector<size_t> width(header.size());
    for (size_t column = 0; column < header.size(); ++column) {
        width[column] = header[column].size();
        for (const auto& row : rows)
            width[column] = std::max(width[column], row[column].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string text;
        for (size_t column = 0; column < cells.size(); ++column) {
            std::string padding(width[column] - cells[column].size(), ' ');
            if (column > 0)
                text += "  ";
            text += right[column] ? padding + cells[column] : cells[column] + padding;
        }
        text.erase(text.find_last_not_of(' ') + 1);
        return text + "\n";
    };
    std::string text = line(header);
    for (const auto& row : rows)
        text += line(row);
    return text;
}

superd::Result<std::string> format_reply(Shape shape, const nlohmann::json& reply)
{
    // json's at() and get() throw on a missing field or another type: a
    // reply superd would not send, said as an error value from here on.
    try {
        switch (shape) {
        case Shape::Status:
            return status(reply);
        case Shape::Services:
            return services(reply);
        case Shape::Children:
            return children(reply);
        case Shape::Message:
            return message(reply);
        }
        return superd::Error{"unknown reply shape"};
    } catch (const json::exception& e) {
        return superd::Error{e.what()};
    }
}

Outcome present(const Invocation& invocation, std::string_view reply_line)
{
    Outcome outcome;
    json reply = json::parse(reply_line, nullptr, false);
    if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
        constexpr size_t kShown = 200;
        std::string shown(reply_line.substr(0, kShown));
        outcome.status = kExitUnreachable;
        outcome.err = "superctl: the reply from " + invocation.socket + " is not "
                      + (reply.is_discarded() ? "JSON" : "a JSON object with \"ok\"") + ": " + shown
                      + (reply_line.size() > kShown ? "...\n" : "\n");
        return outcome;
    }
    if (invocation.json)
        outcome.out = std::string(reply_line) + "\n";
    if (!reply["ok"].get<bool>()) {
        outcome.status = kExitFailed;
        const json& error = reply.contains("error") ? reply["error"] : json();
        outcome.err =
            "superctl: " + (error.is_string() ? error.get<std::string>() : "refused, without a reason") + "\n";
        return outcome;
    }
    if (invocation.json)
        return outcome;
    auto text = format_reply(invocation.command->shape, reply);
    if (!text) {
        outcome.status = kExitUnreachable;
        outcome.err = "superctl: unexpected reply from " + invocation.socket + ": " + text.error() + "\n";
        return outcome;
    }
    outcome.out = *text;
    return outcome;
}

} // namespace superctl

#include "superctl/follow.h"

#include "superctl/client.h"

#include <nlohmann/json.hpp>

#include <thread>

namespace superctl {

namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kPoll{100};

std::string failure(const std::string& message) { return json{{"ok", false}, {"error", message}}.dump(); }

} // namespace

std::string follow_upgrade(const std::string& socket, std::string_view reply_line, std::chrono::milliseconds timeout)
{
    json reply = json::parse(reply_line, nullptr, false);
    if (reply.is_discarded() || !reply.contains("ok") || !reply["ok"].is_boolean() || !reply["ok"].get<bool>()
        || !reply.contains("pid") || !reply["pid"].is_number_integer())
        return std::string(reply_line); // refused, or not a reply superd gives: shown as it is
    long long pid = reply["pid"].get<long long>();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last_error = "no reply yet";
    while (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(kPoll);
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        auto status_line = exchange(socket, "status", std::max(left, std::chrono::milliseconds(1)));
        if (!status_line) {
            last_error = status_line.error();
            continue;
        }
        json status = json::parse(*status_line, nullptr, false);
        if (status.is_discarded() || !status.is_object())
            continue;
        if (status.value("pid", 0LL) == pid)
            return json{{"ok", true}, {"message", "upgraded: pid " + std::to_string(pid) + " serves"}}.dump();
        const json& last = status.contains("last_upgrade") ? status["last_upgrade"] : json();
        if (last.is_object() && last.value("pid", 0LL) == pid && last.value("state", "") == "failed")
            return failure("upgrade failed: " + last.value("reason", std::string("no reason given")));
    }
    return failure("no word from the new superd (pid " + std::to_string(pid) + ") in time: " + last_error);
}

} // namespace superctl

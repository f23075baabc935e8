// The increment protocol of shared/seeds/002: the server greets with '*',
// ignores bytes until '^', then answers each byte plus one until '$', and
// starts over. Messages may span reads and one read may hold several, so the
// state survives between chunks.
#pragma once

#include <string>
#include <string_view>

namespace service {

class IncrementMachine {
public:
    static constexpr char kGreeting = '*';

    // Appends to `reply` the answer to the next chunk of input.
    void feed(std::string_view input, std::string& reply);

private:
    enum class State { kWaitForMessage, kInMessage };
    State state_ = State::kWaitForMessage;
};

} // namespace service

#include "services/increment_machine.h"

namespace service {

void IncrementMachine::feed(std::string_view input, std::string& reply)
{
    for (char c : input) {
        switch (state_) {
        case State::kWaitForMessage:
            if (c == '^')
                state_ = State::kInMessage;
            break;
        case State::kInMessage:
            if (c == '$')
                state_ = State::kWaitForMessage;
            else
                reply.push_back(static_cast<char>(static_cast<unsigned char>(c) + 1));
            break;
        }
    }
}

} // namespace service

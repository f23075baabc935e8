#include "superd/connection.h"

#include <string>
#include <utility>

namespace superd {

void Pipeline::run(Connection connection, std::span<const std::shared_ptr<Stage>> stages, Next next, Failed failed)
{
    if (stages.empty()) {
        next(connection);
        return;
    }
    auto owned = std::make_unique<Flight>();
    Flight* flight = owned.get();
    flight->connection = std::move(connection);
    flight->stages.assign(stages.begin(), stages.end());
    flight->next = std::move(next);
    flight->failed = std::move(failed);
    flight->deadline = timers_.timer([this, flight] {
        flight->run.reset(); // cancels what the stage waits for
        const Stage& stage = *flight->stages[flight->at];
        stage_done(flight, std::string(stage.awaiting()) + " timed out after "
                               + std::to_string(stage.deadline().count()) + "ms");
    });
    flights_.emplace(flight, std::move(owned));
    advance(flight);
}

void Pipeline::advance(Flight* flight)
{
    while (flight->at < flight->stages.size()) {
        Stage& stage = *flight->stages[flight->at];
        flight->outcome.reset();
        flight->starting = true;
        flight->deadline->arm(stage.deadline());
        flight->run = stage.start(base_, flight->connection, [this, flight](std::optional<std::string> failure) {
            stage_done(flight, std::move(failure));
        });
        flight->starting = false;
        if (!flight->outcome)
            return; // the run calls back from the loop, or the deadline does
        flight->deadline->cancel();
        flight->run.reset();
        if (*flight->outcome) {
            stage_done(flight, std::move(*flight->outcome));
            return;
        }
        ++flight->at;
    }
    finish(flight);
}

// A run's `done`, or the deadline. The run may be the caller: it is not
// touched again once `done` has been called, so it may go here.
void Pipeline::stage_done(Flight* flight, std::optional<std::string> failure)
{
    if (flight->starting) {
        flight->outcome = std::move(failure);
        return;
    }
    flight->deadline->cancel();
    flight->run.reset();
    if (!failure) {
        ++flight->at;
        advance(flight);
        return;
    }
    auto node = flights_.extract(flight);
    const Stage& stage = *flight->stages[flight->at];
    flight->failed(flight->connection, stage, *failure);
    // `node` closes the connection and ends its ticket here.
}

void Pipeline::finish(Flight* flight)
{
    auto node = flights_.extract(flight);
    flight->run.reset();
    flight->deadline.reset();
    flight->next(flight->connection);
}

} // namespace superd

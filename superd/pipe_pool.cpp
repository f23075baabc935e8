#include "superd/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace superd {

std::optional<Pipe> PipePool::take()
{
    if (!pipes_.empty()) {
        Pipe pipe = std::move(pipes_.back());
        pipes_.pop_back();
        return pipe;
    }
    int ends[2];
    if (::pipe2(ends, O_NONBLOCK | O_CLOEXEC) != 0)
        return std::nullopt;
    return Pipe{UniqueFd(ends[0]), UniqueFd(ends[1])};
}

void PipePool::give(Pipe pipe)
{
    if (pipes_.size() < kMaxPooledPipes)
        pipes_.push_back(std::move(pipe));
}

} // namespace superd

// PipePool: empty pipes kept for the next relay, so that a forwarded
// connection costs no pipe2() and no close() of its four pipe ends. A
// short request and response through `forward` is about twenty system
// calls; the pipes were six of them.
//
// Only a pipe known to be empty and of the kernel's default size comes
// back (a relay that ended with bytes in a pipe, or grew it for a bulk
// transfer, closes it). At most kMaxPooledPipes wait, two descriptors each;
// Builtins owns the pool, and the pipes close with it.
#pragma once

#include "superd/fd.h"

#include <cstddef>
#include <optional>
#include <vector>

namespace superd {

struct Pipe {
    UniqueFd read, write;
};

class PipePool {
public:
    static constexpr size_t kMaxPooledPipes = 32;

    // A pooled pipe, or a new one (O_NONBLOCK, O_CLOEXEC); nothing and
    // errno set when none can be made.
    std::optional<Pipe> take();
    // Keeps `pipe`, which must be empty and of the default size, or closes
    // it when the pool is full.
    void give(Pipe pipe);
    size_t size() const { return pipes_.size(); }

private:
    std::vector<Pipe> pipes_;
};

} // namespace superd

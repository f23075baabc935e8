#include "superd/children.h"

#include <sys/wait.h>

#include <cerrno>
#include <cstring>

namespace superd {

std::string describe_wait_status(int status)
{
    if (WIFEXITED(status))
        return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        std::string s = "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
        if (WCOREDUMP(status))
            s += " core dumped";
        return s;
    }
    return "status " + std::to_string(status);
}

void ChildTable::reap(const std::function<void(const ChildExit&)>& on_exit)
{
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid == 0)
            return; // children remain, none has ended
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            return; // ECHILD: no children at all
        }
        ChildExit exit{pid, status, {}, false};
        if (auto it = children_.find(pid); it != children_.end()) {
            exit.child = std::move(it->second);
            exit.known = true;
            children_.erase(it);
        }
        on_exit(exit);
    }
}

} // namespace superd

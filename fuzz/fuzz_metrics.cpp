// Fuzzes what the metrics module reads from outside: a client's HTTP
// request head (the metrics builtin) and a /proc/PID/stat line, and checks
// the builtin's promises: it waits only while the head is short and
// incomplete, and every answer is a whole response that closes.
#include "superd/builtin_metrics.h"
#include "superd/metrics.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    superd::MetricsSource page = [] { return std::string("m 1\n"); };
    auto response = superd::http::metrics_response(text, page);
    if (!response && size >= superd::http::kMaxRequestHead)
        std::abort();
    if (response
        && (!response->starts_with("HTTP/1.1 ")
            || response->find("\r\nConnection: close\r\n\r\n") == std::string::npos))
        std::abort();
    (void)superd::parse_proc_stat(text, 100, 4096, 1700000000);
    return 0;
}

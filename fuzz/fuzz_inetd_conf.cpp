// Fuzzes the inetd.conf parser.
#include "superd/inetd_conf.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto services = superd::parse_inetd_conf(text, "fuzz.conf");
    if (!services.ok() && services.error().rfind("fuzz.conf:", 0) != 0)
        std::abort(); // every error names the file and line
    return 0;
}

// Fuzzes the TOML config parser: any input must give a config or an error
// naming the file and line, never a crash, a hang or undefined behaviour.
#include "superd/config.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto config = superd::parse_config(text, "/nonexistent/fuzz.toml");
    if (!config.ok() && config.error().rfind("/nonexistent/", 0) != 0)
        std::abort(); // every error names a file
    return 0;
}

// Every input in fuzz/regressions goes through the parser its file name
// starts with; none may crash, and each must be answered.
#include "superd/address.h"
#include "superd/config.h"
#include "superd/inetd_conf.h"
#include "superd/proxy_header.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

TEST_CASE("Inputs that once crashed a parser stay harmless", "[fuzz]")
{
    int checked = 0;
    for (const auto& entry : std::filesystem::directory_iterator(FUZZ_REGRESSIONS_DIR)) {
        std::string name = entry.path().filename().string();
        std::ifstream in(entry.path(), std::ios::binary);
        std::ostringstream text;
        text << in.rdbuf();
        INFO(name);
        if (name.rfind("config-", 0) == 0) {
            auto config = superd::parse_config(text.str(), "/nonexistent/fuzz.toml");
            CHECK_THAT(config.ok() ? std::string("ok") : config.error(),
                       Catch::StartsWith("/nonexistent/fuzz.toml:") || Catch::Equals("ok"));
            ++checked;
        } else if (name.rfind("inetd_conf-", 0) == 0) {
            (void)superd::parse_inetd_conf(text.str(), "fuzz.conf");
            ++checked;
        } else if (name.rfind("address-", 0) == 0) {
            (void)superd::parse_listen_address(text.str());
            ++checked;
        } else if (name.rfind("proxy_header-", 0) == 0) {
            std::string bytes = text.str();
            (void)superd::parse_proxy_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                             superd::ProxyAccept::kAny);
            ++checked;
        }
    }
    CHECK(checked >= 2);
}

// The install layout, the man pages, the systemd units and the Debian
// package, all from the build tree the other tests run: `cmake --install`
// into a temporary prefix (the config and the unit are generated for that
// prefix at install time), and `cpack -G DEB` into a temporary folder (its
// build step finds the tree up to date). Nothing outside the temporary
// folders is touched.
#include "tests/harness.h"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

using namespace harness;
namespace fs = std::filesystem;

namespace {

std::string read_file_text(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void write_text(const fs::path& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
}

// Runs `argv` and requires it to exit 0; returns its output.
std::string succeed(const std::vector<std::string>& argv, std::chrono::milliseconds limit = 60s)
{
    auto run = run_command(argv, limit);
    INFO(argv.front() << ": " << run.output);
    REQUIRE(run.status == 0);
    return run.output;
}

// Expected in an install (and the package) unless configured without them.
const std::vector<std::string> kManPages =
    SUPERD_MAN_PAGES ? std::vector<std::string>{"share/man/man8/superd.8.gz", "share/man/man5/superd.toml.5.gz",
                                                "share/man/man1/superctl.1.gz"}
                     : std::vector<std::string>{};

// The build tree installed into a temporary prefix.
struct Install {
    TempDir dir;
    fs::path prefix = dir.path() / "x";

    Install() { succeed({CMAKE_COMMAND, "--install", BUILD_DIR, "--prefix", prefix.string()}); }

    fs::path config() const { return prefix / "etc/superd/superd.toml"; }
    fs::path unit() const { return prefix / "lib/systemd/system/superd.service"; }
};

// Each service's port in a config as installed ("127.0.0.1:PORT"), by name.
std::map<std::string, std::string> listen_ports(const std::string& config)
{
    std::map<std::string, std::string> ports;
    std::regex table(R"(^\[service\.([a-z]+)\]$)"), listen(R"re(^listen += \["127\.0\.0\.1:(\d+)"\]$)re");
    std::istringstream lines(config);
    std::string service;
    std::smatch m;
    for (std::string line; std::getline(lines, line);) {
        if (std::regex_match(line, m, table))
            service = m[1];
        else if (std::regex_match(line, m, listen))
            ports[service] = m[1];
    }
    return ports;
}

// The lines of `text` that start with `key=`, without it.
std::vector<std::string> unit_values(const std::string& text, const std::string& key)
{
    return lines_with_prefix(text, key + "=");
}

// The README's example socket unit: the ```ini block after "superd.socket".
std::string readme_socket_unit()
{
    std::string readme = read_file_text(fs::path(SOURCE_DIR) / "README.md");
    size_t named = readme.find("`/etc/systemd/system/superd.socket`");
    REQUIRE(named != std::string::npos);
    size_t start = readme.find("```ini\n", named);
    REQUIRE(start != std::string::npos);
    start += 7;
    return readme.substr(start, readme.find("```", start) - start);
}

} // namespace

TEST_CASE("Installed into a prefix, superd serves the bundled services from there alone", "[install][integration]")
{
    Install install;
    const fs::path& x = install.prefix;
    for (const char* file : {"sbin/superd", "bin/superctl", "libexec/superd/echo", "libexec/superd/increment",
                             "libexec/superd/peer", "libexec/superd/daytime"}) {
        INFO(file);
        CHECK(::access((x / file).c_str(), X_OK) == 0);
    }
    CHECK(fs::is_directory(x / "etc/superd/superd.d"));
    CHECK(fs::is_empty(x / "etc/superd/superd.d"));
    CHECK(fs::is_regular_file(x / "share/doc/superd/copyright"));

    // Linked against nothing of the build tree: only system libraries.
    for (const char* binary : {"sbin/superd", "bin/superctl", "libexec/superd/echo"}) {
        std::string libraries = succeed({"/usr/bin/ldd", (x / binary).string()});
        INFO(binary << ": " << libraries);
        CHECK(libraries.find("not found") == std::string::npos);
        CHECK(libraries.find(BUILD_DIR) == std::string::npos);
    }

    // The config names the installed programs and includes its drop-in folder.
    std::string config = read_file_text(install.config());
    INFO(config);
    CHECK(config.find("include = [\"superd.d/*.toml\"]") != std::string::npos);
    for (const char* service : {"echo", "increment", "peer", "daytime"})
        CHECK(config.find("program = \"" + (x / "libexec/superd" / service).string() + "\"") != std::string::npos);

    // Its ports are fixed; the test moves them to free ones, so that runs at
    // the same time do not collide. Nothing else changes.
    auto ports = listen_ports(config);
    REQUIRE(ports.size() == 4);
    std::map<std::string, uint16_t> port;
    for (const auto& [service, fixed] : ports) {
        port[service] = free_port();
        config =
            std::regex_replace(config, std::regex("127\\.0\\.0\\.1:" + fixed + "\""), loopback(port[service]) + "\"");
    }
    write_text(install.config(), config);
    // A drop-in in the folder the config includes is served too.
    uint16_t dropped = free_port();
    write_text(x / "etc/superd/superd.d/more.toml",
               service_toml("more", {loopback(dropped)}, (x / "libexec/superd/echo").string()));

    StartOptions options;
    options.binary = (x / "sbin/superd").string();
    options.config_file = install.config().string();
    Superd superd("", options);
    CHECK(round_trip(port["echo"], "hello\n") == "hello\n");
    CHECK(round_trip(port["increment"], "^abc$de^abte$f") == "*bcdbcuf");
    CHECK(std::regex_match(round_trip(port["peer"], ""), std::regex(R"(127\.0\.0\.1 \d+\n)")));
    CHECK(std::regex_match(round_trip(port["daytime"], ""), std::regex(R"([A-Z][a-z]+day, .*\r\n)")));
    CHECK(round_trip(dropped, "dropped in\n") == "dropped in\n");

    // Installing again leaves an edited config alone.
    succeed({CMAKE_COMMAND, "--install", BUILD_DIR, "--prefix", x.string()});
    CHECK(read_file_text(install.config()) == config);
}

TEST_CASE("The installed unit runs the installed superd on its config, and systemd accepts it", "[install]")
{
    Install install;
    std::string unit = read_file_text(install.unit());
    INFO(unit);
    std::string superd = (install.prefix / "sbin/superd").string();
    CHECK(unit_values(unit, "ExecStart")
          == std::vector<std::string>{superd + " --config " + install.config().string()});
    CHECK(unit_values(unit, "Type") == std::vector<std::string>{"notify"});
    // A reload waits for superd's outcome on the control socket, in the
    // folder systemd makes for it.
    CHECK(unit_values(unit, "ExecReload")
          == std::vector<std::string>{(install.prefix / "bin/superctl").string() + " reload"});
    CHECK(unit_values(unit, "RuntimeDirectory") == std::vector<std::string>{"superd"});
    CHECK(unit_values(unit, "Restart") == std::vector<std::string>{"on-failure"});
    CHECK(unit_values(unit, "NoNewPrivileges").empty()); // set-user-ID services must work

    if (::access("/usr/bin/systemd-analyze", X_OK) != 0) {
        WARN("systemd-analyze is missing (Debian package systemd): the units are not verified");
        return;
    }
    // The README's socket unit beside it: verify reads both, and checks that
    // each ExecStart names an executable file.
    fs::path socket = install.unit().parent_path() / "superd.socket";
    write_text(socket, readme_socket_unit());
    // It also looks up the man pages the unit's Documentation= names, with
    // man(1): here in the prefix.
    std::vector<std::string> verify = {"/usr/bin/env", "MANPATH=" + (install.prefix / "share/man").string(),
                                       "/usr/bin/systemd-analyze", "verify"};
    if (::access("/usr/bin/man", X_OK) != 0 || !SUPERD_MAN_PAGES)
        verify.push_back("--man=no");
    verify.insert(verify.end(), {install.unit().string(), socket.string()});
    auto verified = run_command(verify, 60s);
    INFO(verified.output);
    CHECK(verified.status == 0);
    CHECK(verified.output.find("superd.s") == std::string::npos); // no warning about either unit
}

#if SUPERD_MAN_PAGES
TEST_CASE("The man pages are built and format without a warning", "[install][man]")
{
    for (const char* page : {"superd.8", "superd.toml.5", "superctl.1"}) {
        fs::path built = fs::path(BUILD_DIR) / "man" / page;
        INFO(built);
        REQUIRE(fs::is_regular_file(built));
        CHECK(read_file_text(built).find(".TH ") != std::string::npos);
        auto formatted = run_command({"/usr/bin/groff", "-ww", "-z", "-man", built.string()});
        INFO(formatted.output);
        CHECK(formatted.status == 0);
        CHECK(formatted.output.empty());
    }
    Install install;
    for (const std::string& page : kManPages)
        CHECK(fs::is_regular_file(install.prefix / page));
}
#endif

TEST_CASE("cpack makes a Debian package of the build: /usr, a conffile in /etc, computed dependencies",
          "[install][package]")
{
    TempDir out;
    succeed({CPACK_COMMAND, "-G", "DEB", "--config", std::string(BUILD_DIR) + "/CPackConfig.cmake", "-B",
             out.path().string()},
            120s);
    fs::path deb;
    for (const auto& entry : fs::directory_iterator(out.path()))
        if (entry.path().extension() == ".deb")
            deb = entry.path();
    REQUIRE(!deb.empty());
    CHECK(std::regex_match(deb.filename().string(), std::regex(R"(superd_\d+\.\d+\.\d+_[a-z0-9]+\.deb)")));

    std::string contents = succeed({"/usr/bin/dpkg-deb", "--contents", deb.string()});
    INFO(contents);
    std::vector<std::string> files = {"./usr/sbin/superd",
                                      "./usr/bin/superctl",
                                      "./usr/libexec/superd/echo",
                                      "./usr/libexec/superd/increment",
                                      "./usr/libexec/superd/peer",
                                      "./usr/libexec/superd/daytime",
                                      "./etc/superd/superd.toml",
                                      "./etc/superd/superd.d/",
                                      "./usr/lib/systemd/system/superd.service",
                                      "./usr/share/doc/superd/copyright"};
    for (const std::string& page : kManPages)
        files.push_back("./usr/" + page);
    for (const std::string& file : files)
        CHECK(contents.find(" " + file + "\n") != std::string::npos);
    CHECK(contents.find(BUILD_DIR) == std::string::npos);

    CHECK(succeed({"/usr/bin/dpkg-deb", "--info", deb.string(), "conffiles"}) == "/etc/superd/superd.toml\n");
    CHECK_THAT(succeed({"/usr/bin/dpkg-deb", "--field", deb.string(), "Depends"}), Catch::Contains("libc6"));

    // The files that name paths were generated for /usr and /etc, not for
    // the folder cpack staged the package in.
    fs::path root = out.path() / "root";
    succeed({"/usr/bin/dpkg-deb", "--extract", deb.string(), root.string()});
    CHECK(unit_values(read_file_text(root / "usr/lib/systemd/system/superd.service"), "ExecStart")
          == std::vector<std::string>{"/usr/sbin/superd --config /etc/superd/superd.toml"});
    CHECK(unit_values(read_file_text(root / "usr/lib/systemd/system/superd.service"), "ExecReload")
          == std::vector<std::string>{"/usr/bin/superctl reload"});
    CHECK(listen_ports(read_file_text(root / "etc/superd/superd.toml")).size() == 4);
    CHECK(read_file_text(root / "etc/superd/superd.toml").find("program = \"/usr/libexec/superd/echo\"")
          != std::string::npos);
}

// ConfigFixture: a folder of its own for tests that write a config file and
// read it back with load_config(): beside the file, an executable "prog", a
// non-executable "plain" and a sub-folder "sub" for the keys that name them.
#pragma once

#include "superd/config.h"

#include "tests/harness.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <string>

struct ConfigFixture {
    harness::TempDir dir;
    std::string path;

    ConfigFixture()
    {
        std::string prog = dir.write("prog", "#!/bin/sh\nexit 0\n");
        ::chmod(prog.c_str(), 0755);
        dir.write("plain", "not a program\n");
        dir.write("sub/.keep", "");
        path = (dir.path() / "superd.toml").string();
    }

    superd::Result<superd::Config> load(const std::string& text)
    {
        dir.write("superd.toml", text);
        return superd::load_config(path);
    }

    // The error for `text`, which must start with "PATH:LINE: ".
    std::string error_at(const std::string& text, int line)
    {
        auto config = load(text);
        REQUIRE_FALSE(config.ok());
        std::string prefix = path + ":" + std::to_string(line) + ": ";
        INFO(config.error());
        REQUIRE(config.error().rfind(prefix, 0) == 0);
        return config.error().substr(prefix.size());
    }
};

// The compiled half of toml++, built once for the whole program.
//
// Header-only (TOML_HEADER_ONLY=1), toml++ puts its whole parser and its
// formatters into every file that includes it (config_files.cpp,
// config_keys.cpp, and the tests that read a ServiceConfig's keys), each
// compiling them again. With SUPERD_STATIC_DEPS (the top CMakeLists.txt)
// every other file sees declarations only (TOML_HEADER_ONLY=0) and this
// file holds the definitions, linked into superd_core like any of our code,
// so --gc-sections still drops what superd never calls: the formatters
// superd never prints with cost no memory in the running daemon.
#if TOML_HEADER_ONLY
#error "toml_impl.cpp is for toml++'s compiled mode (SUPERD_STATIC_DEPS)"
#endif

#define TOML_IMPLEMENTATION
#include <toml++/toml.h>

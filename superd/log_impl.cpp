// The compiled halves of spdlog and fmt, built once for the whole program.
//
// With SUPERD_STATIC_DEPS (the top CMakeLists.txt) superd carries only the
// library code it calls: Debian ships spdlog and fmt as shared libraries
// alone, whose whole text would be mapped in. Their header-only modes keep
// the daemon small but make every file that logs compile all of spdlog and
// fmt again (about 9 s of CPU each at -O0). So every other file sees the
// libraries in their compiled modes (SPDLOG_COMPILED_LIB, no
// FMT_HEADER_ONLY): declarations only. This file holds the definitions
// those declarations need, from the libraries' own implementation headers,
// linked into superd_core like any of our code, so --gc-sections still
// drops what superd never calls.
//
// Non-template functions come with their headers. Templates that other
// files use but cannot see defined are instantiated explicitly below; a
// missing one is a link error naming it, never a silent change.
#if !defined(SPDLOG_COMPILED_LIB) || defined(FMT_HEADER_ONLY)
#error "log_impl.cpp is for the compiled modes of spdlog and fmt (SUPERD_STATIC_DEPS)"
#endif

#include <fmt/format-inl.h>

#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/spdlog-inl.h>

// The sinks: sink is the interface every sink implements; base_sink is
// what LogSink and the tests' ostream sink derive from; the registry makes
// a colour stdout sink its first default logger.
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>

#include <mutex>

template class spdlog::sinks::base_sink<spdlog::details::null_mutex>;
template class spdlog::sinks::base_sink<std::mutex>;

FMT_BEGIN_NAMESPACE
namespace detail {

// What every log line is formatted with (declared extern in superd/log.h).
template void vformat_to<char>(buffer<char>&, basic_string_view<char>, basic_format_args<buffer_context<char>>,
                               locale_ref);
// Declared in fmt/format.h, defined in format-inl.h.
template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl<wchar_t>(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl<char>(locale_ref) -> char;
template auto decimal_point_impl<wchar_t>(locale_ref) -> wchar_t;
// Shortest round-trip digits of a float or double.
template auto dragonbox::to_decimal<float>(float) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal<double>(double) noexcept -> dragonbox::decimal_fp<double>;

} // namespace detail
FMT_END_NAMESPACE

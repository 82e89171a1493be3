// fmt's implementation, compiled into mlsim from the installed headers instead of linked from libfmt.so:
// Debian ships fmt as a shared library only, and each shared library mlsim loads costs start-up time
// (bench/README.md, "Start-up"). The out-of-line functions come from format-inl.h; the templates that
// fmt's headers declare `extern` (so that no other translation unit instantiates them) are instantiated
// here for char.
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {
template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto decimal_point_impl(locale_ref) -> char;
template void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>, locale_ref);
}  // namespace detail
FMT_END_NAMESPACE

// The HTML half of StripHtml (text.h), apart from its Unicode half.
// Internal to the text plugin; thread-safe (a parser context per thread).

#ifndef PROCPOOL_PLUGINS_TEXT_HTML_TEXT_H_
#define PROCPOOL_PLUGINS_TEXT_HTML_TEXT_H_

#include <string>
#include <string_view>

namespace procpool::text::internal {

// True if `s` may hold a tag, a comment or an entity.
bool LooksLikeMarkup(std::string_view s);

// Rewrites the character references of `html` that libxml2 would read
// otherwise than the HTML parsing rules do; returns `html` itself when
// nothing changes, else a view of *storage (see html_text.cc).
std::string_view RewriteReferences(std::string_view html, std::string* storage);

// Called while the text is extracted, each time *out has grown to `at`
// bytes or more: fn(arg, out) may consume a prefix of *out (erasing it), so
// that a huge page's text need not be held whole. It must leave *out's last
// byte in place (ExtractVisibleText reads it to separate blocks), and may
// change `at`.
struct TextDrain {
  void (*fn)(void* arg, std::string* out);
  void* arg;
  size_t at;
};

// Appends the visible text of `html` (valid UTF-8 without NUL bytes) to
// *out, as docs/POOLRUN.md states the text rule. The parser reads `html` in
// place, a few KiB at a time, without a copy of it. With `drain`, see
// TextDrain.
void ExtractVisibleText(std::string_view html, std::string* out,
                        TextDrain* drain = nullptr);

}  // namespace procpool::text::internal

#endif  // PROCPOOL_PLUGINS_TEXT_HTML_TEXT_H_

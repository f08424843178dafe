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

// Appends the visible text of `html` (valid UTF-8 without NUL bytes) to
// *out, as docs/POOLRUN.md states the text rule.
void ExtractVisibleText(std::string_view html, std::string* out);

}  // namespace procpool::text::internal

#endif  // PROCPOOL_PLUGINS_TEXT_HTML_TEXT_H_

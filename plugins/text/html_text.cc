// The HTML half of StripHtml (text.h): character references rewritten as
// the HTML parsing rules read them, and the visible text of a page by one
// streaming (SAX) pass of libxml2's HTML parser.

#include "plugins/text/html_text.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>

namespace procpool::text::internal {
namespace {

// ---- HTML: the text rule (see StripHtml in text.h) ----

void InitLibxml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

enum class Kind : unsigned char { kInline, kBlock, kHidden };

// Elements whose content a browser does not render: the HTML standard's
// rendering section gives them `display: none`, or parses their content as
// text that is never shown (iframe, noscript with scripting on). <head> is
// not among them: what may stay in a head is hidden on its own (title,
// script, style...), and libxml2 leaves in <head> what the HTML parsing
// rules move to the body ("<script></script><td>cell" keeps "cell").
constexpr const char* kHiddenElements[] = {
    "script", "style", "noscript", "template", "title", "area", "base", "basefont",
    "datalist", "link", "meta", "noembed", "noframes", "param", "rp", "iframe"};

// Elements the standard's rendering section lays out as blocks, list items,
// table parts or line breaks: their content is separated from what is
// around it. Everything else (a, b, span, code, unknown and custom
// elements...) is inline and separates nothing.
constexpr const char* kBlockElements[] = {
    "address", "article", "aside", "blockquote", "body", "br", "caption", "center", "col",
    "colgroup", "dd", "details", "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "frame", "frameset", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "html", "legend", "li", "listing", "main", "menu", "nav", "ol",
    "optgroup", "option", "p", "plaintext", "pre", "search", "section", "summary", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "xmp"};

// The kind of an element by its name, which libxml2's HTML parser gives in
// lower case. A small open-addressing table: this runs for every tag.
class ElementKinds {
 public:
  ElementKinds() {
    for (const char* n : kHiddenElements) Add(n, Kind::kHidden);
    for (const char* n : kBlockElements) Add(n, Kind::kBlock);
  }
  Kind Of(const xmlChar* name) const {
    const char* n = reinterpret_cast<const char*>(name);
    const size_t len = std::strlen(n);
    if (len == 0 || len > kMaxName) return Kind::kInline;
    for (size_t i = Hash(n, len) & (kSize - 1);; i = (i + 1) & (kSize - 1)) {
      if (names_[i] == nullptr) return Kind::kInline;
      if (std::strcmp(names_[i], n) == 0) return kinds_[i];
    }
  }

 private:
  static constexpr size_t kSize = 256;  // a power of two, > 4x the names
  static constexpr size_t kMaxName = 10;
  static size_t Hash(const char* n, size_t len) {
    size_t h = len;
    for (size_t i = 0; i < len; ++i) h = h * 31 + static_cast<unsigned char>(n[i]);
    return h;
  }
  void Add(const char* n, Kind k) {
    size_t i = Hash(n, std::strlen(n)) & (kSize - 1);
    while (names_[i] != nullptr) i = (i + 1) & (kSize - 1);
    names_[i] = n;
    kinds_[i] = k;
  }
  const char* names_[kSize] = {};
  Kind kinds_[kSize] = {};
};

Kind KindOf(const xmlChar* name) {
  static const ElementKinds* kinds = new ElementKinds();
  return kinds->Of(name);
}

// `style` sets display:none (spaces and case do not matter).
bool DisplayNone(const xmlChar* style) {
  std::string compact;
  for (const xmlChar* p = style; *p != 0; ++p) {
    if (!std::isspace(*p)) compact.push_back(static_cast<char>(std::tolower(*p)));
  }
  return compact.find("display:none") != std::string::npos;
}

bool HiddenByAttributes(const xmlChar** atts) {
  if (atts == nullptr) return false;
  for (const xmlChar** a = atts; a[0] != nullptr; a += 2) {
    if (xmlStrcasecmp(a[0], reinterpret_cast<const xmlChar*>("hidden")) == 0) return true;
    if (a[1] != nullptr &&
        xmlStrcasecmp(a[0], reinterpret_cast<const xmlChar*>("style")) == 0 &&
        DisplayNone(a[1])) {
      return true;
    }
  }
  return false;
}

// The state of one extraction, reached from libxml2's SAX callbacks. The
// parser reports balanced start and end events (it closes what the markup
// leaves open), so counting the open elements inside a hidden one is enough:
// no stack, and no recursion however deep the markup nests.
struct Extraction {
  std::string* out;
  TextDrain* drain;  // may be null
  size_t hidden_depth = 0;
};

Extraction& StateOf(void* ctx) {
  return *static_cast<Extraction*>(static_cast<htmlParserCtxtPtr>(ctx)->_private);
}

void Separate(std::string* out) {
  if (!out->empty() && out->back() != ' ') out->push_back(' ');
}

void OnStartElement(void* ctx, const xmlChar* name, const xmlChar** atts) {
  Extraction& x = StateOf(ctx);
  if (x.hidden_depth > 0) {
    ++x.hidden_depth;
    return;
  }
  const Kind kind = KindOf(name);
  if (kind == Kind::kHidden || HiddenByAttributes(atts)) {
    x.hidden_depth = 1;
  } else if (kind == Kind::kBlock) {
    Separate(x.out);
  }
}

void OnEndElement(void* ctx, const xmlChar* name) {
  Extraction& x = StateOf(ctx);
  if (x.hidden_depth > 0) {
    --x.hidden_depth;
  } else if (KindOf(name) == Kind::kBlock) {
    Separate(x.out);
  }
}

void OnCharacters(void* ctx, const xmlChar* text, int len) {
  Extraction& x = StateOf(ctx);
  if (x.hidden_depth != 0) return;
  x.out->append(reinterpret_cast<const char*>(text), static_cast<size_t>(len));
  if (x.drain != nullptr && x.out->size() >= x.drain->at) x.drain->fn(x.drain->arg, x.out);
}

// libxml2 reads the input through this, a few KiB at a time, into a buffer
// it shrinks as it parses: handed the whole input in memory
// (htmlCtxtReadMemory), it would copy all of it first.
struct MemoryReader {
  const char* next;
  size_t left;
};

int ReadMemory(void* ctx, char* buffer, int len) {
  auto* r = static_cast<MemoryReader*>(ctx);
  const size_t n = std::min(r->left, static_cast<size_t>(len));
  std::memcpy(buffer, r->next, n);
  r->next += n;
  r->left -= n;
  return static_cast<int>(n);
}

int CloseMemory(void*) { return 0; }

struct ParserCtxtFree {
  void operator()(htmlParserCtxtPtr c) const { htmlFreeParserCtxt(c); }
};

}  // namespace

void ExtractVisibleText(std::string_view html, std::string* out, TextDrain* drain) {
  InitLibxml();
  // One parser context per thread, reset by each read: building one costs
  // more than parsing a short record.
  thread_local std::unique_ptr<htmlParserCtxt, ParserCtxtFree> ctxt(htmlNewParserCtxt());
  if (ctxt == nullptr) throw std::bad_alloc();
  // A streaming pass: the parser builds no tree, it reports tags and text.
  xmlSAXHandler sax{};
  sax.initialized = 1;
  sax.startElement = &OnStartElement;
  sax.endElement = &OnEndElement;
  sax.characters = &OnCharacters;
  sax.ignorableWhitespace = &OnCharacters;
  sax.cdataBlock = &OnCharacters;  // only <script>/<style> content, which is hidden
  *ctxt->sax = sax;
  Extraction state{out, drain};
  ctxt->_private = &state;
  // Implied <html>, <head> and <body> are on (no HTML_PARSE_NOIMPLIED): a
  // fragment that starts with <script> or <style> keeps what follows.
  // "UTF-8" is given so that a <meta charset> in the page cannot switch the
  // decoding of text that is UTF-8 already.
  const int options = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                      HTML_PARSE_NONET | XML_PARSE_HUGE;
  MemoryReader reader{html.data(), html.size()};
  xmlDocPtr doc = htmlCtxtReadIO(ctxt.get(), &ReadMemory, &CloseMemory, &reader, nullptr,
                                 "UTF-8", options);
  if (doc != nullptr) xmlFreeDoc(doc);  // none: no SAX callback builds one
}

namespace {

// ---- Character references, as the HTML parsing rules read them ----

struct NamedReference {
  const char* name;  // without the semicolon
  uint32_t first;    // its code points (second: 0 if one)
  uint32_t second;
  bool legacy;       // also a reference without the semicolon
};

// The HTML5 named character references, sorted by name.
constexpr NamedReference kNamedReferences[] = {
#include "plugins/text/html5_entities.inc"
};
constexpr size_t kLongestLegacyName = 6;

const NamedReference* FindReference(std::string_view name) {
  const NamedReference* begin = std::begin(kNamedReferences);
  const NamedReference* end = std::end(kNamedReferences);
  const NamedReference* it = std::lower_bound(
      begin, end, name, [](const NamedReference& r, std::string_view n) { return r.name < n; });
  return it != end && std::string_view(it->name) == name ? it : nullptr;
}

// What a numeric reference to `cp` stands for (the HTML standard's
// "numeric character reference end state").
uint32_t NumericReference(uint64_t cp) {
  static constexpr uint16_t kWindows1252[32] = {
      0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
  if (cp >= 0x80 && cp <= 0x9F) return kWindows1252[cp - 0x80];
  return static_cast<uint32_t>(cp);
}

void AppendDecimalReference(std::string* out, uint32_t cp) {
  out->append("&#");
  out->append(std::to_string(cp));
  out->push_back(';');
}

}  // namespace

// `html` with the character references libxml2 would not decode as the
// HTML parsing rules do rewritten as decimal references it does decode:
// names it does not know (HTML5 names, "&QUOT;"), legacy names without a
// semicolon ("&copy 2024", "&notit;" -> "&#172;it;"), and numbers that
// stand for another character (0x80-0x9F as Windows-1252; 0, surrogates and
// numbers past U+10FFFF as U+FFFD) or lack their semicolon. Returns `html`
// itself when nothing changes, else a view of *storage. References in
// attributes and in script or style content are rewritten too; neither is
// ever part of the text.
std::string_view RewriteReferences(std::string_view html, std::string* storage) {
  const char* const data = html.data();
  const size_t n = html.size();
  size_t copied = 0;  // html[copied, i) not yet copied to *storage
  bool changed = false;
  auto replace = [&](size_t from, size_t to, uint32_t a, uint32_t b) {
    if (!changed) {
      storage->clear();
      storage->reserve(n + 16);
      changed = true;
    }
    storage->append(data + copied, from - copied);
    AppendDecimalReference(storage, a);
    if (b != 0) AppendDecimalReference(storage, b);
    copied = to;
  };
  size_t i = 0;
  while (true) {
    const void* amp = std::memchr(data + i, '&', n - i);
    if (amp == nullptr) break;
    i = static_cast<size_t>(static_cast<const char*>(amp) - data);
    size_t j = i + 1;
    if (j < n && data[j] == '#') {
      ++j;
      const bool hex = j < n && (data[j] == 'x' || data[j] == 'X');
      if (hex) ++j;
      const size_t digits = j;
      uint64_t cp = 0;
      while (j < n && (hex ? std::isxdigit(static_cast<unsigned char>(data[j]))
                           : std::isdigit(static_cast<unsigned char>(data[j])))) {
        const int d = std::isdigit(static_cast<unsigned char>(data[j]))
                          ? data[j] - '0'
                          : (std::tolower(static_cast<unsigned char>(data[j])) - 'a' + 10);
        cp = std::min<uint64_t>(cp * (hex ? 16 : 10) + static_cast<uint64_t>(d), 0x110000);
        ++j;
      }
      if (j == digits) {
        // "&#" or "&#x" without digits is text; libxml2 would drop it.
        replace(i, i + 1, '&', 0);
        i = i + 1;
        continue;
      }
      const bool semicolon = j < n && data[j] == ';';
      const uint32_t value = NumericReference(cp);
      if (!semicolon || value != cp) replace(i, semicolon ? j + 1 : j, value, 0);
      i = semicolon ? j + 1 : j;
      continue;
    }
    while (j < n && std::isalnum(static_cast<unsigned char>(data[j])) && j - i <= 33) ++j;
    if (j == i + 1) {
      i = j;
      continue;
    }
    const std::string_view name(data + i + 1, j - i - 1);
    if (j < n && data[j] == ';') {
      if (const NamedReference* r = FindReference(name)) {
        const htmlEntityDesc* known =
            htmlEntityLookup(reinterpret_cast<const xmlChar*>(std::string(name).c_str()));
        if (known == nullptr || known->value != r->first || r->second != 0) {
          replace(i, j + 1, r->first, r->second);
        }
        i = j + 1;
        continue;
      }
    }
    // The longest legacy name the letters start with.
    bool found = false;
    for (size_t len = std::min(name.size(), kLongestLegacyName); len >= 2 && !found; --len) {
      const NamedReference* r = FindReference(name.substr(0, len));
      if (r != nullptr && r->legacy) {
        replace(i, i + 1 + len, r->first, r->second);
        i = i + 1 + len;
        found = true;
      }
    }
    if (!found) i = j;
  }
  if (!changed) return html;
  storage->append(data + copied, n - copied);
  return *storage;
}


// True if `s` may hold a tag, a comment or an entity.
bool LooksLikeMarkup(std::string_view s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    const char c = s[i];
    if (c != '<' && c != '&') continue;
    const unsigned char n = static_cast<unsigned char>(s[i + 1]);
    if (c == '<' && (std::isalpha(n) || n == '/' || n == '!' || n == '?')) return true;
    if (c == '&' && (std::isalpha(n) || n == '#')) {
      // An entity: "&name;" or "&#...;" ("AT&T" is not one).
      size_t j = i + 2;
      while (j < s.size() && j < i + 34 && std::isalnum(static_cast<unsigned char>(s[j]))) ++j;
      if (j < s.size() && s[j] == ';') return true;
    }
  }
  return false;
}

}  // namespace procpool::text::internal

#include "plugins/text/text.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <unicode/ubrk.h>
#include <unicode/utext.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "phonenumbers/phonenumbermatch.h"
#include "phonenumbers/phonenumbermatcher.h"
#include "phonenumbers/phonenumberutil.h"
#include "re2/re2.h"

namespace procpool::text {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

bool IsSpace(utf8proc_int32_t cp) {
  if (cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85) return true;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return true;
    default:
      return false;
  }
}

// ---- HTML ----

void InitLibxml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

bool SkippedElement(const xmlChar* name) {
  static constexpr std::array<const char*, 4> kSkipped = {"script", "style", "noscript",
                                                          "template"};
  for (const char* s : kSkipped) {
    if (xmlStrcasecmp(name, reinterpret_cast<const xmlChar*>(s)) == 0) return true;
  }
  return false;
}

bool InlineElement(const xmlChar* name) {
  static constexpr std::array<const char*, 24> kInline = {
      "a",    "abbr", "b",    "bdi",   "bdo",    "cite", "code", "data",
      "dfn",  "em",   "font", "i",     "kbd",    "mark", "q",    "s",
      "samp", "small", "span", "strong", "sub",  "sup",  "u",    "wbr"};
  for (const char* s : kInline) {
    if (xmlStrcasecmp(name, reinterpret_cast<const xmlChar*>(s)) == 0) return true;
  }
  return false;
}

// Appends the text under `container` (a document or an element). Walks the
// tree without recursion: deeply nested markup must not overflow the
// worker's stack.
void CollectText(xmlNodePtr container, std::string* out) {
  xmlNodePtr node = container->children;
  while (node != nullptr) {
    bool descend = false;
    if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
      if (node->content != nullptr) out->append(reinterpret_cast<const char*>(node->content));
    } else if (node->type == XML_ELEMENT_NODE && !SkippedElement(node->name)) {
      if (!InlineElement(node->name)) out->push_back(' ');
      descend = node->children != nullptr;
    }
    if (descend) {
      node = node->children;
      continue;
    }
    // Next sibling, or climb until an ancestor has one; leaving a block
    // element separates its text from what follows.
    while (node != container && node->next == nullptr) {
      node = node->parent;
      if (node != container && node->type == XML_ELEMENT_NODE && !InlineElement(node->name)) {
        out->push_back(' ');
      }
    }
    if (node == container) break;
    node = node->next;
  }
}

bool LooksLikeMarkup(std::string_view s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    const char c = s[i];
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

// ---- Unicode ----

std::string MapUtf8(const std::string& fixed, int options) {
  utf8proc_uint8_t* mapped = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(fixed.data()),
                                    static_cast<utf8proc_ssize_t>(fixed.size()), &mapped,
                                    static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    // Cannot happen on fixed input; out of memory is the only other error.
    throw std::runtime_error(std::string("utf8proc: ") + utf8proc_errmsg(n));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(mapped, &std::free);
  return std::string(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
}

std::string CollapseSpaces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {  // not reached on valid input
      cp = 0xFFFD;
      n = 1;
    }
    if (IsSpace(cp)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    p += n;
    left -= n;
  }
  return out;
}

std::string NormalizeImpl(const std::string& s, bool fold) {
  if (s.empty()) return s;
  std::string text = FixUtf8(s);
  if (LooksLikeMarkup(text)) text = StripHtml(text);
  int options = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_IGNORE |
                UTF8PROC_STRIPCC | UTF8PROC_LUMP;
  if (fold) options |= UTF8PROC_CASEFOLD;
  return CollapseSpaces(MapUtf8(text, options));
}

// ---- Words (ICU) ----

struct BreakIteratorCloser {
  void operator()(UBreakIterator* b) const { ubrk_close(b); }
};
struct UTextCloser {
  void operator()(UText* t) const { utext_close(t); }
};

// Calls fn(word) for each word or number of UTF-8 `s`, by UAX #29.
template <class Fn>
void ForEachWord(std::string_view s, Fn fn) {
  if (s.empty()) return;
  // One iterator per thread: opening one loads rules and dictionaries.
  thread_local std::unique_ptr<UBreakIterator, BreakIteratorCloser> words = [] {
    UErrorCode status = U_ZERO_ERROR;
    UBreakIterator* b = ubrk_open(UBRK_WORD, "", nullptr, 0, &status);
    if (U_FAILURE(status)) {
      throw std::runtime_error(std::string("ICU ubrk_open: ") + u_errorName(status));
    }
    return std::unique_ptr<UBreakIterator, BreakIteratorCloser>(b);
  }();
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<UText, UTextCloser> ut(
      utext_openUTF8(nullptr, s.data(), static_cast<int64_t>(s.size()), &status));
  if (U_FAILURE(status)) {
    throw std::runtime_error(std::string("ICU utext_openUTF8: ") + u_errorName(status));
  }
  ubrk_setUText(words.get(), ut.get(), &status);
  if (U_FAILURE(status)) {
    throw std::runtime_error(std::string("ICU ubrk_setUText: ") + u_errorName(status));
  }
  int32_t start = ubrk_first(words.get());
  for (int32_t end = ubrk_next(words.get()); end != UBRK_DONE;
       start = end, end = ubrk_next(words.get())) {
    if (ubrk_getRuleStatus(words.get()) >= UBRK_WORD_NONE_LIMIT) {
      // For UTF-8 UText, native indexes are byte offsets.
      fn(s.substr(static_cast<size_t>(start), static_cast<size_t>(end - start)));
    }
  }
  // The iterator must not keep pointing at text about to be freed.
  ubrk_setText(words.get(), nullptr, 0, &status);
}

// ---- Hashing ----

uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t Hash64(std::string_view s) { return Mix64(Fnv1a64(s)); }

// ---- Extraction ----

std::string AsciiLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void AddUnique(std::vector<std::string>* out, std::unordered_set<std::string>* seen,
               std::string value, bool case_insensitive) {
  std::string key = case_insensitive ? AsciiLower(value) : value;
  if (seen->insert(std::move(key)).second) out->push_back(std::move(value));
}

std::string ReplaceAll(std::string s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

const RE2& EmailPattern() {
  static const RE2 re(
      "([A-Za-z0-9](?:[A-Za-z0-9._%+\\-]{0,62}[A-Za-z0-9_%+\\-])?"
      "@(?:[A-Za-z0-9](?:[A-Za-z0-9\\-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24})");
  return re;
}

const RE2& UrlPattern() {
  static const RE2 re(
      "(?i)((?:https?|ftp)://[^\\s\\pZ\\pC<>\"'`{}|\\\\^]+|"
      "\\bwww\\.[^\\s\\pZ\\pC<>\"'`{}|\\\\^]+)");
  return re;
}

std::string TrimUrl(std::string url) {
  while (!url.empty()) {
    const char c = url.back();
    if (std::strchr(".,;:!?*", c) != nullptr) {
      url.pop_back();
    } else if (c == ')' || c == ']') {
      const char open = c == ')' ? '(' : '[';
      if (std::count(url.begin(), url.end(), open) < std::count(url.begin(), url.end(), c)) {
        url.pop_back();
      } else {
        break;
      }
    } else {
      break;
    }
  }
  return url;
}

template <class Fn>
void ForEachMatch(const RE2& re, const std::string& text, Fn fn) {
  re2::StringPiece input(text);
  re2::StringPiece match;
  while (RE2::FindAndConsume(&input, re, &match)) fn(std::string(match.data(), match.size()));
}

std::vector<std::string> Phones(const std::string& s, const std::string& region) {
  using i18n::phonenumbers::PhoneNumberMatch;
  using i18n::phonenumbers::PhoneNumberMatcher;
  using i18n::phonenumbers::PhoneNumberUtil;
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::unordered_set<std::string> seen;
  // libphonenumber expects valid UTF-8.
  const std::string text = FixUtf8(s);
  PhoneNumberMatcher matcher(util, text, region, PhoneNumberMatcher::VALID,
                             /*max_tries=*/1 << 20);
  PhoneNumberMatch match;
  while (matcher.HasNext()) {
    if (!matcher.Next(&match)) break;
    std::string e164;
    util.Format(match.number(), PhoneNumberUtil::E164, &e164);
    AddUnique(&out, &seen, std::move(e164), false);
  }
  return out;
}

}  // namespace

std::string FixUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    // ASCII fast path.
    if (*p < 0x80) {
      out.push_back(static_cast<char>(*p));
      ++p;
      --left;
      continue;
    }
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {
      out.append(kReplacement);
      n = 1;
    } else {
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    p += n;
    left -= n;
  }
  return out;
}

std::string StripHtml(std::string_view s) {
  if (s.empty()) return std::string();
  const std::string fixed = FixUtf8(s);
  if (!LooksLikeMarkup(fixed)) return fixed;
  if (fixed.size() > static_cast<size_t>(INT32_MAX)) {
    throw std::length_error("StripHtml: record larger than 2 GiB");
  }
  InitLibxml();
  const int options = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                      HTML_PARSE_NONET | HTML_PARSE_NOIMPLIED | XML_PARSE_HUGE;
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
      htmlReadMemory(fixed.data(), static_cast<int>(fixed.size()), nullptr, "UTF-8", options),
      &xmlFreeDoc);
  if (doc == nullptr) return fixed;  // not even recoverable: keep the text
  std::string out;
  out.reserve(fixed.size());
  CollectText(reinterpret_cast<xmlNodePtr>(doc.get()), &out);
  return out;
}

std::string Normalize(const std::string& s) { return NormalizeImpl(s, false); }

std::string NormalizeFold(const std::string& s) { return NormalizeImpl(s, true); }

std::vector<std::string> ExtractEmails(const std::string& s) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  if (s.empty()) return out;
  ForEachMatch(EmailPattern(), FixUtf8(s), [&](std::string m) {
    AddUnique(&out, &seen, std::move(m), true);
  });
  return out;
}

std::vector<std::string> ExtractUrls(const std::string& s) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  if (s.empty()) return out;
  ForEachMatch(UrlPattern(), FixUtf8(s), [&](std::string m) {
    std::string url = TrimUrl(ReplaceAll(std::move(m), "&amp;", "&"));
    if (url.size() > 4) AddUnique(&out, &seen, std::move(url), false);
  });
  return out;
}

std::vector<std::string> ExtractPhones(const std::string& s) { return Phones(s, "US"); }

std::vector<std::string> ExtractPhonesIn(const std::string& s, const std::string& region) {
  const auto& util = *i18n::phonenumbers::PhoneNumberUtil::GetInstance();
  std::set<std::string> regions;
  util.GetSupportedRegions(&regions);
  if (regions.count(region) == 0) {
    throw std::invalid_argument("unknown region '" + region +
                                "' (expected an ISO 3166 code such as US, GB, DE)");
  }
  return Phones(s, region);
}

int TokenCount(const std::string& s) {
  if (s.empty()) return 0;
  const std::string text = StripHtml(s);
  int count = 0;
  ForEachWord(text, [&](std::string_view) { ++count; });
  return count;
}

std::string SimHash(const std::string& s) {
  const std::string text = NormalizeFold(s);
  std::vector<std::string_view> words;
  ForEachWord(text, [&](std::string_view w) { words.push_back(w); });
  uint64_t fingerprint = 0;
  if (!words.empty()) {
    constexpr size_t kShingle = 3;
    std::array<int64_t, 64> weights{};
    const size_t shingles = words.size() >= kShingle ? words.size() - kShingle + 1 : 1;
    std::string shingle;
    for (size_t i = 0; i < shingles; ++i) {
      shingle.clear();
      for (size_t j = i; j < std::min(words.size(), i + kShingle); ++j) {
        if (j > i) shingle.push_back(' ');
        shingle.append(words[j]);
      }
      const uint64_t h = Hash64(shingle);
      for (int bit = 0; bit < 64; ++bit) weights[bit] += ((h >> bit) & 1) ? 1 : -1;
    }
    for (int bit = 0; bit < 64; ++bit) {
      if (weights[bit] > 0) fingerprint |= uint64_t{1} << bit;
    }
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[15 - i] = kHex[(fingerprint >> (4 * i)) & 0xF];
  return out;
}

int SimHashDistance(const std::string& a, const std::string& b) {
  auto parse = [](const std::string& hex) {
    if (hex.size() != 16) {
      throw std::invalid_argument("not a simhash (16 hex digits): '" + hex.substr(0, 40) + "'");
    }
    uint64_t v = 0;
    for (char c : hex) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        throw std::invalid_argument("not a simhash (16 hex digits): '" + hex + "'");
      }
      v = (v << 4) | static_cast<uint64_t>(d);
    }
    return v;
  };
  return __builtin_popcountll(parse(a) ^ parse(b));
}

}  // namespace procpool::text

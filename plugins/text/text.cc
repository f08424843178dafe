#include "plugins/text/text.h"

#include "plugins/text/html_text.h"

#include <unicode/ubrk.h>
#include <unicode/utext.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
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

using internal::ExtractVisibleText;
using internal::LooksLikeMarkup;
using internal::RewriteReferences;

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// ---- UTF-8 ----

// The length of the valid prefix of `s` (all of it when valid).
size_t ValidUtf8Prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) != 0) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len =
        utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(n - i), &cp);
    if (len <= 0) return i;
    i += static_cast<size_t>(len);
  }
  return n;
}

// ---- Unicode ----

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

// Appends valid UTF-8 to an output whose runs of white space become one
// ASCII space, with no space at the start (the caller trims the end).
class SpaceCollapser {
 public:
  explicit SpaceCollapser(std::string* out) : out_(out) {}

  void Space() { pending_ = !out_->empty(); }
  void Char(const char* p, size_t n) {
    if (pending_) out_->push_back(' ');
    pending_ = false;
    out_->append(p, n);
  }
  // Valid UTF-8 of any kind.
  void Text(const char* p, size_t n) {
    const auto* q = reinterpret_cast<const utf8proc_uint8_t*>(p);
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(n);
    while (left > 0) {
      utf8proc_int32_t cp = 0;
      utf8proc_ssize_t len = utf8proc_iterate(q, left, &cp);
      if (len <= 0) {  // not reached on valid input
        Char(kReplacement, 3);
        len = 1;
      } else if (IsSpace(cp)) {
        Space();
      } else {
        Char(reinterpret_cast<const char*>(q), static_cast<size_t>(len));
      }
      q += len;
      left -= len;
    }
  }

 private:
  std::string* out_;
  bool pending_ = false;
};

// utf8proc's mapping of one piece of valid UTF-8, fed to `out`.
void MapPiece(std::string_view piece, int options, SpaceCollapser* out) {
  utf8proc_uint8_t* mapped = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(piece.data()),
                                    static_cast<utf8proc_ssize_t>(piece.size()), &mapped,
                                    static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    // Cannot happen on valid input; out of memory is the only other error.
    throw std::runtime_error(std::string("utf8proc: ") + utf8proc_errmsg(n));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(mapped, &std::free);
  out->Text(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
}

// An ASCII character that stays in the text (as itself or as a space).
// The other ASCII controls are removed, which can bring the characters on
// either side together, so they go to utf8proc with their neighbours.
bool KeptAscii(char ch) {
  const unsigned char c = static_cast<unsigned char>(ch);
  return c < 0x80 && c != 0x7F && (c >= 0x20 || (c >= '\t' && c <= '\r'));
}

int NormalizeOptions(bool fold) {
  int options = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_IGNORE |
                UTF8PROC_STRIPCC | UTF8PROC_LUMP;
  if (fold) options |= UTF8PROC_CASEFOLD;
  return options;
}

// Steps 3-5 of Normalize on valid UTF-8, fed to `sink` (the caller trims
// the end). Printable ASCII and ASCII white space are handled here byte by
// byte: NFKC and case folding are simple there. Each run of other text
// goes to utf8proc together with the ASCII character before it (a combining
// mark may compose with it, "e" + U+0301). Cutting there is exact: an ASCII
// character never composes with the one before it, and nothing reorders
// across it.
//
// Feeding s[0, c) and then s[c, n) gives the same as feeding `s` when s[c]
// and s[c + 1] are both kept ASCII characters (see SafeCut): the text is
// then cut where this function cuts it itself.
void NormalizeInto(std::string_view s, bool fold, SpaceCollapser* sink) {
  const int options = NormalizeOptions(fold);
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // The ASCII run [i, j).
    size_t j = i;
    while (j < n && KeptAscii(s[j])) ++j;
    // Its last character goes with the non-ASCII run that follows.
    const size_t ascii_end = j < n && j > i ? j - 1 : j;
    for (size_t k = i; k < ascii_end; ++k) {
      const unsigned char c = static_cast<unsigned char>(s[k]);
      if (c == ' ' || (c >= '\t' && c <= '\r')) {
        sink->Space();
      } else {
        const char ch = fold && c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : static_cast<char>(c);
        sink->Char(&ch, 1);
      }
    }
    if (j >= n) break;
    // The non-ASCII piece: from ascii_end up to an ASCII character followed
    // by another ASCII character (or the end).
    size_t e = j;
    while (e < n && !(KeptAscii(s[e]) && (e + 1 == n || KeptAscii(s[e + 1])))) ++e;
    MapPiece(s.substr(ascii_end, e - ascii_end), options, sink);
    i = e;
  }
}

// The last c < s.size() - 1 with s[c] and s[c + 1] both kept ASCII
// characters, where NormalizeInto may cut its input; 0 if none.
size_t SafeCut(std::string_view s) {
  for (size_t c = s.size() >= 2 ? s.size() - 2 : 0; c > 0; --c) {
    if (KeptAscii(s[c]) && KeptAscii(s[c + 1])) return c;
  }
  return 0;
}

void TrimEnd(std::string* out) {
  while (!out->empty() && out->back() == ' ') out->pop_back();
}

std::string NormalizeValid(std::string_view s, bool fold) {
  std::string out;
  out.reserve(s.size());
  SpaceCollapser sink(&out);
  NormalizeInto(s, fold, &sink);
  TrimEnd(&out);
  return out;
}

// Normalizes the visible text of a page while it is extracted (a
// TextDrain): each time the text reaches `at` bytes, its prefix up to a
// safe cut is normalized into the output and erased, so the text of a huge
// page is never held whole beside its normalized form.
struct StreamingNormalizer {
  static constexpr size_t kStep = size_t{1} << 16;

  SpaceCollapser* sink;
  bool fold;
  internal::TextDrain drain{&Drain, this, kStep};

  static void Drain(void* arg, std::string* text) {
    auto* self = static_cast<StreamingNormalizer*>(arg);
    const size_t cut = SafeCut(*text);
    if (cut == 0) {  // no place to cut yet (e.g. text without ASCII)
      self->drain.at = 2 * text->size();
      return;
    }
    NormalizeInto(std::string_view(*text).substr(0, cut), self->fold, self->sink);
    text->erase(0, cut);
    self->drain.at = text->size() + kStep;
  }
};

// `s` with invalid UTF-8 replaced (FixUtf8) and, if `drop_nul`, NUL bytes
// removed; `s` itself when there is nothing to change.
std::string_view Repaired(std::string_view s, bool drop_nul, std::string* storage) {
  const size_t valid = ValidUtf8Prefix(s);
  const bool has_nul = drop_nul && std::memchr(s.data(), '\0', s.size()) != nullptr;
  if (valid == s.size() && !has_nul) return s;
  *storage = valid == s.size() ? std::string(s) : FixUtf8(s);
  if (has_nul) storage->erase(std::remove(storage->begin(), storage->end(), '\0'), storage->end());
  return *storage;
}

std::string NormalizeImpl(std::string_view s, bool fold) {
  if (s.empty()) return std::string();
  std::string repaired;
  const std::string_view text = Repaired(s, /*drop_nul=*/true, &repaired);
  if (!LooksLikeMarkup(text)) return NormalizeValid(text, fold);
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    throw std::length_error("normalize: record larger than 2 GiB");
  }
  std::string rewritten;
  const std::string_view html = RewriteReferences(text, &rewritten);
  // The output is normalized as the text comes: neither the visible text
  // nor a copy of the input is ever held whole. (Reserved memory that is
  // not written to costs no resident pages.)
  std::string out;
  out.reserve(html.size());
  SpaceCollapser sink(&out);
  StreamingNormalizer normalizer{&sink, fold};
  std::string visible;
  ExtractVisibleText(html, &visible, &normalizer.drain);
  std::string().swap(rewritten);
  std::string().swap(repaired);
  NormalizeInto(visible, fold, &sink);
  TrimEnd(&out);
  return out;
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
  const size_t valid = ValidUtf8Prefix(s);
  std::string out;
  out.reserve(s.size());
  out.append(s.data(), valid);
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + valid;
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size() - valid);
  while (left > 0) {
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
  std::string repaired;
  const std::string_view text = Repaired(s, /*drop_nul=*/true, &repaired);
  if (!LooksLikeMarkup(text)) return std::string(text);
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    throw std::length_error("StripHtml: record larger than 2 GiB");
  }
  std::string rewritten;
  const std::string_view html = RewriteReferences(text, &rewritten);
  std::string out;
  out.reserve(html.size() / 2);
  ExtractVisibleText(html, &out);
  return out;
}

std::string Normalize(std::string_view s) { return NormalizeImpl(s, false); }

std::string NormalizeFold(std::string_view s) { return NormalizeImpl(s, true); }

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

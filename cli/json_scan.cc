#include "cli/json_scan.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace procpool::cli {
namespace {

// The length of the valid UTF-8 sequence (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF) at p[0, n), n >= 1; 0 if invalid.
size_t Utf8Sequence(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  auto cont = [&](size_t k) { return k < n && (p[k] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] > 0x9F) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] > 0x8F) return 0;
    return 4;
  }
  return 0;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The four hex digits at p[0, 4) (p has at least 4 bytes), or -1.
int32_t Hex4(const char* p) {
  int32_t v = 0;
  for (int k = 0; k < 4; ++k) {
    const int d = HexDigit(p[k]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

class Scanner {
 public:
  Scanner(std::string_view raw) : p_(raw.data()), end_(raw.data() + raw.size()) {}

  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool AtEnd() const { return p_ == end_; }
  bool Peek(char c) const { return p_ < end_ && *p_ == c; }
  void Skip() { ++p_; }

  // A string at p_ (which is at its opening quote); its body to *body.
  bool String(std::string_view* body) {
    if (!Peek('"')) return false;
    const char* start = ++p_;
    while (true) {
      // Plain ASCII, eight bytes at a time where none needs a look.
      while (end_ - p_ >= 8) {
        uint64_t w;
        std::memcpy(&w, p_, 8);
        const uint64_t high = w & 0x8080808080808080ull;
        const uint64_t ctrl = (w - 0x2020202020202020ull) & ~w & 0x8080808080808080ull;
        const uint64_t quote = w ^ 0x2222222222222222ull;
        const uint64_t slash = w ^ 0x5C5C5C5C5C5C5C5Cull;
        const uint64_t has_quote = (quote - 0x0101010101010101ull) & ~quote & 0x8080808080808080ull;
        const uint64_t has_slash = (slash - 0x0101010101010101ull) & ~slash & 0x8080808080808080ull;
        if ((high | ctrl | has_quote | has_slash) != 0) break;
        p_ += 8;
      }
      if (p_ >= end_) return false;
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        *body = std::string_view(start, static_cast<size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (!Escape()) return false;
        continue;
      }
      if (c < 0x80) {
        ++p_;
        continue;
      }
      const size_t len = Utf8Sequence(reinterpret_cast<const unsigned char*>(p_),
                                      static_cast<size_t>(end_ - p_));
      if (len == 0) return false;
      p_ += len;
    }
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)? without an exponent, at most 18 digits.
  bool Number() {
    const char* start = p_;
    if (Peek('-')) ++p_;
    size_t digits = 0;
    if (Peek('0')) {
      ++p_;
      digits = 1;
    } else {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_, ++digits;
      if (digits == 0) return false;
    }
    if (Peek('.')) {
      ++p_;
      size_t fraction = 0;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_, ++fraction;
      if (fraction == 0) return false;
      digits += fraction;
    }
    if (Peek('e') || Peek('E')) return false;
    return digits <= 18 && p_ > start;
  }

  bool Literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    return true;
  }

  char Current() const { return *p_; }

 private:
  // An escape at p_ (the backslash).
  bool Escape() {
    if (end_ - p_ < 2) return false;
    switch (p_[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        p_ += 2;
        return true;
      case 'u':
        break;
      default:
        return false;
    }
    if (end_ - p_ < 6) return false;
    const int32_t u = Hex4(p_ + 2);
    if (u < 0) return false;
    p_ += 6;
    if (u >= 0xDC00 && u <= 0xDFFF) return false;  // a lone low surrogate
    if (u < 0xD800 || u > 0xDBFF) return true;
    // A high surrogate: a low one must follow.
    if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;
    const int32_t low = Hex4(p_ + 2);
    if (low < 0xDC00 || low > 0xDFFF) return false;
    p_ += 6;
    return true;
  }

  const char* p_;
  const char* const end_;
};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

bool ScanJson(std::string_view raw, size_t max_depth, const std::vector<std::string>& names,
              const std::string& result_key, ScannedRecord* out) {
  *out = ScannedRecord();
  out->fields.resize(names.size());
  Scanner s(raw);
  std::vector<char> open;  // '{' or '[' for each array or object open
  int pending = -1;        // the asked-for field whose value comes next
  std::string key;
  // Notes a value that starts or is at depth open.size().
  auto note = [&](ScannedValue::Kind kind, std::string_view body) {
    if (open.empty()) {
      out->root = ScannedValue{kind, body};
    } else if (open.size() == 1 && pending >= 0) {
      out->fields[static_cast<size_t>(pending)] = ScannedValue{kind, body};
      pending = -1;
    }
  };
  // Reads a key and its colon (at depth open.size()).
  auto read_key = [&]() {
    s.SkipSpace();
    std::string_view body;
    if (!s.String(&body)) return false;
    if (open.size() == 1) {
      key.clear();
      AppendDecodedJsonString(body, &key);
      pending = -1;
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == key) pending = static_cast<int>(i);
      }
      if (key == result_key) out->has_result_key = true;
    }
    s.SkipSpace();
    if (!s.Peek(':')) return false;
    s.Skip();
    return true;
  };
  while (true) {
    // A value.
    s.SkipSpace();
    if (s.AtEnd()) return false;
    const char c = s.Current();
    if (c == '{' || c == '[') {
      note(ScannedValue::Kind::kOther, {});
      if (open.empty() && c == '{') out->root_object = true;
      if (open.size() + 1 > max_depth) return false;
      open.push_back(c);
      s.Skip();
      s.SkipSpace();
      if (s.Peek(c == '{' ? '}' : ']')) {
        s.Skip();
        open.pop_back();
      } else {
        if (c == '{' && !read_key()) return false;
        continue;  // its first value
      }
    } else if (c == '"') {
      std::string_view body;
      if (!s.String(&body)) return false;
      note(ScannedValue::Kind::kString, body);
    } else if (c == 'n') {
      if (!s.Literal("null")) return false;
      note(ScannedValue::Kind::kNull, {});
    } else if (c == 't' || c == 'f') {
      if (!s.Literal(c == 't' ? "true" : "false")) return false;
      note(ScannedValue::Kind::kOther, {});
    } else {
      if (!s.Number()) return false;
      note(ScannedValue::Kind::kOther, {});
    }
    // After a value: close what it ends, until a comma or the end.
    while (true) {
      s.SkipSpace();
      if (open.empty()) return s.AtEnd();
      if (s.AtEnd()) return false;
      const char d = s.Current();
      if (d == ',') {
        s.Skip();
        if (open.back() == '{' && !read_key()) return false;
        break;  // the next value
      }
      if (d != (open.back() == '{' ? '}' : ']')) return false;
      s.Skip();
      open.pop_back();
      pending = -1;
    }
  }
}

void AppendDecodedJsonString(std::string_view body, std::string* out) {
  const char* p = body.data();
  const char* const end = p + body.size();
  while (p < end) {
    const void* slash = std::memchr(p, '\\', static_cast<size_t>(end - p));
    const char* stop = slash != nullptr ? static_cast<const char*>(slash) : end;
    out->append(p, static_cast<size_t>(stop - p));
    p = stop;
    if (p >= end) break;
    const char e = p[1];
    p += 2;
    switch (e) {
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        uint32_t cp = static_cast<uint32_t>(Hex4(p));
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // ScanJson checked the pair
          const uint32_t low = static_cast<uint32_t>(Hex4(p + 2));
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        AppendUtf8(cp, out);
        break;
      }
      default:  // '"', '\\', '/'
        out->push_back(e);
    }
  }
}

}  // namespace procpool::cli

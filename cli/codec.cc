#include "cli/codec.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/json_scan.h"
#include "nlohmann/json.hpp"
#include "simdjson.h"

namespace procpool::cli {
namespace {

using nlohmann::json;

// What the streaming pass learns about a record: each top-level field's
// value if it is a string, what kind it is otherwise, and whether the record
// nests too deep. Only the fields asked for are kept.
class FieldSax {
 public:
  enum class Kind { kMissing, kNull, kString, kOther };
  struct Field {
    Kind kind = Kind::kMissing;
    std::string text;  // kString: the decoded string
  };

  FieldSax(const std::vector<std::string>& fields, const std::string& result_key,
           size_t max_depth)
      : names_(fields), result_key_(result_key), max_depth_(max_depth), found_(fields.size()) {}

  bool null() { return Value(Kind::kNull, nullptr, "null"); }
  bool boolean(bool) { return Value(Kind::kOther, nullptr, "boolean"); }
  bool number_integer(json::number_integer_t) { return Value(Kind::kOther, nullptr, "number"); }
  bool number_unsigned(json::number_unsigned_t) { return Value(Kind::kOther, nullptr, "number"); }
  bool number_float(json::number_float_t, const std::string&) {
    return Value(Kind::kOther, nullptr, "number");
  }
  bool string(std::string& s) { return Value(Kind::kString, &s, "string"); }
  bool binary(json::binary_t&) { return Value(Kind::kOther, nullptr, "binary"); }
  bool start_object(size_t) {
    if (depth_ == 0) root_object_ = true;
    return Open("object");
  }
  bool end_object() { return Close(); }
  bool start_array(size_t) { return Open("array"); }
  bool end_array() { return Close(); }
  bool key(std::string& k) {
    if (depth_ == 1) {
      pending_ = -1;
      for (size_t i = 0; i < names_.size(); ++i) {
        if (names_[i] == k) pending_ = static_cast<int>(i);
      }
      if (k == result_key_) has_result_key_ = true;
    }
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    error_ = e.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }
  bool root_object() const { return root_object_; }
  Kind root_kind() const { return root_kind_; }
  const char* root_type() const { return root_type_; }
  std::string& root_string() { return root_string_; }
  bool has_result_key() const { return has_result_key_; }
  std::vector<Field>& found() { return found_; }

 private:
  bool Value(Kind kind, std::string* s, const char* type) {
    if (depth_ == 0) {
      root_kind_ = kind;
      root_type_ = type;
      if (s != nullptr) root_string_ = std::move(*s);
    } else if (depth_ == 1 && pending_ >= 0) {
      // A key given twice: the last value counts, as in a parsed object.
      Field& f = found_[static_cast<size_t>(pending_)];
      f.kind = kind;
      f.text.clear();
      if (s != nullptr) f.text = std::move(*s);
      pending_ = -1;
    }
    return true;
  }
  bool Open(const char* type) {
    Value(Kind::kOther, nullptr, type);
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  bool Close() {
    --depth_;
    pending_ = -1;
    return true;
  }

  const std::vector<std::string>& names_;
  const std::string& result_key_;
  const size_t max_depth_;
  size_t depth_ = 0;
  int pending_ = -1;  // the field whose value comes next
  bool too_deep_ = false;
  bool root_object_ = false;
  bool has_result_key_ = false;
  Kind root_kind_ = Kind::kMissing;
  const char* root_type_ = "value";
  std::string root_string_;
  std::string error_;
  std::vector<Field> found_;
};

// The number of bytes of the UTF-8 sequence at s[i], or 0 if it is not a
// valid one (overlong forms, surrogates and code points above U+10FFFF are
// not).
size_t Utf8SequenceAt(const unsigned char* s, size_t n, size_t i) {
  const unsigned char c = s[i];
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return i + k < n && (s[i + k] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && s[i + 1] < 0xA0) return 0;  // overlong
    if (c == 0xED && s[i + 1] > 0x9F) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && s[i + 1] < 0x90) return 0;  // overlong
    if (c == 0xF4 && s[i + 1] > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// The streaming pass of nlohmann-json: the reference behaviour, and the
// path for what simdjson refuses (its errors are reported from here).
void ParseWithNlohmann(std::string_view raw, const std::vector<std::string>& fields,
                       const std::string& result_key, size_t max_depth, Record* r) {
  std::vector<std::string> top_level;
  bool needs_dom = false;
  for (const std::string& f : fields) {
    if (!f.empty() && f[0] == '/') {
      needs_dom = true;
      top_level.emplace_back();  // never matches a key: found by the DOM
    } else {
      top_level.push_back(f);
    }
  }
  FieldSax sax(top_level, result_key, max_depth);
  const bool ok = json::sax_parse(raw.data(), raw.data() + raw.size(), &sax);
  if (!ok) {
    if (sax.too_deep()) {
      r->error = absl::ResourceExhaustedError(absl::StrCat(
          "the record nests arrays and objects deeper than --max-depth (", max_depth, ")"));
    } else {
      r->error = absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", sax.error()));
    }
    return;
  }
  r->json_object = sax.root_object();
  r->has_result_key = r->json_object && sax.has_result_key();
  if (fields.empty()) {
    if (sax.root_kind() == FieldSax::Kind::kString) {
      r->args.push_back(std::move(sax.root_string()));
    } else {
      r->args.emplace_back(raw);
    }
    return;
  }
  for (size_t i = 0; i < fields.size() && !needs_dom; ++i) {
    if (sax.found()[i].kind == FieldSax::Kind::kOther) needs_dom = true;
  }
  // The depth is bounded now, so building and dumping a DOM cannot recurse
  // too far.
  json dom;
  if (needs_dom) dom = json::parse(raw.begin(), raw.end());
  for (size_t i = 0; i < fields.size(); ++i) {
    const std::string& field = fields[i];
    FieldSax::Field& found = sax.found()[i];
    if (field[0] == '/') {
      const json* v = nullptr;
      try {
        const json::json_pointer ptr(field);
        if (dom.contains(ptr)) v = &dom.at(ptr);
      } catch (const nlohmann::json::exception& e) {
        r->error = absl::InvalidArgumentError(
            absl::StrCat("field '", field, "' is not a valid JSON pointer: ", e.what()));
        return;
      }
      if (v == nullptr) {
        r->error = absl::NotFoundError(absl::StrCat("field '", field, "' is missing"));
        return;
      }
      if (v->is_null()) {
        r->error = absl::InvalidArgumentError(absl::StrCat("field '", field, "' is null"));
        return;
      }
      r->args.push_back(v->is_string() ? v->get<std::string>() : v->dump());
      continue;
    }
    if (!r->json_object) {
      r->error = absl::InvalidArgumentError(absl::StrCat(
          "the record is a JSON ", sax.root_type(), ", not an object with field '", field, "'"));
      return;
    }
    switch (found.kind) {
      case FieldSax::Kind::kMissing:
        r->error = absl::NotFoundError(absl::StrCat("field '", field, "' is missing"));
        return;
      case FieldSax::Kind::kNull:
        r->error = absl::InvalidArgumentError(absl::StrCat("field '", field, "' is null"));
        return;
      case FieldSax::Kind::kString:
        r->args.push_back(std::move(found.text));
        break;
      case FieldSax::Kind::kOther:
        r->args.push_back(dom.at(field).dump());
        break;
    }
  }
}

// simdjson's DOM parser (validating, iterative, SIMD) for the usual
// record: an object whose fields are top-level keys. Returns false to hand
// the record to ParseWithNlohmann: simdjson refused it (bad JSON, a number
// it does not represent), or a field is not a string (passed as JSON text,
// which nlohmann writes).
bool ParseWithSimdjson(std::string_view raw, const std::vector<std::string>& fields,
                       const std::string& result_key, size_t max_depth, Record* r) {
  for (const std::string& f : fields) {
    if (!f.empty() && f[0] == '/') return false;
  }
  thread_local simdjson::dom::parser parser;
  if (parser.max_depth() != max_depth) {
    if (parser.allocate(std::max<size_t>(parser.capacity(), 64), max_depth) != simdjson::SUCCESS) {
      return false;
    }
  }
  simdjson::dom::element doc;
  const simdjson::error_code err = parser.parse(raw.data(), raw.size()).get(doc);
  if (err == simdjson::DEPTH_ERROR) {
    r->error = absl::ResourceExhaustedError(absl::StrCat(
        "the record nests arrays and objects deeper than --max-depth (", max_depth, ")"));
    return true;
  }
  if (err != simdjson::SUCCESS) return false;
  if (fields.empty()) {
    std::string_view s;
    if (doc.get_string().get(s) == simdjson::SUCCESS) {
      r->args.emplace_back(s);
    } else {
      r->args.emplace_back(raw);
    }
    simdjson::dom::object object;
    if (doc.get_object().get(object) == simdjson::SUCCESS) {
      r->json_object = true;
      for (auto field : object) {
        if (field.key == result_key) r->has_result_key = true;
      }
    }
    return true;
  }
  simdjson::dom::object object;
  if (doc.get_object().get(object) != simdjson::SUCCESS) return false;  // nlohmann words it
  // The last value of each field counts (as in a parsed object).
  std::vector<simdjson::dom::element> found(fields.size());
  std::vector<bool> present(fields.size(), false);
  bool has_result_key = false;
  for (auto field : object) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (field.key == fields[i]) {
        found[i] = field.value;
        present[i] = true;
      }
    }
    if (field.key == result_key) has_result_key = true;
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    if (!present[i]) {
      r->error = absl::NotFoundError(absl::StrCat("field '", fields[i], "' is missing"));
      return true;
    }
    if (found[i].is_null()) {
      r->error = absl::InvalidArgumentError(absl::StrCat("field '", fields[i], "' is null"));
      return true;
    }
    if (!found[i].is_string()) {
      r->args.clear();
      return false;
    }
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    std::string_view text;
    if (found[i].get_string().get(text) != simdjson::SUCCESS) return false;
    r->args.emplace_back(text);
  }
  r->json_object = true;
  r->has_result_key = has_result_key;
  return true;
}

// The lean pass (json_scan.h) for a huge record whose fields are
// top-level strings (or which is itself a string, or any JSON without
// --field). Each field is decoded once, into a string of its size plus 8
// bytes (room for the adapter to make it an archive in place). Returns
// false to hand the record to ParseWithNlohmann (not sure it is JSON, a
// pointer field, a field missing, null or not a string: nlohmann words
// those).
bool ParseHuge(std::string_view raw, const std::vector<std::string>& fields,
               const std::string& result_key, size_t max_depth, Record* r) {
  for (const std::string& f : fields) {
    if (!f.empty() && f[0] == '/') return false;
  }
  ScannedRecord scan;
  if (!ScanJson(raw, max_depth, fields, result_key, &scan)) return false;
  auto decoded = [](std::string_view body) {
    std::string s;
    s.reserve(body.size() + 8);
    AppendDecodedJsonString(body, &s);
    return s;
  };
  if (fields.empty()) {
    if (scan.root.kind == ScannedValue::Kind::kString) {
      r->args.push_back(decoded(scan.root.body));
    } else {
      r->args.emplace_back(raw);
    }
  } else {
    if (!scan.root_object) return false;
    for (const ScannedValue& v : scan.fields) {
      if (v.kind != ScannedValue::Kind::kString) return false;
    }
    for (const ScannedValue& v : scan.fields) r->args.push_back(decoded(v.body));
  }
  r->json_object = scan.root_object;
  r->has_result_key = scan.root_object && scan.has_result_key;
  return true;
}

}  // namespace

void ParseJsonlRecord(std::string_view raw, const std::vector<std::string>& fields,
                      const std::string& result_key, size_t max_depth, Record* r) {
  // simdjson holds a padded copy of the record, its strings unescaped and
  // an index, several times a huge record's size; the lean pass holds the
  // fields once, and nlohmann's streaming pass each string it reads twice.
  constexpr size_t kSimdjsonMaxBytes = size_t{16} << 20;
  if (raw.size() <= kSimdjsonMaxBytes) {
    if (ParseWithSimdjson(raw, fields, result_key, max_depth, r)) return;
  } else if (ParseHuge(raw, fields, result_key, max_depth, r)) {
    return;
  }
  r->error = absl::OkStatus();
  r->args.clear();
  ParseWithNlohmann(raw, fields, result_key, max_depth, r);
}

SplicePoint SpliceAt(const std::string& raw) {
  const size_t close = raw.find_last_of('}');
  const size_t before = raw.find_last_not_of(" \t\r\n", close - 1);
  return SplicePoint{std::string_view(raw.data(), close),
                     before != std::string::npos && raw[before] != '{'};
}

void AppendJsonlOutput(const Record& r, std::string_view result_json, const std::string& as,
                       const std::string& key_json, bool result_only, std::string* out) {
  if (result_only) {
    out->append(result_json);
  } else if (r.json_object && !r.has_result_key) {
    const SplicePoint at = SpliceAt(r.raw);
    out->append(at.head);
    if (at.comma) out->push_back(',');
    out->append(key_json);
    out->push_back(':');
    out->append(result_json);
    out->push_back('}');
  } else {
    // Rare: parse the input (its depth was checked) and rebuild it.
    nlohmann::ordered_json value = nlohmann::ordered_json::parse(r.raw);
    nlohmann::ordered_json o;
    if (value.is_object()) {
      o = std::move(value);
    } else {
      o["input"] = std::move(value);
    }
    o[as] = nlohmann::ordered_json::parse(result_json);
    out->append(o.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  }
  out->push_back('\n');
}

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  out->reserve(out->size() + n + 2);
  out->push_back('"');
  size_t run = 0;  // start of the bytes not yet copied
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    size_t len = c < 0x80 ? 1 : Utf8SequenceAt(p, n, i);
    if (c >= 0x80 && len > 0) {
      i += len;
      continue;
    }
    out->append(s.data() + run, i - run);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->append("\xEF\xBF\xBD");  // an invalid byte: U+FFFD
        }
    }
    ++i;
    run = i;
  }
  out->append(s.data() + run, n - run);
  out->push_back('"');
}

bool IsUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) != 0) break;
      i += 8;
    }
    if (i >= n) break;
    const size_t len = Utf8SequenceAt(p, n, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i < n) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace procpool::cli

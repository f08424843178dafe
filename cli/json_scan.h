// A lean pass over one JSON value for huge JSON Lines records: it checks
// that the text is JSON and finds the top-level fields, holding nothing but
// a stack of open arrays and objects, and then decodes a string field into
// a buffer of its exact size. nlohmann-json's lexer holds the string being
// read twice (decoded and as read), each grown by doubling; simdjson holds a
// padded copy of the record. Pool-free.
//
// The pass is strict and says "not sure" rather than differ from
// nlohmann-json: the caller then parses the record the usual way.
//
// Thread-safe: all functions are reentrant.

#ifndef PROCPOOL_CLI_JSON_SCAN_H_
#define PROCPOOL_CLI_JSON_SCAN_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace procpool::cli {

struct ScannedValue {
  enum class Kind { kMissing, kNull, kString, kOther };
  Kind kind = Kind::kMissing;
  // kString: what is between the quotes, escapes not decoded.
  std::string_view body;
};

struct ScannedRecord {
  ScannedValue root;                 // root.kind kOther with root_object for {...}
  bool root_object = false;
  bool has_result_key = false;       // a top-level key equals the result key
  std::vector<ScannedValue> fields;  // one per name asked for; the last value of a key given twice
};

// Scans `raw` as one JSON value (RFC 8259 over UTF-8, white space around
// it, arrays and objects nested at most `max_depth` deep), noting the
// top-level values of the keys `names` and whether the key `result_key` is
// there. Returns false when `raw` is not such JSON, or holds a number with
// an exponent or more than 18 digits (nlohmann-json's reading of those is
// left to it).
bool ScanJson(std::string_view raw, size_t max_depth, const std::vector<std::string>& names,
              const std::string& result_key, ScannedRecord* out);

// Appends the string whose body (between the quotes) ScanJson accepted,
// with its escapes decoded, to *out.
void AppendDecodedJsonString(std::string_view body, std::string* out);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_JSON_SCAN_H_

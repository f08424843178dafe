// Turning poolrun's records into task arguments and results into output
// lines: the per-record work, done in the workers (cli/adapter.h) for JSON
// Lines and plain lines, and by poolrun itself for CSV. Pool-free.
//
// Thread-safe: all functions are reentrant.

#ifndef PROCPOOL_CLI_CODEC_H_
#define PROCPOOL_CLI_CODEC_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "cli/record.h"

namespace procpool::cli {

// Parses the JSON Lines record `raw` (one line, without its newline) into
// r->args (one per field in `fields`, or the value itself when `fields` is
// empty), r->json_object and r->has_result_key (the object has the key
// `result_key`). `max_depth` (--max-depth) bounds the nesting of arrays and
// objects, so that no later step that recurses over a JSON value can
// overflow a stack. A field that is a JSON string is passed decoded; any other
// value as its JSON text. A field starting with '/' is a JSON pointer.
// Problems go to r->error: not JSON (kInvalidArgument), nested deeper than
// `max_depth` (kResourceExhausted), a missing field (kNotFound), a null
// field or a field of a record that is not an object (kInvalidArgument).
// Never recurses: records are parsed by simdjson (iterative, with a depth
// limit), or, for what simdjson refuses and for pointer or non-string
// fields, by a streaming (SAX) pass of nlohmann-json that stops at
// `max_depth`; a DOM is built only for a non-string or pointer field, once
// the depth is known to be within `max_depth`.
void ParseJsonlRecord(std::string_view raw, const std::vector<std::string>& fields,
                      const std::string& result_key, size_t max_depth, Record* r);

// Appends the jsonl output line (with its newline) of record `r` whose
// task result, as JSON, is `result_json`: the input object with the result
// spliced in before its closing brace under `key_json` (the --as key as a
// JSON string), its text kept byte for byte; an input that is not an object,
// or already has the key, becomes {"input": ..., <as>: ...} or the object
// with the key replaced; with `result_only`, the result alone.
void AppendJsonlOutput(const Record& r, std::string_view result_json, const std::string& as,
                       const std::string& key_json, bool result_only, std::string* out);

// Where the result goes in the jsonl output line of a record that is a JSON
// object without the result's key: the line is `head` (the record's text up
// to its closing brace), a comma if `comma`, the key as JSON, a colon, the
// result as JSON, and "}\n", written one after the other without copying
// the record.
struct SplicePoint {
  std::string_view head;
  bool comma;
};
SplicePoint SpliceAt(const std::string& raw);

// Appends `s` as a JSON string (with quotes) to *out, escaped as
// nlohmann-json does; each invalid UTF-8 sequence becomes U+FFFD.
void AppendJsonString(std::string* out, std::string_view s);

// True if `s` is valid UTF-8.
bool IsUtf8(std::string_view s);

// The RFC 4648 base64 of `bytes`.
std::string Base64(std::string_view bytes);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_CODEC_H_

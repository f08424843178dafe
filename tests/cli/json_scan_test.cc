// The lean JSON pass for huge records (cli/json_scan.h) agrees with
// nlohmann-json, which poolrun falls back to: whatever it accepts nlohmann
// accepts, with the same field values.
#include "cli/json_scan.h"

#include <string>
#include <vector>

#include "cli/codec.h"
#include "cli/record.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace procpool::cli {
namespace {

using Kind = ScannedValue::Kind;

std::string Decoded(std::string_view body) {
  std::string s;
  AppendDecodedJsonString(body, &s);
  return s;
}

TEST(JsonScanTest, AcceptsOnlyWhatNlohmannAcceptsWithTheSameValues) {
  const std::vector<std::string> inputs = {
      R"({"text": "plain", "id": 1})",
      R"(  {"text":"a\"b\\c\/d\b\f\n\r\t","x":[1,-2.5,{"text":"inner"}],"y":null} )",
      R"({"text": "\u00e9\u4e00\ud83d\ude00 caf\u00c3", "text": "last wins"})",
      R"({"te\u0078t": "escaped key", "as": true})",
      "{\"text\": \"\xc3\xa9\xe4\xb8\x80\xf0\x9f\x98\x80\"}",
      R"("a string")", R"([1, "two", [false, {}]])", R"(-0)", R"(0.5)", R"(null)",
      R"({"text": "\u0000"})", R"({})", R"([])", "{\"text\":\"x\"}\n",
      // Not JSON (or left to nlohmann): each must be refused.
      R"({"text": "x",})", R"({"text": 'x'})", R"({"text": "x")", R"({"text" "x"})",
      R"({"text": "x"} extra)", R"({"text": "\x"})", R"({"text": "\ud83d"})",
      R"({"text": "\ude00"})", R"({"text": "\u12"})", R"({"text": 01})", R"({"text": 1.})",
      R"({"text": -})", R"({"text": 1e5})", R"({"text": tru})", R"([1,])", R"()", R"(   )",
      "{\"text\": \"tab\there\"}", "{\"text\": \"\xc3\x28\"}", "{\"text\": \"\xed\xa0\x80\"}",
      "{\"text\": \"\xe0\x80\xaf\"}", "{\"text\": \"\xf4\x90\x80\x80\"}", R"({"a":1}{"b":2})",
      R"({"text": "x" /* c */})", R"({"text": 12345678901234567890})"};
  for (const std::string& in : inputs) {
    ScannedRecord scan;
    const bool ok = ScanJson(in, 100, {"text", "id"}, "as", &scan);
    if (!ok) continue;
    ASSERT_TRUE(nlohmann::json::accept(in)) << in;
    const nlohmann::json j = nlohmann::json::parse(in);
    EXPECT_EQ(scan.root_object, j.is_object()) << in;
    if (j.is_string()) {
      ASSERT_EQ(scan.root.kind, Kind::kString) << in;
      EXPECT_EQ(Decoded(scan.root.body), j.get<std::string>()) << in;
    }
    if (!j.is_object()) continue;
    EXPECT_EQ(scan.has_result_key, j.contains("as")) << in;
    const char* names[] = {"text", "id"};
    for (size_t i = 0; i < 2; ++i) {
      const ScannedValue& v = scan.fields[i];
      if (!j.contains(names[i])) {
        EXPECT_EQ(v.kind, Kind::kMissing) << in;
      } else if (j[names[i]].is_string()) {
        ASSERT_EQ(v.kind, Kind::kString) << in;
        EXPECT_EQ(Decoded(v.body), j[names[i]].get<std::string>()) << in;
      } else {
        EXPECT_EQ(v.kind, j[names[i]].is_null() ? Kind::kNull : Kind::kOther) << in;
      }
    }
  }
  // And these it must take (no fallback for the usual record).
  ScannedRecord scan;
  EXPECT_TRUE(ScanJson(inputs[1], 100, {"text"}, "as", &scan));
  EXPECT_TRUE(ScanJson(inputs[2], 100, {"text"}, "as", &scan));
  EXPECT_EQ(Decoded(scan.fields[0].body), "last wins");
  EXPECT_FALSE(ScanJson(R"([[[1]]])", 2, {}, "as", &scan));
  EXPECT_TRUE(ScanJson(R"([[1]])", 2, {}, "as", &scan));
}

// A record over simdjson's limit goes through the lean pass: the field is
// nlohmann's value, with room for an 8-byte prefix (the adapter's archive).
TEST(JsonScanTest, HugeRecordFieldIsDecodedOnceWithRoomForItsArchive) {
  std::string text;
  while (text.size() < (size_t{17} << 20)) text += "<p>caf\u00e9 \"q\" \\ \n\t\U0001F600</p>";
  const std::string raw = nlohmann::json({{"id", 1}, {"text", text}}).dump();
  Record r;
  ParseJsonlRecord(raw, {"text"}, "normalize", 1000, &r);
  ASSERT_TRUE(r.error.ok()) << r.error;
  ASSERT_EQ(r.args.size(), 1u);
  EXPECT_TRUE(r.args[0] == text);
  EXPECT_GE(r.args[0].capacity(), text.size() + 8);
  EXPECT_TRUE(r.json_object);
  EXPECT_FALSE(r.has_result_key);
  // Bad JSON of that size is still worded by nlohmann.
  Record bad;
  ParseJsonlRecord(raw.substr(0, raw.size() - 1), {"text"}, "normalize", 1000, &bad);
  EXPECT_EQ(bad.error.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace procpool::cli

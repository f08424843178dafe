#include "cli/format.h"

#include <csv.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "cli/codec.h"

namespace procpool::cli {

std::string DumpJson(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

ResultWriter::ResultWriter(const PoolrunOptions& options, std::vector<std::string> csv_header,
                           OutputFile* out)
    : options_(options), csv_header_(std::move(csv_header)), out_(out) {
  key_json_ = DumpJson(Json(options_.as));
}

void ResultWriter::Begin() {
  if (options_.format == Format::kCsv && out_->bytes() == 0) {
    std::vector<std::string> header = csv_header_;
    header.push_back(options_.as);
    WriteCsvRow(header);
  }
}

void ResultWriter::WriteCsvRow(const std::vector<std::string>& cells) {
  scratch_.clear();
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i > 0) scratch_.push_back(',');
    const std::string& c = cells[i];
    const bool quote = c.find_first_of(",\"\r\n") != std::string::npos ||
                       (!c.empty() && (c.front() == ' ' || c.back() == ' '));
    if (!quote) {
      scratch_ += c;
      continue;
    }
    // libcsv's writer quotes the field and doubles its quotes.
    const size_t need = csv_write(nullptr, 0, c.data(), c.size());
    const size_t at = scratch_.size();
    scratch_.resize(at + need);
    csv_write(scratch_.data() + at, need, c.data(), c.size());
  }
  scratch_ += "\r\n";  // RFC 4180 line ending
  out_->Write(scratch_);
}

void ResultWriter::Write(const Record& record, const Json& result) {
  switch (options_.format) {
    case Format::kLines: {
      if (result.is_string()) {
        scratch_ = result.get_ref<const std::string&>();
        for (char& c : scratch_) {
          if (c == '\n' || c == '\r') c = ' ';
        }
      } else {
        scratch_ = DumpJson(result);
      }
      scratch_.push_back('\n');
      out_->Write(scratch_);
      return;
    }
    case Format::kJsonl: {
      if (options_.result_only) {
        scratch_ = DumpJson(result);
      } else if (record.json_object && !record.has_result_key) {
        // Splice the result in before the closing brace: the input's text is
        // kept byte for byte, and nothing is parsed twice.
        const std::string& raw = record.raw;
        size_t close = raw.find_last_of('}');
        size_t before = raw.find_last_not_of(" \t\r\n", close - 1);
        scratch_.assign(raw, 0, close);
        if (before != std::string::npos && raw[before] != '{') scratch_.push_back(',');
        scratch_ += key_json_;
        scratch_.push_back(':');
        scratch_ += DumpJson(result);
        scratch_.push_back('}');
      } else {
        Json value = Json::parse(record.raw);
        Json out;
        if (value.is_object()) {
          out = std::move(value);
        } else {
          out["input"] = std::move(value);
        }
        out[options_.as] = result;
        scratch_ = DumpJson(out);
      }
      scratch_.push_back('\n');
      out_->Write(scratch_);
      return;
    }
    case Format::kCsv: {
      std::vector<std::string> cells = record.fields;
      cells.push_back(result.is_string() ? result.get<std::string>() : DumpJson(result));
      WriteCsvRow(cells);
      return;
    }
  }
}

std::string DeadLetter(const Record& record, const absl::Status& error) {
  Json j;
  j["record"] = record.number + 1;
  j["line"] = record.line;
  j["input"] = record.raw;
  // "input" replaces invalid UTF-8; the exact bytes stay recoverable.
  if (!IsUtf8(record.raw)) j["input_bytes"] = Base64(record.raw);
  j["error"] = std::string(error.message());
  j["code"] = absl::StatusCodeToString(error.code());
  std::string out = DumpJson(j);
  out.push_back('\n');
  return out;
}

}  // namespace procpool::cli

#include "cli/records.h"

#include <csv.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/codec.h"
#include "nlohmann/json.hpp"

namespace procpool::cli {
namespace {

void StripCr(std::string* line) {
  if (!line->empty() && line->back() == '\r') line->pop_back();
}

bool Blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

// ---- lines ----

// A record longer than the limit: an error holding its first bytes.
void TooLong(uint64_t size, uint64_t limit, std::string* line, Record* r) {
  r->error = absl::ResourceExhaustedError(absl::StrCat(
      "the record has ", size, " bytes, more than --max-record-bytes (", limit, ")"));
  r->raw = std::move(*line);
}

class LinesReader final : public RecordReader {
 public:
  LinesReader(LineReader lines, bool frame_only)
      : RecordReader(std::move(lines)), frame_only_(frame_only) {}

  absl::StatusOr<bool> Next(Record* r, bool parse) override {
    bool terminated = false;
    uint64_t size = 0;
    const uint64_t at = lines_.bytes_consumed();
    absl::StatusOr<bool> more = lines_.Next(&line_, &terminated, &size);
    if (!more.ok() || !*more) return more;
    *r = Record();
    r->number = next_++;
    r->line = lines_.lines();
    if (!parse) return true;
    if (size > lines_.max_line_bytes()) {
      TooLong(size, lines_.max_line_bytes(), &line_, r);
      return true;
    }
    StripCr(&line_);
    if (!frame_only_) r->args.push_back(line_);
    r->raw = std::move(line_);
    if (lines_.size().has_value()) r->file_offset = static_cast<int64_t>(at);
    return true;
  }

 private:
  const bool frame_only_;
  std::string line_;
  uint64_t next_ = 0;
};

// ---- jsonl ----

class JsonlReader final : public RecordReader {
 public:
  JsonlReader(LineReader lines, std::vector<std::string> fields, std::string result_key,
              size_t max_depth, bool frame_only)
      : RecordReader(std::move(lines)),
        fields_(std::move(fields)),
        result_key_(std::move(result_key)),
        max_depth_(max_depth),
        frame_only_(frame_only) {}

  absl::StatusOr<bool> Next(Record* r, bool parse) override {
    bool terminated = false;
    uint64_t size = 0;
    uint64_t at = 0;
    while (true) {
      at = lines_.bytes_consumed();
      absl::StatusOr<bool> more = lines_.Next(&line_, &terminated, &size);
      if (!more.ok() || !*more) return more;
      // Blank lines separate nothing in JSON Lines; they are not records.
      if (size > lines_.max_line_bytes() || !Blank(line_)) break;
    }
    *r = Record();
    r->number = next_++;
    r->line = lines_.lines();
    if (!parse) return true;
    if (size > lines_.max_line_bytes()) {
      TooLong(size, lines_.max_line_bytes(), &line_, r);
      return true;
    }
    StripCr(&line_);
    if (!frame_only_) ParseJsonlRecord(line_, fields_, result_key_, max_depth_, r);
    r->raw = std::move(line_);
    if (lines_.size().has_value()) r->file_offset = static_cast<int64_t>(at);
    return true;
  }

 private:
  const std::vector<std::string> fields_;
  const std::string result_key_;
  const size_t max_depth_;
  const bool frame_only_;
  std::string line_;
  uint64_t next_ = 0;
};

// ---- csv ----

// libcsv's push parser, fed one physical line at a time, so that a record's
// first line and its raw text are known even when quoted fields span lines.
class CsvReader final : public RecordReader {
 public:
  explicit CsvReader(LineReader lines) : RecordReader(std::move(lines)) { Reset(); }
  ~CsvReader() override { csv_free(&parser_); }

  // Reads the header and maps --field names to columns.
  absl::Status Init(const std::vector<std::string>& fields, const std::string& source) {
    Record header;
    absl::StatusOr<bool> more = ReadRow(&header);
    if (!more.ok()) return more.status();
    if (!*more) return absl::InvalidArgumentError(absl::StrCat(source, ": empty CSV, no header"));
    if (!header.error.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": the CSV header is malformed: ", header.error.message()));
    }
    header_ = std::move(header.fields);
    if (fields.empty()) {
      if (header_.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, " has ", header_.size(), " columns (", absl::StrJoin(header_, ", "),
            "): say which to pass to the task with --field"));
      }
      columns_.push_back(0);
    }
    for (const std::string& f : fields) {
      size_t i = 0;
      while (i < header_.size() && header_[i] != f) ++i;
      if (i == header_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--field '", f, "' is not a column of ",
                                                       source, " (columns: ",
                                                       absl::StrJoin(header_, ", "), ")"));
      }
      columns_.push_back(i);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Next(Record* r, bool parse) override {
    absl::StatusOr<bool> more = ReadRow(r);
    if (!more.ok() || !*more) return more;
    r->number = next_++;
    if (!parse) {
      r->fields.clear();
      r->raw.clear();
      r->error = absl::OkStatus();
      return true;
    }
    if (r->error.ok() && r->fields.size() != header_.size()) {
      r->error = absl::InvalidArgumentError(absl::StrCat(
          "the record has ", r->fields.size(), " fields, the header has ", header_.size()));
    }
    if (r->error.ok()) {
      for (size_t c : columns_) r->args.push_back(r->fields[c]);
    }
    return true;
  }

 private:
  static void OnField(void* s, size_t len, void* self) {
    static_cast<CsvReader*>(self)->row_.emplace_back(static_cast<const char*>(s), len);
  }
  static void OnRow(int, void* self) { static_cast<CsvReader*>(self)->row_done_ = true; }

  void Reset() {
    csv_init(&parser_, CSV_STRICT | CSV_STRICT_FINI);
    row_.clear();
    row_done_ = false;
  }

  // The next row (fields, raw text and first line; error if malformed).
  absl::StatusOr<bool> ReadRow(Record* r) {
    *r = Record();
    std::string raw;
    uint64_t first_line = 0;
    while (true) {
      bool terminated = false;
      uint64_t size = 0;
      absl::StatusOr<bool> more = lines_.Next(&line_, &terminated, &size);
      if (!more.ok()) return more.status();
      if (*more && size > lines_.max_line_bytes()) {
        // A line over the limit: the record it is part of is dropped whole.
        r->line = raw.empty() ? lines_.lines() : first_line;
        TooLong(size, lines_.max_line_bytes(), &line_, r);
        csv_free(&parser_);
        Reset();
        return true;
      }
      if (!*more) {
        if (raw.empty()) return false;
        // The input ended inside a record (an unclosed quote).
        const int rc = csv_fini(&parser_, &OnField, &OnRow, this);
        r->line = first_line;
        r->raw = std::move(raw);
        if (rc != 0 || !row_done_) {
          r->error = absl::InvalidArgumentError(
              absl::StrCat("malformed CSV: ", csv_strerror(csv_error(&parser_)),
                           " (the input ends inside a quoted field)"));
        } else {
          r->fields = std::move(row_);
        }
        csv_free(&parser_);
        Reset();
        return true;
      }
      if (raw.empty()) {
        if (Blank(line_)) continue;  // blank lines between records
        first_line = lines_.lines();
      }
      if (terminated) line_.push_back('\n');
      const size_t fed = csv_parse(&parser_, line_.data(), line_.size(), &OnField, &OnRow, this);
      raw += line_;
      if (fed != line_.size()) {
        // Malformed: report this record and start afresh on the next line.
        r->line = first_line;
        StripNewline(&raw);
        r->raw = std::move(raw);
        r->error = absl::InvalidArgumentError(
            absl::StrCat("malformed CSV: ", csv_strerror(csv_error(&parser_))));
        csv_free(&parser_);
        Reset();
        return true;
      }
      if (!terminated && !row_done_) {
        // The last line lacks a newline: let the parser end the row.
        csv_fini(&parser_, &OnField, &OnRow, this);
      }
      if (row_done_) {
        r->line = first_line;
        StripNewline(&raw);
        r->raw = std::move(raw);
        r->fields = std::move(row_);
        row_.clear();
        row_done_ = false;
        return true;
      }
    }
  }

  static void StripNewline(std::string* s) {
    while (!s->empty() && (s->back() == '\n' || s->back() == '\r')) s->pop_back();
  }

  csv_parser parser_{};
  std::vector<std::string> row_;
  bool row_done_ = false;
  std::vector<size_t> columns_;
  std::string line_;
  uint64_t next_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::Create(
    const PoolrunOptions& options, LineReader lines, bool frame_only) {
  if (options.max_record_bytes > 0) lines.set_max_line_bytes(options.max_record_bytes);
  switch (options.format) {
    case Format::kLines:
      return std::unique_ptr<RecordReader>(new LinesReader(std::move(lines), frame_only));
    case Format::kJsonl: {
      for (const std::string& f : options.fields) {
        if (f[0] != '/') continue;
        try {
          nlohmann::json::json_pointer ptr(f);
        } catch (const nlohmann::json::exception& e) {
          return absl::InvalidArgumentError(
              absl::StrCat("--field '", f, "' is not a valid JSON pointer: ", e.what()));
        }
      }
      return std::unique_ptr<RecordReader>(new JsonlReader(
          std::move(lines), options.fields, options.as, options.max_depth, frame_only));
    }
    case Format::kCsv: {
      const std::string source = lines.path();
      auto reader = std::make_unique<CsvReader>(std::move(lines));
      if (absl::Status s = reader->Init(options.fields, source); !s.ok()) return s;
      return std::unique_ptr<RecordReader>(std::move(reader));
    }
  }
  return absl::InvalidArgumentError("unknown format");
}

}  // namespace procpool::cli

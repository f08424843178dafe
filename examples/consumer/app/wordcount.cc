// wordcount: counts the words of a text file with a pool of worker
// processes, one line per task.
//
//   bazel run //app:wordcount                 # counts app/sample.txt
//   bazel run //app:wordcount -- /path/to/file.txt
//   bazel run //app:wordcount -- --acronyms   # shows a crashing task

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pool/pool.h"
#include "pool/runfiles.h"
#include "words/words.h"

namespace {

absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

absl::Status Run(int argc, char** argv) {
  bool acronyms = argc > 1 && std::string(argv[1]) == "--acronyms";
  if (acronyms) --argc, ++argv;

  // Files listed in `data` are found by their path in their workspace.
  absl::StatusOr<std::string> plugin = procpool::FindRunfile("words/libwords.so");
  if (!plugin.ok()) return plugin.status();
  absl::StatusOr<std::string> text =
      argc > 1 ? absl::StatusOr<std::string>(argv[1]) : procpool::FindRunfile("app/sample.txt");
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<std::string>> lines = ReadLines(*text);
  if (!lines.ok()) return lines.status();

  procpool::PoolOptions options;
  options.max_workers = 2;
  options.plugins = {*plugin};  // worker_path: found in the runfiles
  absl::StatusOr<procpool::ProcessPool> pool = procpool::ProcessPool::Create(options);
  if (!pool.ok()) return pool.status();

  if (acronyms) {
    auto acronym = pool->Task(words::kAcronym);
    if (!acronym.ok()) return acronym.status();
    int64_t index = 0;
    for (const absl::StatusOr<std::string>& a : pool->TryMap(*acronym, *lines)) {
      if (a.ok()) {
        std::printf("%lld: %s\n", static_cast<long long>(index), a->c_str());
      } else {
        std::printf("%lld: error: %s\n", static_cast<long long>(index),
                    a.status().ToString().c_str());
      }
      ++index;
    }
    return absl::OkStatus();
  }

  auto count_words = pool->Task(words::kCountWords);
  if (!count_words.ok()) return count_words.status();
  words::LineStats total;
  // Lazy and ordered: each line is a task; results arrive in input order.
  for (const words::LineStats& line : pool->Map(*count_words, *lines)) {
    total.words += line.words;
    total.letters += line.letters;
    if (line.longest.size() > total.longest.size()) total.longest = line.longest;
  }
  std::printf("%zu lines, %lld words, %lld letters, longest word: %s\n", lines->size(),
              static_cast<long long>(total.words), static_cast<long long>(total.letters),
              total.longest.c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::Status s = Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "wordcount: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

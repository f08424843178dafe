// The words plugin's tasks: plain functions (tested in-process by
// words_test), and typed references for the programs that run them in a pool.

#ifndef CONSUMER_WORDS_WORDS_H_
#define CONSUMER_WORDS_WORDS_H_

#include <cstdint>
#include <string>

#include "tasks/task.h"

namespace words {

// What CountWords finds in a line. A struct crosses the process boundary
// once it has a cereal `serialize` member naming every field.
struct LineStats {
  int64_t words = 0;
  int64_t letters = 0;
  std::string longest;  // the first of the longest words

  template <class Archive>
  void serialize(Archive& ar) {
    ar(words, letters, longest);
  }
  bool operator==(const LineStats&) const = default;
};

// Words are runs of letters; everything else separates them.
LineStats CountWords(const std::string& line);

// The decimal integer in `text`. Throws std::invalid_argument if there is
// none: the caller's future fails with kUnknown, naming the exception.
int64_t ParseCount(const std::string& text);

// The first letter of every word, upper-cased. Has a deliberate bug for
// docs/PLUGINS.md's debugging section: it asserts that the line has a word,
// so on a line without one the worker aborts.
std::string Acronym(const std::string& line);

inline constexpr procpool::TaskRef<LineStats(std::string)> kCountWords{"count_words"};
inline constexpr procpool::TaskRef<int64_t(std::string)> kParseCount{"parse_count"};
inline constexpr procpool::TaskRef<std::string(std::string)> kAcronym{"acronym"};

}  // namespace words

#endif  // CONSUMER_WORDS_WORDS_H_

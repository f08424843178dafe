#include "words/words.h"

#include <cassert>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace words {
namespace {

bool IsLetter(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

}  // namespace

LineStats CountWords(const std::string& line) {
  LineStats stats;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && !IsLetter(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && IsLetter(line[i])) ++i;
    if (i == start) break;
    ++stats.words;
    stats.letters += static_cast<int64_t>(i - start);
    if (i - start > stats.longest.size()) stats.longest = line.substr(start, i - start);
  }
  return stats;
}

int64_t ParseCount(const std::string& text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw std::invalid_argument("not a count: '" + text + "'");
  }
  return value;
}

std::string Acronym(const std::string& line) {
  std::string out;
  bool in_word = false;
  for (char c : line) {
    if (IsLetter(c) && !in_word) {
      out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    in_word = IsLetter(c);
  }
  assert(!out.empty() && "a line without words");  // the deliberate bug
  return out;
}

}  // namespace words

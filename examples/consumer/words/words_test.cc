#include "words/words.h"

#include <stdexcept>

#include "gtest/gtest.h"

namespace words {
namespace {

TEST(CountWordsTest, CountsWordsAndLettersAndFindsTheLongest) {
  EXPECT_EQ(CountWords("It was the best of times,"), (LineStats{6, 19, "times"}));
}

TEST(CountWordsTest, EmptyLineHasNoWords) { EXPECT_EQ(CountWords(""), LineStats{}); }

TEST(ParseCountTest, RejectsText) {
  EXPECT_EQ(ParseCount("42"), 42);
  EXPECT_THROW(ParseCount("forty-two"), std::invalid_argument);
}

TEST(AcronymTest, TakesFirstLetters) { EXPECT_EQ(Acronym("portable process pool"), "PPP"); }

}  // namespace
}  // namespace words

// The text tasks on tricky input: invalid UTF-8, markup, exotic white space,
// huge records, empty fields.

#include "plugins/text/text.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procpool::text {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

bool ValidUtf8(const std::string& s) { return FixUtf8(s) == s; }

TEST(FixUtf8Test, KeepsValidText) {
  EXPECT_EQ(FixUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(FixUtf8("caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80"),
            "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80");
}

TEST(FixUtf8Test, ReplacesEachInvalidByte) {
  EXPECT_EQ(FixUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(FixUtf8("\x80"), "\xEF\xBF\xBD");                      // stray continuation
  EXPECT_EQ(FixUtf8("x\xC3"), "x\xEF\xBF\xBD");                    // truncated at the end
  EXPECT_EQ(FixUtf8("\xED\xA0\x80").find("\xED"), std::string::npos);  // surrogate
  EXPECT_EQ(FixUtf8("\xC0\xAF").find("\xC0"), std::string::npos);      // overlong '/'
}

TEST(StripHtmlTest, DropsTagsScriptsAndCommentsAndDecodesEntities) {
  const std::string out = StripHtml(
      "<html><head><style>p{color:red}</style><script>var x = '<b>';</script></head>"
      "<body><p>Caf&eacute; &amp; cr&#232;me &#x263A;</p><!-- hidden --><p>next</p></body></html>");
  EXPECT_EQ(Normalize(out), "Caf\xC3\xA9 & cr\xC3\xA8me \xE2\x98\xBA next");
}

TEST(StripHtmlTest, LeavesTextWithoutMarkupAlone) {
  EXPECT_EQ(StripHtml("a < b and c > d, AT&T"), "a < b and c > d, AT&T");
}

TEST(StripHtmlTest, SurvivesDeepNestingAndBrokenMarkup) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "<div>";
  deep += "bottom";
  EXPECT_EQ(Normalize(deep), "bottom");
  EXPECT_EQ(Normalize("<p>unclosed <b>bold <i>both"), "unclosed bold both");
  // libxml2 wraps the loose "text" in an implied <p>, a block.
  EXPECT_EQ(Normalize("<a href='x'>link</a>text<br>more"), "link text more");
  EXPECT_EQ(Normalize("<p><a href='x'>link</a>text<br>more</p>"), "linktext more");
}

TEST(NormalizeTest, CollapsesUnicodeWhiteSpaceAndRemovesControls) {
  EXPECT_EQ(Normalize("  a\xC2\xA0\xC2\xA0" "b\xE2\x80\x83" "c\xE3\x80\x80" "d\t\r\ne  "),
            "a b c d e");
  EXPECT_EQ(Normalize("zero\xE2\x80\x8Bwidth soft\xC2\xADhyphen \x01\x07" "bell"),
            "zerowidth softhyphen bell");
  EXPECT_EQ(Normalize(std::string("nul\0byte", 8)), "nulbyte");
}

TEST(NormalizeTest, AppliesNfkc) {
  EXPECT_EQ(Normalize("\xEF\xAC\x81le"), "file");                       // ﬁ ligature
  EXPECT_EQ(Normalize("\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3"), "ABC");  // full-width
  EXPECT_EQ(Normalize("e\xCC\x81"), "\xC3\xA9");                        // e + combining acute
}

TEST(NormalizeTest, FoldsCaseOnlyWhenAsked) {
  EXPECT_EQ(Normalize("Stra\xC3\x9F" "e"), "Stra\xC3\x9F" "e");
  EXPECT_EQ(NormalizeFold("Stra\xC3\x9F" "e HELLO"), "strasse hello");
}

TEST(NormalizeTest, EmptyAndInvalidInput) {
  EXPECT_EQ(Normalize(""), "");
  EXPECT_EQ(Normalize("   \t\n "), "");
  const std::string out = Normalize("ok \xFF\xFE bytes <b>\xC3</b>");
  EXPECT_TRUE(ValidUtf8(out)) << out;
  EXPECT_EQ(out.substr(0, 3), "ok ");
}

TEST(NormalizeTest, HugeRecord) {
  std::string huge;
  for (int i = 0; i < 200000; ++i) huge += "<p>word&nbsp;" + std::to_string(i) + "</p>";
  const std::string out = Normalize(huge);
  EXPECT_EQ(out.substr(0, 14), "word 0 word 1 ");
  EXPECT_EQ(out.substr(out.size() - 11), "word 199999");
  EXPECT_EQ(TokenCount(huge), 400000);
}

TEST(ExtractEmailsTest, FindsAddressesInTextAndAttributes) {
  EXPECT_THAT(ExtractEmails("Write to <a href=\"mailto:Jane.Doe+news@Example.co.uk\">Jane</a> "
                            "or bob_smith@mail.example.org. JANE.DOE+NEWS@example.co.uk again."),
              ElementsAre("Jane.Doe+news@Example.co.uk", "bob_smith@mail.example.org"));
}

TEST(ExtractEmailsTest, IgnoresNonAddresses) {
  EXPECT_THAT(ExtractEmails("@handle, a@b, user@localhost, 3 @ 4, x@y.z"), IsEmpty());
  EXPECT_THAT(ExtractEmails(""), IsEmpty());
  EXPECT_THAT(ExtractEmails("\xFF" "me@example.com\xFE"), ElementsAre("me@example.com"));
}

TEST(ExtractUrlsTest, TrimsSentencePunctuationAndDecodesAmp) {
  EXPECT_THAT(ExtractUrls("See https://example.com/a?b=1&amp;c=2. Also (http://x.org/wiki/A_(b)) "
                          "and www.site.net/page, or HTTPS://example.com/a?b=1&c=2!"),
              ElementsAre("https://example.com/a?b=1&c=2", "http://x.org/wiki/A_(b)",
                          "www.site.net/page", "HTTPS://example.com/a?b=1&c=2"));
}

TEST(ExtractUrlsTest, StopsAtQuotesAndUnicodeSpace) {
  EXPECT_THAT(ExtractUrls("<a href='https://a.io/x'>https://b.io/y\xC2\xA0next</a>"),
              ElementsAre("https://a.io/x", "https://b.io/y"));
  EXPECT_THAT(ExtractUrls("no links here: http:// and www."), IsEmpty());
}

TEST(ExtractPhonesTest, FindsValidNumbersInE164) {
  EXPECT_THAT(ExtractPhones("Call (650) 253-0000 or +44 20 7946 0958; fax 650.253.0000. "
                            "Order #12345678, zip 94043."),
              ElementsAre("+16502530000", "+442079460958"));
  EXPECT_THAT(ExtractPhones(""), IsEmpty());
  EXPECT_THAT(ExtractPhones("\xFF\xFE (650) 253-0000 \xC3"), ElementsAre("+16502530000"));
}

TEST(ExtractPhonesTest, ReadsLocalNumbersInTheGivenRegion) {
  EXPECT_THAT(ExtractPhonesIn("Tel. 020 7946 0958", "GB"), ElementsAre("+442079460958"));
  EXPECT_THROW(ExtractPhonesIn("x", "Narnia"), std::invalid_argument);
}

TEST(TokenCountTest, CountsWordsInAnyScript) {
  EXPECT_EQ(TokenCount("Hello, world! It's 3.14 today."), 5);  // It's, 3.14
  EXPECT_EQ(TokenCount("<p>two <b>words</b></p>"), 2);
  EXPECT_EQ(TokenCount("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80"),
            2);  // Привет мир
  EXPECT_GE(TokenCount("\xE6\x88\x91\xE5\x96\x9C\xE6\xAC\xA2\xE5\x90\x83\xE8\x8B\xB9\xE6\x9E\x9C"),
            2);  // 我喜欢吃苹果, segmented by ICU's dictionary
  EXPECT_EQ(TokenCount(""), 0);
  EXPECT_EQ(TokenCount(" ... !!! "), 0);
  EXPECT_EQ(TokenCount("bad \xFF\xFE utf8"), 2);
}

TEST(SimHashTest, NearDuplicatesAreCloseAndOthersFar) {
  const std::string a =
      "The quick brown fox jumps over the lazy dog while the farmer sleeps in the "
      "afternoon sun and the cows graze quietly in the green field near the river";
  const std::string near = "<p>" + a + "!!</p>  THE END";
  const std::string other =
      "Quarterly revenue rose sharply as the company expanded into new markets across "
      "Asia and Europe, according to a statement released on Monday by its board";
  EXPECT_EQ(SimHash(a).size(), 16u);
  EXPECT_EQ(SimHash(a), SimHash(a));
  EXPECT_LE(SimHashDistance(SimHash(a), SimHash(near)), 12);
  EXPECT_GE(SimHashDistance(SimHash(a), SimHash(other)), 16);
  EXPECT_EQ(SimHash(""), "0000000000000000");
  EXPECT_EQ(SimHash(" !! "), "0000000000000000");
  EXPECT_EQ(SimHashDistance(SimHash("The Fox"), SimHash("the   fox")), 0);
}

TEST(SimHashTest, DistanceRejectsNonFingerprints) {
  EXPECT_EQ(SimHashDistance("ffffffffffffffff", "0000000000000000"), 64);
  EXPECT_THROW(SimHashDistance("xyz", "0000000000000000"), std::invalid_argument);
  EXPECT_THROW(SimHashDistance("000000000000000g", "0000000000000000"), std::invalid_argument);
}

}  // namespace
}  // namespace procpool::text

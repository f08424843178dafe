// The text tasks on tricky input: invalid UTF-8, markup, exotic white space,
// huge records, empty fields.

#include "plugins/text/text.h"

#include <utf8proc.h>

#include <cstdlib>
#include <random>
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
  for (const char* tag : {"<div>", "<b>", "<table>", "<span>", "<li>"}) {
    std::string deep;
    for (int i = 0; i < 100000; ++i) deep += tag;
    deep += "bottom";
    EXPECT_EQ(Normalize(deep), "bottom") << tag;
  }
  EXPECT_EQ(Normalize("<p>unclosed <b>bold <i>both"), "unclosed bold both");
  EXPECT_EQ(Normalize("<a href='x'>link</a>text<br>more"), "linktext more");
  EXPECT_EQ(Normalize("<p><a href='x'>link</a>text<br>more</p>"), "linktext more");
}

// ---- The text rule (docs/POOLRUN.md, "The text rule"), case by case ----

// What follows a leading element whose content is not shown stays.
TEST(TextRuleTest, TextAfterALeadingHiddenElementIsKept) {
  EXPECT_EQ(Normalize("<script>var x=1;</script><p>Hello world</p>"), "Hello world");
  EXPECT_EQ(Normalize("<style>p{color:red}</style>Plain words"), "Plain words");
  EXPECT_EQ(Normalize("<noscript>x</noscript><ul><li>one</li><li>two</li></ul>"), "one two");
  EXPECT_EQ(Normalize("<template><p>t</p></template><p>after</p>"), "after");
  EXPECT_EQ(Normalize("<title>T</title>Body text"), "Body text");
  // Table parts after head content: libxml2 leaves them in <head>, the HTML
  // parsing rules (and browsers) show them.
  EXPECT_EQ(Normalize("<script>x</script><td>cell</td>"), "cell");
  EXPECT_EQ(Normalize("<title>t</title><tr><td>c1</td><td>c2</td></tr>"), "c1 c2");
  EXPECT_EQ(Normalize("<head><meta charset=utf-8><th>h</th><caption>c</caption>"), "h c");
  EXPECT_EQ(Normalize("<style>p{}</style>\n<td>a</td>"), "a");
  EXPECT_EQ(Normalize("<script>a</script>"), "");
}

TEST(TextRuleTest, ContentOfElementsABrowserDoesNotShowIsDropped) {
  EXPECT_EQ(Normalize("<html><head><title>Title</title><meta charset=utf-8>"
                      "<link rel=stylesheet href=x.css></head><body>shown</body></html>"),
            "shown");
  EXPECT_EQ(Normalize("a<script>if (a < b && c > d) { x = '</p>'; }</script>b"), "ab");
  EXPECT_EQ(Normalize("<p>a<style>.x{}</style>b</p>"), "ab");
  EXPECT_EQ(Normalize("<p>a <span hidden>secret</span>b</p>"), "a b");
  EXPECT_EQ(Normalize("<div style=\"display: none\">menu</div><p>text</p>"), "text");
  EXPECT_EQ(Normalize("<div style=\"color:red\">red</div>"), "red");
  EXPECT_EQ(Normalize("<p>x<iframe src=a>fallback</iframe>y</p>"), "xy");
  EXPECT_EQ(Normalize("<select><option>one<option>two</select>"), "one two");
  // An unclosed script hides the rest of the input, as in a browser.
  EXPECT_EQ(Normalize("<p>seen</p><script>never closed <p>not seen"), "seen");
}

TEST(TextRuleTest, BlocksBreaksListItemsAndCellsSeparateWords) {
  EXPECT_EQ(Normalize("<div>one</div><div>two</div>"), "one two");
  EXPECT_EQ(Normalize("<p>one</p><p>two</p>"), "one two");
  EXPECT_EQ(Normalize("one<br>two<br/>three"), "one two three");
  EXPECT_EQ(Normalize("<ul><li>a</li><li>b</li></ul><ol><li>c<li>d</ol>"), "a b c d");
  EXPECT_EQ(Normalize("<table><tr><td>1</td><td>2</td></tr><tr><th>3</th><td>4</td></tr></table>"),
            "1 2 3 4");
  EXPECT_EQ(Normalize("<h1>Title</h1>Text<h2>Sub</h2>more"), "Title Text Sub more");
  EXPECT_EQ(Normalize("<dl><dt>term</dt><dd>definition</dd></dl>"), "term definition");
  EXPECT_EQ(Normalize("<pre>code\nline</pre>after"), "code line after");
  EXPECT_EQ(Normalize("a<hr>b"), "a b");
}

TEST(TextRuleTest, InlineElementsDoNotSeparateWords) {
  EXPECT_EQ(Normalize("<p>un<b>believ</b><i>able</i></p>"), "unbelievable");
  EXPECT_EQ(Normalize("<p>x<span>y</span><a href=z>z</a><code>w</code><em>v</em></p>"), "xyzwv");
  // Unknown (custom) elements are inline, as browsers render them.
  EXPECT_EQ(Normalize("<my-widget>a</my-widget><my-widget>b</my-widget>"), "ab");
  EXPECT_EQ(Normalize("<p>H<sub>2</sub>O and E=mc<sup>2</sup></p>"), "H2O and E=mc2");
}

TEST(TextRuleTest, WhiteSpaceCollapsesAndEntitiesDecode) {
  EXPECT_EQ(Normalize("<p>  a \n\t b  </p>   <p>c</p>"), "a b c");
  EXPECT_EQ(Normalize("<p>caf&eacute;&nbsp;&amp;&#32;cr&#xE8;me &lt;3</p>"),
            "caf\xC3\xA9 & cr\xC3\xA8me <3");
  EXPECT_EQ(Normalize("<p>a<!-- comment -->b</p>"), "ab");
}

TEST(TextRuleTest, CharacterReferencesReadAsTheHtmlParsingRulesReadThem) {
  // Upper-case legacy names, HTML5-only names, names without a semicolon.
  EXPECT_EQ(Normalize("<p>&QUOT;hi&QUOT; &AMP; &COPY; &LT;3</p>"),
            "\"hi\" & \xC2\xA9 <3");
  EXPECT_EQ(Normalize("<p>&check; &NewLine;x &half;</p>"), "\xE2\x9C\x93 x 1/2");
  EXPECT_EQ(Normalize("<p>&copy 2024 &notit; &amp x</p>"), "\xC2\xA9 2024 \xC2\xACit; & x");
  // Numbers: Windows-1252 for 0x80-0x9F, U+FFFD for what is no character.
  EXPECT_EQ(Normalize("<p>&#x80;5 &#150; &#0;|&#x110000;|&#xD800;</p>"),
            "\xE2\x82\xAC" "5 - \xEF\xBF\xBD|\xEF\xBF\xBD|\xEF\xBF\xBD");
  EXPECT_EQ(Normalize("<p>&#233 &#xE9c &#x4E2D;</p>"), "\xC3\xA9 \xE0\xBA\x9C \xE4\xB8\xAD");
  // Not references.
  EXPECT_EQ(Normalize("<p>AT&T &# &#x &xyz; &;</p>"), "AT&T &# &#x &xyz; &;");
}

TEST(TextRuleTest, FragmentsAndBrokenMarkupReadAsABrowserShowsThem) {
  EXPECT_EQ(Normalize("Just text with <b>bold</b> in it"), "Just text with bold in it");
  EXPECT_EQ(Normalize("</p>stray end tags</div></span> are ignored"),
            "stray end tags are ignored");
  EXPECT_EQ(Normalize("<p>a<p>b<p>c"), "a b c");
  EXPECT_EQ(Normalize("<li>one<li>two"), "one two");
  EXPECT_EQ(Normalize("<td>cell</td>outside"), "cell outside");
  EXPECT_EQ(Normalize("<body><p>in body</p></body>after body"), "in body after body");
  EXPECT_EQ(Normalize(std::string("<p>nul\0byte</p>\0<p>tail</p>", 27)), "nulbyte tail");
  EXPECT_EQ(Normalize("<meta charset=iso-8859-1><p>caf\xC3\xA9</p>"), "caf\xC3\xA9");
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

// Normalize's steps 3-5 done the plain way: utf8proc over the whole text,
// then white space collapsed. Normalize takes a faster path on ASCII; it
// must give the same result.
std::string NormalizeWholeText(const std::string& text, bool fold) {
  int options = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_IGNORE |
                UTF8PROC_STRIPCC | UTF8PROC_LUMP;
  if (fold) options |= UTF8PROC_CASEFOLD;
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                   static_cast<utf8proc_option_t>(options));
  if (n < 0) return "<utf8proc error>";
  std::string out;
  bool pending = false;
  const utf8proc_uint8_t* p = mapped;
  utf8proc_ssize_t left = n;
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p, left, &cp);
    const utf8proc_category_t cat = utf8proc_category(cp);
    const bool space = cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0x85 ||
                       cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
                       cat == UTF8PROC_CATEGORY_ZP;
    if (space) {
      pending = !out.empty();
    } else {
      if (pending) out.push_back(' ');
      pending = false;
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    }
    p += len;
    left -= len;
  }
  std::free(mapped);
  return out;
}

TEST(NormalizeTest, AsciiFastPathAgreesWithUtf8procOnTheWholeText) {
  // Pieces that interact across ASCII: combining marks after ASCII letters,
  // Hangul jamo, ligatures, controls, ignorables, exotic spaces, case.
  const std::vector<std::string> pieces = {
      "a", "e", "Z", " ", "\t", "\n", "\x01", "\x7F", ".", "1", "\xCC\x81" /* U+0301 */,
      "\xCC\xA3" /* U+0323 */, "\xE1\x84\x80" /* U+1100 */, "\xE1\x85\xA1" /* U+1161 */,
      "\xEF\xAC\x81" /* U+FB01 */, "\xC2\xA0", "\xE2\x80\x8B", "\xC3\x89", "\xE2\x80\x83",
      "\xEF\xBC\xA1", "\xC2\xAD", "\xCE\xA3", "\xC3\x9F", "\xE2\x91\xA0", "\xC2\x85"};
  std::mt19937 rng(15);
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    const int len = static_cast<int>(rng() % 12);
    for (int k = 0; k < len; ++k) text += pieces[rng() % pieces.size()];
    for (bool fold : {false, true}) {
      const std::string got = fold ? NormalizeFold(text) : Normalize(text);
      ASSERT_EQ(got, NormalizeWholeText(text, fold)) << "fold=" << fold << " text=" << text;
    }
  }
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

// Normalize normalizes a page's text while it is extracted, a piece at a
// time (cut where only ASCII is on either side); the result is the same as
// normalizing the whole extracted text at once.
TEST(NormalizeTest, HugePageIsNormalizedAsItsWholeText) {
  const std::vector<std::string> pieces = {
      "a", "e", "Z", " ", "\t", "\n", "\x01", ".", "1", "\xCC\x81" /* U+0301 */,
      "\xE1\x84\x80" /* U+1100 */, "\xE1\x85\xA1" /* U+1161 */, "\xEF\xAC\x81" /* U+FB01 */,
      "\xC2\xA0", "\xE2\x80\x8B", "\xC3\x89", "\xEF\xBC\xA1", "\xC2\xAD", "\xCE\xA3",
      "\xC3\x9F", "\xE2\x91\xA0", "<p>", "</p>", "<b>", "</b>", "<br>", "<div>",
      "<script>x y</script>", "&amp;", "&eacute;", "&#x301;"};
  std::mt19937 rng(6);
  std::string html;
  while (html.size() < (size_t{3} << 20)) {
    const uint32_t r = rng() % 1000;
    if (r == 0) {
      // A long run with no two ASCII characters in a row: no place to cut.
      for (int k = 0; k < 40000; ++k) html += k % 2 ? "\xE4\xB8\x80" : "\xCC\x81 ";
    } else {
      html += pieces[r % pieces.size()];
    }
  }
  const std::string text = StripHtml(html);
  ASSERT_GT(text.size(), size_t{1} << 20);
  for (bool fold : {false, true}) {
    const std::string got = fold ? NormalizeFold(html) : Normalize(html);
    ASSERT_TRUE(got == NormalizeWholeText(text, fold)) << "fold=" << fold;
  }
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

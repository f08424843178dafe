// Cleaning and extraction of web-scraped text: the logic of libtext.so.
//
// Every function takes arbitrary bytes. Invalid UTF-8 never fails a call:
// each invalid sequence reads as U+FFFD (the replacement character), so
// every string a function returns is valid UTF-8. Empty input gives empty
// output (an empty string, an empty list, 0). Records of any size work; the
// cost is linear in the input.
//
// Unicode work is done by Debian's libraries, not by tables of our own:
// utf8proc (normalization, case folding, character classes), libxml2 (HTML
// tags and entities), ICU (word boundaries), RE2 (e-mail and URL patterns)
// and libphonenumber (phone numbers).
//
// Thread safety: all functions may be called from any number of threads.

#ifndef PROCPOOL_PLUGINS_TEXT_TEXT_H_
#define PROCPOOL_PLUGINS_TEXT_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/task.h"

namespace procpool::text {

// `s` with each invalid UTF-8 sequence (stray continuation bytes, truncated
// or overlong sequences, surrogates, code points above U+10FFFF) replaced by
// U+FFFD.
std::string FixUtf8(std::string_view s);

// The text a browser shows for an HTML fragment or document, the way its
// `innerText` gives it (docs/POOLRUN.md, "The text rule"):
//  - The markup is read by libxml2's HTML parser in a streaming pass (no
//    tree), with <html>, <head> and <body> implied, so a fragment that
//    starts with <script> or <style> keeps the text after it. Entities
//    (&amp;, &eacute;, &#233;, &#xE9;) are decoded; comments are dropped.
//  - Content a browser does not render is dropped: <title>, <script>,
//    <style>, <noscript>, <template>, <iframe>, <noembed>,
//    <noframes>, <datalist>, <rp>, <area>, <base>, <link>, <meta>, <param>,
//    and any element with a `hidden` attribute or a `style` that sets
//    `display: none`.
//  - Block-level elements (p, div, h1-h6, li, td, th, tr, table, pre, ...),
//    <br> and <hr> separate the text before and after them by a space;
//    inline elements (a, b, i, span, code, sub, custom elements...) do not.
// Text without markup comes back unchanged. Input is UTF-8 (fixed as by
// FixUtf8 first; NUL bytes are dropped, as the HTML parsing rules drop them
// from text). The result's white space is not collapsed (Normalize does).
std::string StripHtml(std::string_view s);

// Task "normalize": clean text for indexing or training.
//  1. invalid UTF-8 fixed (FixUtf8);
//  2. if the text holds markup (a tag, a comment or an entity), the text a
//     browser shows of it (StripHtml);
//  3. Unicode NFKC ("ﬁ" -> "fi", full-width letters -> ASCII, "①" -> "1"),
//     then utf8proc's lumping: dashes and the minus sign become "-", curly
//     single quotes "'", and a few look-alike symbols their ASCII forms;
//  4. control characters and default-ignorable characters (zero-width
//     space, soft hyphen, BOM, bidi marks) removed; line breaks and tabs
//     become spaces;
//  5. runs of Unicode white space (U+00A0, U+2003, U+3000, ...) collapsed to
//     one ASCII space, and leading/trailing space trimmed.
//
// The task reads its argument in place (std::string_view) and holds neither
// a copy of it nor the whole visible text: its memory beyond the argument
// is about the size of its result.
std::string Normalize(std::string_view s);

// Task "normalize_fold": Normalize, then Unicode case folding ("Straße" ->
// "strasse", "ΣΊΣΥΦΟΣ" -> "σίσυφοσ"), for case-insensitive comparison.
std::string NormalizeFold(std::string_view s);

// Task "extract_emails": e-mail addresses found anywhere in the record,
// including HTML attributes (href="mailto:..."), in order of first
// appearance, without duplicates (addresses compared case-insensitively;
// the first spelling is kept).
std::vector<std::string> ExtractEmails(const std::string& s);

// Task "extract_urls": http(s)/ftp URLs and bare "www." addresses, in order
// of first appearance, without duplicates. Trailing punctuation that ends a
// sentence ("see https://x.org/a.") and an unbalanced closing parenthesis
// are not part of the URL; "&amp;" (from HTML attributes) reads as "&".
std::vector<std::string> ExtractUrls(const std::string& s);

// Task "extract_phones": phone numbers found by libphonenumber (valid
// numbers only; numbers without a country code are read as US numbers), in
// E.164 form ("+16502530000"), in order of first appearance, without
// duplicates.
std::vector<std::string> ExtractPhones(const std::string& s);

// Task "extract_phones_in": as ExtractPhones, reading numbers without a
// country code as numbers of `region` (ISO 3166 code: "GB", "DE", "FR"...).
// Throws std::invalid_argument for an unknown region.
std::vector<std::string> ExtractPhonesIn(const std::string& s,
                                         const std::string& region);

// Task "token_count": the number of words and numbers in the text once HTML
// is stripped, by Unicode word boundaries (ICU, UAX #29 with dictionaries for
// Chinese, Japanese, Thai, ...), so it works without knowing the language.
// Punctuation and white space are not tokens.
int TokenCount(const std::string& s);

// Task "simhash": a 64-bit SimHash of the text as 16 lowercase hex digits.
// Built from 3-word shingles of the normalized, case-folded words (so markup,
// case, spacing and punctuation do not matter). Near-duplicate texts get
// fingerprints a few bits apart; unrelated texts differ in about 32 bits.
// Text without words: "0000000000000000".
std::string SimHash(const std::string& s);

// Task "simhash_distance": the number of differing bits (0-64) between two
// fingerprints from SimHash. Throws std::invalid_argument if either is not
// 16 hex digits.
int SimHashDistance(const std::string& a, const std::string& b);

// Typed references, for callers that submit these tasks from C++.
inline constexpr TaskRef<std::string(std::string)> kNormalize{"normalize"};
inline constexpr TaskRef<std::string(std::string)> kNormalizeFold{"normalize_fold"};
inline constexpr TaskRef<std::vector<std::string>(std::string)> kExtractEmails{
    "extract_emails"};
inline constexpr TaskRef<std::vector<std::string>(std::string)> kExtractUrls{
    "extract_urls"};
inline constexpr TaskRef<std::vector<std::string>(std::string)> kExtractPhones{
    "extract_phones"};
inline constexpr TaskRef<std::vector<std::string>(std::string, std::string)>
    kExtractPhonesIn{"extract_phones_in"};
inline constexpr TaskRef<int(std::string)> kTokenCount{"token_count"};
inline constexpr TaskRef<std::string(std::string)> kSimHash{"simhash"};
inline constexpr TaskRef<int(std::string, std::string)> kSimHashDistance{
    "simhash_distance"};

}  // namespace procpool::text

#endif  // PROCPOOL_PLUGINS_TEXT_TEXT_H_

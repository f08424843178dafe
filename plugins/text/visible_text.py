"""The text rule of the text plugin's `normalize`, in plain Python.

A small, independent implementation of the rule stated in docs/POOLRUN.md
("The text rule"), on Python's own `html.parser` and `unicodedata`: the
fidelity test compares `normalize` with it on real pages, and
//bench:compare runs the same job with it under `multiprocessing.Pool`.

    visible_text(html)  the words a browser shows, blocks separated
    normalize_text(t)   the steps after it (below)
    normalize(text)     visible_text if the text holds markup, then NFKC,
                        utf8proc's lumping of dashes and quotes, controls
                        and default-ignorable characters removed, white
                        space collapsed to single spaces
"""

import html.parser
import re
import unicodedata

# Content a browser does not render (the HTML standard's rendering section
# gives these `display: none`, or never shows their content). <head> is
# hidden too, but the HTML parsing rules keep nothing else in it: content
# that html.parser would leave there ("<head><td>cell") is shown.
HIDDEN = frozenset("""
    script style noscript template title area base basefont datalist link
    meta noembed noframes param rp iframe
""".split())

# Laid out as blocks, list items, table parts or line breaks: they separate
# the text before and after them. Every other element is inline.
BLOCK = frozenset("""
    address article aside blockquote body br caption center col colgroup dd
    details dialog dir div dl dt fieldset figcaption figure footer form frame
    frameset h1 h2 h3 h4 h5 h6 header hgroup hr html legend li listing main
    menu nav ol optgroup option p plaintext pre search section summary table
    tbody td tfoot th thead tr ul xmp
""".split())

# Elements that never have content or an end tag.
VOID = frozenset("""
    area base basefont bgsound br col embed frame hr img input keygen link
    meta param source track wbr
""".split())

# A start tag of one of these closes an open element of the same kind that
# is the current one (<li>a<li>b, <p>a<p>b, <td>1<td>2).
SELF_CLOSING_SIBLINGS = frozenset("li dt dd option p tr td th".split())

_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.I)


class _Extractor(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.stack = []  # [tag, hidden]
        self.hidden = 0  # hidden entries on the stack

    def _separate(self):
        self.out.append(" ")

    def _pop(self):
        tag, hidden = self.stack.pop()
        if hidden:
            self.hidden -= 1
        elif not self.hidden and tag in BLOCK:
            self._separate()

    def handle_starttag(self, tag, attrs):
        if self.stack and tag in SELF_CLOSING_SIBLINGS and self.stack[-1][0] == tag:
            self._pop()
        elif self.stack and tag in BLOCK and self.stack[-1][0] == "p":
            self._pop()
        hidden = tag in HIDDEN or any(
            name == "hidden" or (name == "style" and value and _DISPLAY_NONE.search(value))
            for name, value in attrs)
        if not self.hidden and not hidden and tag in BLOCK:
            self._separate()
        if tag in VOID:
            return
        self.stack.append([tag, hidden])
        if hidden:
            self.hidden += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "br" and not self.hidden:
            self._separate()  # </br> is a <br>
            return
        if not any(t == tag for t, _ in self.stack):
            return  # a stray end tag
        while self.stack:
            if self.stack[-1][0] == tag:
                self._pop()
                return
            self._pop()

    def handle_data(self, data):
        if not self.hidden:
            self.out.append(data)


def visible_text(markup):
    """The text a browser shows for `markup`, separators as spaces."""
    p = _Extractor()
    p.feed(markup)
    p.close()
    return "".join(p.out)


_MARKUP = re.compile(r"<[A-Za-z/!?]|&(?:[A-Za-z0-9]{1,32}|#[A-Za-z0-9]{1,31});")


def looks_like_markup(text):
    return _MARKUP.search(text) is not None


def _dropped(ch, cat):
    # Controls and default-ignorable characters (format characters, soft
    # hyphen, variation selectors, Hangul fillers, ...).
    if cat in ("Cc", "Cf"):
        return True
    o = ord(ch)
    return (o in (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0)
            or 0x180B <= o <= 0x180F or 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF)


# utf8proc's "lump" mapping, which normalize applies after NFKC.
_LUMP = {0x2018: "'", 0x2019: "'", 0x02BC: "'", 0x02C8: "'", 0x2212: "-", 0x2044: "/",
         0x2215: "/", 0x2236: ":", 0x2039: "<", 0x2329: "<", 0x3008: "<", 0x203A: ">",
         0x232A: ">", 0x3009: ">", 0x2216: "\\", 0x02C4: "^", 0x02C6: "^", 0x2038: "^",
         0x2303: "^", 0x02CD: "_", 0x0332: "_", 0x2017: "_", 0x02CB: "`", 0x2223: "|",
         0x223C: "~"}


def _mapping(ch):
    """What normalize_text makes of one character (after NFKC)."""
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in ("Zs", "Zl", "Zp"):
        return " " if ch in "\t\n\x0b\x0c\r\x85" or not cat.startswith("C") else None
    if cat == "Pd":
        return "-"
    if _dropped(ch, cat):
        return None
    return _LUMP.get(ord(ch), ch)


_TABLE = {}  # code point -> replacement (None: removed), filled as met


def normalize_text(text):
    """normalize's steps after the markup: NFKC, lumping, controls and
    default-ignorable characters removed, white space collapsed."""
    text = unicodedata.normalize("NFKC", text)
    for ch in set(text):
        if ord(ch) not in _TABLE:
            _TABLE[ord(ch)] = _mapping(ch)
    return " ".join(text.translate(_TABLE).split())


def normalize(text):
    """`normalize` of the text plugin, by the same rule."""
    if looks_like_markup(text):
        text = visible_text(text)
    return normalize_text(text)

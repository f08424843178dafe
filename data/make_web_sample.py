#!/usr/bin/env python3
"""Writes a deterministic sample of noisy, web-scraped text as JSON Lines.

Each record looks like a page a crawler fetched:
  {"id": 17, "url": "...", "lang": "de", "country": "DE", "fetched": "...",
   "title": "...", "text": "<div><p>... HTML ...</p></div>"}

The text mixes languages and scripts (Latin, Cyrillic, Greek, Arabic, CJK),
HTML tags, comments, scripts and entities, odd Unicode white space,
zero-width and control characters, ligatures and full-width letters,
e-mail addresses (some in mailto: links), URLs and phone numbers. About 5%
of the records are exact duplicates of an earlier text and 5% near
duplicates; a few are huge (hundreds of KB) or empty. About 0.2% of the
lines are malformed on purpose (truncated JSON, invalid UTF-8, a missing or
null "text" field), so the dead-letter path has something to show.

Same arguments, same bytes: the generator uses its own seeded PRNG.

Usage: make_web_sample.py [--records N] [--seed S] OUTPUT
"""

import argparse
import json
import random

WORDS = {
    "en": ("the data pipeline model training cleaning report customer market price "
           "growth city council weather football season music festival research "
           "university student health hospital energy solar policy election vote "
           "software release security update privacy cloud server network").split(),
    "de": ("die Daten Verarbeitung Straße Größe Bürger Stadt Wetter Fußball Saison "
           "Musik Forschung Universität Gesundheit Energie Wahl Sicherheit Übersicht "
           "Ärger Bäckerei Käse Brötchen").split(),
    "fr": ("les données traitement café crème élève été hôpital énergie élection "
           "sécurité mise à jour réseau façade garçon naïve").split(),
    "es": ("los datos ciudad niño señor año mañana música energía elección "
           "seguridad actualización red").split(),
    "ru": ("данные обработка город погода футбол музыка исследование университет "
           "здоровье энергия выборы безопасность").split(),
    "el": "δεδομένα πόλη καιρός μουσική έρευνα πανεπιστήμιο υγεία ενέργεια".split(),
    "ar": "البيانات المدينة الطقس كرة القدم الموسيقى البحث الجامعة الصحة".split(),
    "zh": "数据 处理 城市 天气 足球 音乐 研究 大学 健康 能源 选举 安全 更新".split(),
    "ja": "データ 処理 都市 天気 サッカー 音楽 研究 大学 健康 エネルギー 選挙".split(),
}
COUNTRIES = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "ru": "RU", "el": "GR",
             "ar": "EG", "zh": "CN", "ja": "JP"}
DOMAINS = ["example.com", "example.org", "news.example.net", "blog.example.io",
           "shop.example.co.uk", "daten.example.de", "exemple.fr"]
FIRST = ["anna", "bob", "carla", "dmitri", "eve", "farid", "grace", "hiro", "ines", "jan"]
LAST = ["smith", "mueller", "dubois", "garcia", "ivanov", "tanaka", "chen", "haddad"]
NOISE = ["\u00a0", "\u2003", "\u3000", "\u200b", "\u00ad", "\t", "\n", "\r\n", "\ufeff",
         "\u0007"]
FANCY = ["\ufb01nance", "\uff21\uff22\uff23", "\u2460", "caf\u0065\u0301", "\u201cquoted\u201d",
         "\u2014"]
ENTITIES = ["&amp;", "&nbsp;", "&eacute;", "&#233;", "&#x263A;", "&lt;3", "&quot;hi&quot;",
            "&copy;"]


def phone(rng):
    kind = rng.random()
    if kind < 0.6:
        area = rng.choice([212, 312, 415, 512, 617, 650, 206, 303])
        ex = rng.randrange(200, 1000)
        if ex == 555:
            ex = 556
        line = rng.randrange(0, 10000)
        fmt = rng.choice(["({a}) {e}-{l:04d}", "{a}-{e}-{l:04d}", "{a}.{e}.{l:04d}",
                          "+1 {a} {e} {l:04d}"])
        return fmt.format(a=area, e=ex, l=line)
    if kind < 0.8:
        return "+44 20 7946 0%03d" % rng.randrange(0, 1000)
    return "+49 30 %d" % rng.randrange(2000000, 9999999)


def email(rng):
    name = rng.choice(FIRST) + rng.choice([".", "_", ""]) + rng.choice(LAST)
    if rng.random() < 0.2:
        name += "+news"
    return name + "@" + rng.choice(DOMAINS)


def url(rng):
    path = "/".join(rng.choice(WORDS["en"]) for _ in range(rng.randrange(1, 4)))
    u = "https://%s/%s" % (rng.choice(DOMAINS), path)
    if rng.random() < 0.3:
        u += "?id=%d&amp;ref=home" % rng.randrange(1000)
    return u


def sentence(rng, lang):
    words = [rng.choice(WORDS[lang]) for _ in range(rng.randrange(5, 16))]
    sep = "" if lang in ("zh", "ja") else " "
    s = sep.join(words)
    return s[0].upper() + s[1:] + ("。" if lang in ("zh", "ja") else ".")


def html_text(rng, lang):
    parts = []
    for _ in range(rng.randrange(1, 6)):
        s = sentence(rng, lang)
        r = rng.random()
        if r < 0.15:
            s += " Contact " + email(rng) + "."
        elif r < 0.25:
            e = email(rng)
            s += ' <a href="mailto:%s">%s</a>' % (e, e.split("@")[0])
        elif r < 0.4:
            s += " More at " + url(rng) + "."
        elif r < 0.5:
            s += ' <a href="%s">link</a>' % url(rng)
        elif r < 0.62:
            s += " Call " + phone(rng) + "."
        if rng.random() < 0.2:
            s += rng.choice(NOISE) + rng.choice(FANCY)
        if rng.random() < 0.2:
            s += " " + rng.choice(ENTITIES) + " "
        tag = rng.choice(["p", "div", "li", "span", "h2", "td"])
        parts.append("<%s>%s</%s>" % (tag, s, tag) if rng.random() < 0.8 else s)
    if rng.random() < 0.1:
        parts.insert(0, "<script>var tracking = '<b>not text</b>';</script>")
    if rng.random() < 0.1:
        parts.append("<!-- generated by cms -->")
    if rng.random() < 0.1:
        parts.append("<style>p { color: red }</style>")
    joiner = rng.choice(["", "\n", "<br>", " "])
    return joiner.join(parts)


def near_duplicate(rng, text):
    edits = [lambda t: t.replace("<p>", "<p class=\"x\">", 1),
             lambda t: t + " ",
             lambda t: t.upper(),
             lambda t: t.replace(".", "!", 1),
             lambda t: "<div>" + t + "</div>",
             lambda t: t.replace(" ", "  ", 2)]
    return rng.choice(edits)(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("output")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    langs = list(WORDS)
    weights = [40, 12, 10, 8, 8, 4, 4, 8, 6]
    texts = []
    with open(args.output, "wb") as out:
        for i in range(args.records):
            r = rng.random()
            if r < 0.002:
                # Malformed on purpose.
                kind = rng.randrange(4)
                if kind == 0:
                    line = b'{"id": %d, "text": "truncated record' % i
                elif kind == 1:
                    line = b'{"id": %d, "text": "bad bytes \xff\xfe here"}' % i
                elif kind == 2:
                    line = json.dumps({"id": i, "title": "no text field"}).encode()
                else:
                    line = json.dumps({"id": i, "text": None}).encode()
                out.write(line + b"\n")
                continue
            lang = rng.choices(langs, weights)[0]
            if texts and r < 0.05:
                text = rng.choice(texts)
            elif texts and r < 0.10:
                text = near_duplicate(rng, rng.choice(texts))
            elif r < 0.1005:
                text = html_text(rng, lang) * 400  # a huge page
            elif r < 0.102:
                text = ""
            else:
                text = html_text(rng, lang)
            if len(texts) < 5000 and len(text) < 4000:
                texts.append(text)
            record = {
                "id": i,
                "url": "https://%s/%s/%d" % (rng.choice(DOMAINS), lang, i),
                "lang": lang,
                "country": COUNTRIES[lang],
                "fetched": "2024-%02d-%02dT%02d:%02d:%02dZ" % (
                    rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24),
                    rng.randrange(60), rng.randrange(60)),
                "title": sentence(rng, lang)[:60],
                "text": text,
            }
            out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")


if __name__ == "__main__":
    main()

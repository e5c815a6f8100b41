"""Quality filters (filters/quality.py) and their text helpers (filters/text.py).

Each filter gets keep and drop cases on realistic texts written for these tests, asserting the
exact rule; the n-gram measures are checked against a slow, obviously-correct reference.
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter

import pytest

from filters.base import Verdict
from filters.quality import (
    FILTERS,
    C4Config,
    C4Filter,
    FilterChain,
    FineWebConfig,
    FineWebFilter,
    GopherQuality,
    GopherQualityConfig,
    GopherRepetition,
    GopherRepetitionConfig,
)
from filters.text import (
    count_line_breaks,
    count_sentences,
    covered_chars,
    is_spaceless,
    ngram_repetition,
    ngrams,
    normalize_lang,
    prefix_lengths,
    split_lines,
    split_paragraphs,
    split_words,
)

# ---------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------

ARTICLE = """How a Sourdough Starter Works

A sourdough starter is a living culture of wild yeast and lactic acid bacteria that bakers keep in a jar of flour and water. Unlike commercial yeast, which is a single strain grown in a factory, a starter is a small ecosystem that changes with the flour, the temperature of the kitchen and the schedule of feeding.

When flour and water are first mixed, the microbes that were already present on the grain begin to wake up. During the first few days the jar often smells strange, because many different organisms compete for the same sugars. After about a week the mixture becomes more acidic, and only the hardy species that tolerate acid continue to grow.

The bacteria produce lactic and acetic acid, which give the bread its tangy flavour and help it keep longer. The yeast produces carbon dioxide, and those bubbles are what make the dough rise. A healthy starter doubles in volume within a few hours of being fed.

Feeding is simple: discard most of the starter, then add fresh flour and water in equal weights. Bakers who bake every day keep the jar on the counter and feed it twice a day. Those who bake once a week can store it in the refrigerator, where the cold slows the microbes down.

If the starter develops a layer of grey liquid on top, it is hungry rather than spoiled. Pour the liquid off, feed the culture, and it will usually recover within a day. A pink or orange tint, on the other hand, is a sign of contamination, and the safest choice is to begin again with a clean jar.
"""

ARTICLE_PARAGRAPHS = [p for p in ARTICLE.split("\n\n") if p.strip()]

# A web page around the same article: cookie banner, JavaScript notice, navigation, footer.
WEB_PAGE = (
    "Home\nRecipes\nBread\nAbout us\n"
    "Please enable JavaScript in your browser to see the comments.\n"
    "This website uses cookies to give you the best experience.\n"
    + ARTICLE
    + "Share\nPrint\n"
    "By continuing to browse you agree to our Terms of Use and Privacy Policy.\n"
    "Copyright 2024 The Home Baker. All rights reserved.\n"
)

SPAM = "\n".join(
    ["Cheap designer watches for sale, free shipping worldwide!"] * 12
    + ["Best replica watches online, order today and save big!"] * 12
    + ["Contact us now for wholesale prices on all models."]
)

MENU = """Home
Products
Laptops
Desktops
Monitors
Keyboards and mice
Printers
Support
Contact
Store locator
Gift cards
Careers at Example Electronics
Press
Sign in
Create an account
Shopping cart (0 items)
"""

LOREM = ARTICLE_PARAGRAPHS[1] + "\n\n" + (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat.\n\n"
) + ARTICLE_PARAGRAPHS[2]

JS_PAGE = """var analyticsQueue = window.analyticsQueue || [];
function trackEvent(category, action, label) {
    analyticsQueue.push({category: category, action: action, label: label});
    if (window.console && window.console.log) { console.log("tracked " + action); }
}
document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll(".buy-button");
    for (var i = 0; i < buttons.length; i++) {
        buttons[i].addEventListener("click", function (event) { trackEvent("shop", "click", event.target.id); });
    }
    var consentBanner = document.getElementById("consent-banner");
    if (consentBanner && localStorage.getItem("consentAccepted") === "true") {
        consentBanner.parentNode.removeChild(consentBanner);
    }
    window.setTimeout(function () { document.body.classList.add("page-ready"); }, 250);
    var searchInput = document.querySelector("#search");
    searchInput.addEventListener("input", function () { filterProducts(searchInput.value.trim().toLowerCase()); });
});
"""

PY_CODE = '''import json
import sys


def load_records(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main(argv):
    records = load_records(argv[1])
    totals = {}
    for record in records:
        key = record.get("category", "unknown")
        totals[key] = totals.get(key, 0) + record.get("amount", 0)
    for key, value in sorted(totals.items()):
        print(f"{key}\\t{value:.2f}")
    return 0


def summarize(values):
    count = len(values)
    if count == 0:
        return None
    mean = sum(values) / count
    return {"count": count, "mean": mean, "max": max(values), "min": min(values)}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''

ALL_CAPS = (
    "URGENT NOTICE TO ALL RESIDENTS OF THE NORTH DISTRICT\n\n"
    "THE CITY WATER DEPARTMENT WILL SHUT OFF THE MAIN SUPPLY ON TUESDAY MORNING TO REPLACE A BROKEN VALVE "
    "NEAR THE OLD MILL BRIDGE. WORK WILL BEGIN AT SEVEN AND SHOULD BE FINISHED BY NOON. RESIDENTS ARE ASKED "
    "TO STORE ENOUGH WATER FOR COOKING AND DRINKING BEFORE THE SHUTOFF. AFTER THE SUPPLY RETURNS, THE WATER "
    "MAY LOOK CLOUDY FOR A FEW HOURS; LET THE TAP RUN UNTIL IT IS CLEAR. QUESTIONS CAN BE SENT TO THE "
    "DEPARTMENT OFFICE WITH YOUR STREET ADDRESS.\n"
)

CHINESE = """西湖位于浙江省杭州市的西部，是中国最著名的淡水湖之一。
湖的面积大约六点五平方公里，三面环山，一面临城，自古以来就吸引了无数诗人和画家。
唐代的白居易和宋代的苏轼都曾在杭州做官，他们主持修筑的两条长堤至今仍是游客散步的好去处。
春天的时候，堤上的桃花和柳树一起开放，远远看去像一幅淡淡的水墨画。
夏天湖面上开满荷花，傍晚的凉风吹过，空气里带着一股清香。
到了秋天，满觉陇一带的桂花盛开，很多本地人会专门去那里喝茶赏花。
冬天如果遇到下雪，断桥上的积雪在阳光下慢慢融化，这就是有名的“断桥残雪”。
二〇一一年，西湖文化景观被列入世界遗产名录，每年接待的中外游客超过两千万人次。
"""

JAPANESE = """京都は千年以上にわたって日本の都として栄えた町で、今でも多くの寺や神社が残っている。
春になると、鴨川沿いの桜並木や円山公園のしだれ桜を見るために、国内外から大勢の観光客が訪れる。
秋は紅葉の季節で、東福寺や永観堂の庭園が赤や黄色に染まり、夜にはライトアップも行われる。
町の中心部には碁盤の目のように通りが走っており、住所の表し方も独特である。
錦市場では漬物や湯葉、京野菜などを売る店が細い通りに並び、食べ歩きを楽しむ人でにぎわっている。
最近は外国人旅行者の増加に伴い、混雑を避けるために早朝の拝観を勧める寺も増えてきた。
"""

THAI = """กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย และเป็นศูนย์กลางทางเศรษฐกิจ การเมือง และวัฒนธรรมของประเทศ
แม่น้ำเจ้าพระยาไหลผ่านใจกลางเมือง ในอดีตผู้คนใช้คลองเป็นเส้นทางคมนาคมหลัก จนชาวต่างชาติเรียกเมืองนี้ว่าเวนิสตะวันออก
วัดพระแก้วและพระบรมมหาราชวังเป็นสถานที่ท่องเที่ยวที่มีชื่อเสียงที่สุด นักท่องเที่ยวจำนวนมากเดินทางมาชมทุกวัน
อาหารริมทางของกรุงเทพฯ ได้รับความนิยมไปทั่วโลก เช่น ผัดไทย ส้มตำ ข้าวมันไก่ และก๋วยเตี๋ยวเรือ
ฤดูร้อนเริ่มตั้งแต่เดือนมีนาคมถึงเดือนพฤษภาคม อากาศร้อนและชื้นมาก ส่วนฤดูฝนมักมีพายุในช่วงบ่าย
ระบบขนส่งมวลชน เช่น รถไฟฟ้าบีทีเอส และรถไฟฟ้าใต้ดิน ช่วยให้การเดินทางสะดวกขึ้น แต่การจราจรบนถนนยังคงติดขัดในชั่วโมงเร่งด่วน
ตลาดนัดจตุจักรเปิดเฉพาะวันเสาร์และวันอาทิตย์ มีร้านค้ามากกว่าหนึ่งหมื่นห้าพันร้าน ขายทั้งเสื้อผ้า ต้นไม้ ของเก่า และสัตว์เลี้ยง
ในเทศกาลสงกรานต์ช่วงกลางเดือนเมษายน ผู้คนออกมาเล่นสาดน้ำกันตามถนน และเดินทางกลับบ้านเกิดเพื่อไปรดน้ำขอพรจากผู้ใหญ่
ส่วนในคืนลอยกระทง ผู้คนนำกระทงที่ทำจากใบตองและดอกไม้ไปลอยในแม่น้ำ เพื่อขอขมาพระแม่คงคา
ปัจจุบันกรุงเทพฯ มีประชากรมากกว่าสิบล้านคน หากนับรวมผู้ที่อาศัยอยู่ในจังหวัดปริมณฑล
ย่านเยาวราชเป็นไชน่าทาวน์ที่เก่าแก่ที่สุดแห่งหนึ่ง ในตอนกลางคืน ถนนทั้งสายจะเต็มไปด้วยร้านอาหาร แสงไฟ และผู้คน
สวนลุมพินีเป็นสวนสาธารณะขนาดใหญ่ใจกลางเมือง ในตอนเช้า ผู้คนมาวิ่งออกกำลังกาย รำไทเก๊ก และเต้นแอโรบิก
นอกจากนี้ ยังมีพิพิธภัณฑ์ หอศิลป์ และโรงละครอีกมากมาย ที่เปิดให้นักท่องเที่ยวเข้าชมได้ตลอดทั้งปี
"""

GERMAN = (
    "Der Rhein entspringt in den Schweizer Alpen und fließt durch mehrere Länder bis zur Nordsee. "
    "Über viele Jahrhunderte war er einer der wichtigsten Handelswege Europas, und an seinen Ufern "
    "entstanden Städte wie Basel, Straßburg, Köln und Düsseldorf. Zwischen Bingen und Koblenz "
    "schneidet sich der Fluss durch ein enges Tal, das wegen seiner Burgen und Weinberge zum "
    "Welterbe gehört. Heute transportieren Schiffe vor allem Kohle, Getreide und Container, während "
    "im Sommer zahlreiche Ausflugsboote Touristen zu den bekannten Aussichtspunkten bringen.\n"
)

# ---------------------------------------------------------------------------------------
# text helpers
# ---------------------------------------------------------------------------------------


def test_split_words_spaced_strips_punctuation() -> None:
    text = '  "Hello," she said — it\'s 5 p.m. ... (really) #tag x)(y --\n'
    assert split_words(text, "en") == ["Hello", "she", "said", "it's", "5", "p.m", "really", "tag", "x)(y"]
    assert split_words("", "en") == []
    assert split_words("   \n\t ", None) == []


def test_split_words_chinese_counts_characters_and_latin_runs() -> None:
    assert split_words("我用Python 3.11写代码，很快。", "zh") == [
        "我", "用", "Python", "3.11", "写", "代", "码", "很", "快",
    ]
    # the same result without lang: the script decides
    assert split_words("我用Python 3.11写代码，很快。", None) == split_words("我用Python 3.11写代码，很快。", "zh")


def test_split_words_japanese_kana_and_katakana() -> None:
    assert split_words("東京はコーヒーが好きだ。", "ja") == [
        "東", "京", "は", "コ", "ー", "ヒ", "ー", "が", "好", "き", "だ",
    ]


def test_split_words_thai_runs_between_spaces() -> None:
    words = split_words("ผัดไทย ส้มตำ ข้าวมันไก่ และก๋วยเตี๋ยวเรือ", "th")
    assert words == ["ผัดไทย", "ส้มตำ", "ข้าวมันไก่", "และก๋วยเตี๋ยวเรือ"]
    assert len(split_words(THAI, "th")) == len(THAI.split())


def test_split_words_cache_is_keyed_by_object_and_mode() -> None:
    text = CHINESE * 2  # long enough to be cached
    as_zh = split_words(text, "zh")
    assert split_words(text, "zh") is as_zh  # the same object: served from the cache
    as_en = split_words(text, "en")  # another mode is not served from it: whitespace tokens
    assert len(as_en) == len(text.split()) == 16 and as_en[0].endswith("之一")
    equal_copy = "".join([CHINESE, CHINESE])
    assert equal_copy is not text and split_words(equal_copy, "zh") == as_zh


def test_is_spaceless_by_code_and_by_script() -> None:
    for code in ("zh", "zh-Hant", "zh_CN", "ZH", "__label__ja", "jpn_Jpan", "cmn", "th", "lo", "km", "my", "bo"):
        assert is_spaceless(code), code
    for code in ("en", "ko", "ru", "de-AT", "vi"):
        assert not is_spaceless(code, CHINESE), code  # a given lang wins over the script
    assert is_spaceless(None, CHINESE) and is_spaceless(None, JAPANESE) and is_spaceless(None, THAI)
    assert not is_spaceless(None, ARTICLE) and not is_spaceless(None, "") and not is_spaceless(None, "12 34")
    assert not is_spaceless(None, "An English sentence that quotes one word, 西湖, in Chinese.")
    assert normalize_lang("__label__zh") == "zh" and normalize_lang("") is None and normalize_lang("eng") == "en"


def test_lines_paragraphs_sentences() -> None:
    text = "  First line.\n\n \nSecond  \r\nthird. Fourth!\n\n\nlast"
    assert split_lines(text) == ["First line.", "Second", "third. Fourth!", "last"]
    assert split_paragraphs(text) == ["First line.", "Second  \r\nthird. Fourth!", "last"]
    assert count_line_breaks(text) == 3
    assert count_sentences("A b c. D e f\nNo punctuation here\n中文句子。另一个句子！\n...\n") == 5
    assert count_sentences("He said \"Stop!\" and left. Then he came back?") == 2
    assert count_sentences("") == 0


def test_covered_chars_counts_each_word_once() -> None:
    words = ["a", "bb", "c", "d", "e", "f", "g", "h"]
    prefix = prefix_lengths(words)
    assert prefix[-1] == 9
    assert covered_chars([0, 1, 5], 3, prefix) == 4 + 1 + 3  # a bb c | d | f g h
    assert covered_chars([], 3, prefix) == 0


def _reference_repetition(words, top_ns, dup_ns):
    """Slow and obvious: tuples, Counter, an explicit set of covered word positions."""
    top, dup = {}, {}
    for n in top_ns:
        grams = ngrams(words, n)
        counts = Counter(grams)
        repeated = [g for g in dict.fromkeys(grams) if counts[g] > 1]  # in order of first occurrence
        if not repeated:
            top[n] = 0
            continue
        # most occurrences, then most characters, then the earliest
        best = max(repeated, key=lambda g: (counts[g], sum(map(len, g)), -grams.index(g)))
        covered = {i + k for i, g in enumerate(grams) if g == best for k in range(n)}
        top[n] = sum(len(words[i]) for i in covered)
    for n in dup_ns:
        grams = ngrams(words, n)
        counts = Counter(grams)
        covered = {i + k for i, g in enumerate(grams) if counts[g] > 1 for k in range(n)}
        dup[n] = sum(len(words[i]) for i in covered)
    return top, dup, sum(map(len, words))


def test_ngram_repetition_matches_reference() -> None:
    rng = random.Random(20240611)
    vocab = ["a", "to", "the", "cat", "sat", "on", "mat", "quickly", "x"]
    for _ in range(1500):
        words = [rng.choice(vocab[: rng.randint(1, len(vocab))]) for _ in range(rng.randint(0, 70))]
        if rng.random() < 0.3:  # splice in a long repeated run
            words = words[:12] * rng.randint(1, 3) + words
        assert ngram_repetition(words, [1, 2, 3, 4], range(5, 11)) == _reference_repetition(
            words, [1, 2, 3, 4], range(5, 11)
        ), words


def test_ngram_repetition_exact_small_case() -> None:
    words = "the cat sat on the mat and the cat sat on the rug".split()
    top, dup, total = ngram_repetition(words, [2], [5])
    assert total == 37
    # all four bigrams of "the cat sat on the" occur twice; the longest ("the cat" or "cat sat",
    # 6 chars) is the top one; "the cat sat on the" is the only repeated 5-gram
    assert top[2] == 12
    assert dup[5] == 2 * len("thecatsatonthe")


# ---------------------------------------------------------------------------------------
# Gopher quality
# ---------------------------------------------------------------------------------------


def test_gopher_quality_keeps_article() -> None:
    v = GopherQuality()(ARTICLE, "en")
    assert v.keep and v.reason is None and v.text is None
    expected_words = [t for t in ARTICLE.split() if t.strip(string.punctuation)]
    assert v.signals["gopher_quality.word_count"] == len(expected_words) == 278
    assert v.signals["gopher_quality.stop_words"] == 6  # the, to, of, and, that, with (no be/have)
    assert v.signals["gopher_quality.alpha_words_ratio"] == 1.0
    assert 4.0 < v.signals["gopher_quality.mean_word_length"] < 5.0
    assert v.signals["gopher_quality.spaceless"] == 0.0


@pytest.mark.parametrize("text", ["", "   \n\n  ", "Hello", "Just a few words, not nearly enough for a page."])
def test_gopher_quality_too_few_words(text: str) -> None:
    v = GopherQuality()(text, "en")
    assert v.reason == "gopher_quality:word_count"
    assert v.signals["gopher_quality.word_count"] == len(split_words(text, "en"))


def test_gopher_quality_too_many_words() -> None:
    v = GopherQuality(GopherQualityConfig(max_words=200))(ARTICLE, "en")
    assert v.reason == "gopher_quality:word_count"


def test_gopher_quality_mean_word_length() -> None:
    short = (
        "So I go to it and he is in. We sat by a big old oak. Is it ok if we go up now? "
        "He said no, so we ran on. It was a hot day and I had to go by bus. "
        "My pal Al was on it too, so we had a lot of fun on the way. Oh my, it is so hot."
    )
    v = GopherQuality()(short, "en")
    assert v.signals["gopher_quality.mean_word_length"] < 3
    assert v.reason == "gopher_quality:mean_word_length"
    long_words = " ".join(
        ["internationalization", "counterrevolutionaries", "electroencephalography", "the", "and"] * 12
    )
    assert GopherQuality()(long_words, "en").reason == "gopher_quality:mean_word_length"


def test_gopher_quality_hashtags() -> None:
    tags = "\n".join(
        f"Sunset over the harbour with friends tonight #travel #sunset #photooftheday #{c}"
        for c in ("nofilter", "summer", "beach", "love", "instagood", "happy", "nature", "sea")
    )
    v = GopherQuality()(tags, "en")
    assert v.signals["gopher_quality.hash_word_ratio"] == pytest.approx(32 / 88)
    assert v.reason == "gopher_quality:hash_word_ratio"


def test_gopher_quality_ellipsis_lines_and_ellipsis_words() -> None:
    teasers = "\n".join(
        f"{title} and what the experts in the field say about the future of the industry..."
        for title in (
            "Ten ways to save money on groceries", "Why the housing market is cooling down",
            "The best hiking trails near the city", "How to train a puppy in two weeks",
            "A beginner guide to growing tomatoes", "What nobody tells you about retirement",
        )
    )
    v = GopherQuality()(teasers, "en")
    assert v.signals["gopher_quality.ellipsis_word_ratio"] < 0.1  # ~one ellipsis per 22 words
    assert v.signals["gopher_quality.ellipsis_lines_ratio"] == 1.0
    assert v.reason == "gopher_quality:ellipsis_lines_ratio"
    hesitant = ARTICLE.replace(", ", "... ").replace(" and ", "... and ")
    v = GopherQuality()(hesitant, "en")
    assert v.signals["gopher_quality.ellipsis_lines_ratio"] == 0.0
    assert v.signals["gopher_quality.ellipsis_word_ratio"] == pytest.approx((16 + 12) / 278)
    assert v.reason == "gopher_quality:ellipsis_word_ratio"


def test_gopher_quality_bullets() -> None:
    bullets = "\n".join(
        f"• {item}"
        for item in (
            "Two cups of flour and a pinch of salt for the dough",
            "One cup of warm water with a spoon of honey",
            "A packet of dry yeast, or the same weight of fresh yeast",
            "Three tablespoons of olive oil for the pan and the top",
            "Rosemary, coarse salt and a few olives to press into the dough",
            "An oven heated to two hundred and twenty degrees",
        )
    )
    v = GopherQuality()(bullets, "en")
    assert v.signals["gopher_quality.bullet_lines_ratio"] == 1.0
    assert v.reason == "gopher_quality:bullet_lines_ratio"
    # one bullet list inside an article is fine
    assert GopherQuality()(ARTICLE + "\n" + bullets, "en").keep


def test_gopher_quality_alpha_words() -> None:
    table = "Quarterly results for the three regions and the total of all sales in millions\n" + "\n".join(
        f"{year} {q} {a:.1f} {b:.1f} {c:.1f} {a + b + c:.1f}"
        for year in (2021, 2022, 2023)
        for q, (a, b, c) in zip(("Q1", "Q2", "Q3", "Q4"), ((12.5, 7.25, 3.5), (13.0, 7.5, 3.25), (14.75, 8.0, 4.5), (15.5, 8.25, 4.75)))
    )
    v = GopherQuality()(table, "en")
    assert v.signals["gopher_quality.alpha_words_ratio"] < 0.8
    assert v.reason == "gopher_quality:alpha_words_ratio"


def test_gopher_quality_stop_words() -> None:
    keywords = (
        "Cheap flights Paris London Berlin Madrid Rome Lisbon Vienna Prague Budapest Warsaw "
        "hotel deals last minute weekend breaks city guides airport transfers car rental "
        "travel insurance luggage tips visa information currency converter weather forecast "
        "beach holidays ski resorts cruise offers family packages honeymoon ideas backpacking "
        "hostels camping sites student discounts business class upgrades"
    )
    v = GopherQuality()(keywords, "en")
    assert v.signals["gopher_quality.stop_words"] == 0
    assert v.reason == "gopher_quality:stop_words"
    # distinct stop words: "the the the" is one
    assert GopherQuality(GopherQualityConfig(min_words=1))("the the the cat", "en").reason == "gopher_quality:stop_words"


def test_gopher_quality_all_caps_counts_stop_words() -> None:
    v = GopherQuality()(ALL_CAPS, "en")
    assert v.keep
    assert v.signals["gopher_quality.stop_words"] >= 4


def test_gopher_quality_code() -> None:
    v = GopherQuality()(PY_CODE, None)
    assert v.signals["gopher_quality.word_count"] == 69
    assert v.signals["gopher_quality.stop_words"] == 1  # "with" (from the with-statement)
    assert v.reason == "gopher_quality:stop_words"
    js = GopherQuality()(JS_PAGE, "en")
    assert js.signals["gopher_quality.mean_word_length"] > 10  # camelCase identifiers
    assert js.reason == "gopher_quality:mean_word_length"


def test_gopher_quality_stop_word_lists_per_language() -> None:
    # no German list: the rule is skipped, not failed
    v = GopherQuality()(GERMAN, "de")
    assert v.keep and "gopher_quality.stop_words" not in v.signals
    # lang None assumes default_lang "en": German text has no English stop words
    assert GopherQuality()(GERMAN, None).reason == "gopher_quality:stop_words"
    assert GopherQuality(GopherQualityConfig(default_lang=None))(GERMAN, None).keep
    # with a German list the rule applies again
    cfg = GopherQualityConfig(stop_words={"en": ["the", "and"], "de": ["der", "die", "das", "und", "zu"]})
    v = GopherQuality(cfg)(GERMAN, "de-DE")
    assert v.keep and v.signals["gopher_quality.stop_words"] == 4
    cfg = GopherQualityConfig(stop_words={"de": ["ich", "du", "wir", "ihr"]})
    v = GopherQuality(cfg)(GERMAN, "de")
    assert v.signals["gopher_quality.stop_words"] == 0
    assert v.reason == "gopher_quality:stop_words"


@pytest.mark.parametrize(("text", "lang"), [(CHINESE, "zh"), (JAPANESE, "ja"), (CHINESE, None), (JAPANESE, None)])
def test_gopher_quality_keeps_cjk(text: str, lang: str | None) -> None:
    v = GopherQuality()(text, lang)
    assert v.keep, v.reason
    assert v.signals["gopher_quality.spaceless"] == 1.0
    assert v.signals["gopher_quality.word_count"] > 200  # characters, not whitespace tokens
    assert "gopher_quality.stop_words" not in v.signals


def test_gopher_quality_cjk_with_wrong_language_is_dropped() -> None:
    # told it is English, the Chinese article has 8 whitespace "words"
    v = GopherQuality()(CHINESE, "en")
    assert v.reason == "gopher_quality:word_count"
    assert v.signals["gopher_quality.word_count"] == 8


def test_gopher_quality_thai() -> None:
    v = GopherQuality()(THAI, "th")
    assert v.keep, v.reason
    assert v.signals["gopher_quality.word_count"] == len(THAI.split()) == 55
    assert v.signals["gopher_quality.mean_word_length"] > 10  # runs, not words: rule skipped
    assert GopherQuality()(THAI, None).keep


# ---------------------------------------------------------------------------------------
# Gopher repetition
# ---------------------------------------------------------------------------------------


def test_gopher_repetition_keeps_article_and_cjk() -> None:
    v = GopherRepetition()(ARTICLE, "en")
    assert v.keep
    for n in range(5, 11):
        assert v.signals[f"gopher_repetition.dup_{n}_gram_char_frac"] == 0.0
    assert v.signals["gopher_repetition.dup_line_frac"] == 0.0
    for text, lang in ((CHINESE, "zh"), (JAPANESE, "ja"), (THAI, "th"), (ALL_CAPS, "en"), (GERMAN, "de")):
        assert GopherRepetition()(text, lang).keep, lang


@pytest.mark.parametrize("text", ["", "word", "\n\n\n"])
def test_gopher_repetition_degenerate_inputs_keep(text: str) -> None:
    v = GopherRepetition()(text, "en")
    assert v.keep
    assert all(value == 0.0 for value in v.signals.values())


def test_gopher_repetition_duplicate_lines() -> None:
    v = GopherRepetition()(SPAM, "en")
    assert v.signals["gopher_repetition.dup_line_frac"] == pytest.approx(22 / 25)
    assert v.reason == "gopher_repetition:dup_line_frac"


def test_gopher_repetition_duplicate_paragraphs() -> None:
    # multi-line paragraphs separated by a one-line advert: few duplicate lines, many paragraphs
    paras = []
    for p in ARTICLE_PARAGRAPHS[1:]:
        paras.append(p.replace(". ", ".\n"))
        paras.append("Advertisement")
    text = "\n\n".join(paras)
    v = GopherRepetition()(text, "en")
    assert v.signals["gopher_repetition.dup_para_frac"] == pytest.approx(4 / 10)
    assert v.signals["gopher_repetition.dup_line_frac"] <= 0.3
    assert v.reason == "gopher_repetition:dup_para_frac"


def test_gopher_repetition_duplicate_line_chars() -> None:
    long_line = ARTICLE_PARAGRAPHS[1]
    lines = [
        "Posted by Maria in Baking.", "Filed under sourdough, bread.", "Updated on 12 March.",
        long_line, "Reading time: four minutes.", "Level: beginner.", "Serves: one family.",
        "Equipment: a jar and a scale.", "Comments are open.", long_line,
    ]
    v = GopherRepetition()("\n".join(lines), "en")
    assert v.signals["gopher_repetition.dup_line_frac"] == pytest.approx(0.1)
    assert v.signals["gopher_repetition.dup_line_char_frac"] > 0.2
    assert v.reason == "gopher_repetition:dup_line_char_frac"


def test_gopher_repetition_top_2_gram() -> None:
    products = "\n".join(
        f"Buy now: {item}, ships within two days."
        for item in (
            "red leather wallet", "blue canvas backpack", "steel water bottle", "wool winter scarf",
            "bamboo cutting board", "ceramic coffee mug", "cotton beach towel", "glass flower vase",
        )
    )
    v = GopherRepetition()(products, "en")
    # "Buy now" is the most frequent bigram, but "ships within two days" repeats too
    assert v.signals["gopher_repetition.top_2_gram_char_frac"] > 0.2
    assert v.reason == "gopher_repetition:top_2_gram_char_frac"


def test_gopher_repetition_duplicated_ngrams() -> None:
    boiler = "click here to subscribe to our weekly newsletter for more stories like this one"
    sentences = [s.strip() for s in " ".join(ARTICLE_PARAGRAPHS[1:]).split(". ") if s.strip()]
    text = "\n".join(f"{s}. {boiler}." if i % 3 == 0 else f"{s}." for i, s in enumerate(sentences))
    v = GopherRepetition()(text, "en")
    assert v.signals["gopher_repetition.dup_line_frac"] == 0.0
    assert v.signals["gopher_repetition.dup_5_gram_char_frac"] > 0.15
    assert v.reason == "gopher_repetition:dup_5_gram_char_frac"


def test_gopher_repetition_exact_values_and_config() -> None:
    text = "alpha beta gamma delta epsilon zeta\n" * 2 + "eta theta iota kappa lambda mu nu xi omicron pi rho"
    v = GopherRepetition()(text, "en")
    total = sum(map(len, split_words(text, "en")))
    assert v.signals["gopher_repetition.dup_line_frac"] == pytest.approx(1 / 3)
    assert v.signals["gopher_repetition.dup_5_gram_char_frac"] == pytest.approx(2 * 30 / total)
    assert v.signals["gopher_repetition.dup_7_gram_char_frac"] == 0.0  # the repeat is 6 words long
    assert v.reason == "gopher_repetition:dup_line_frac"
    cfg = GopherRepetitionConfig(max_dup_line_frac=None, max_dup_line_char_frac=None, max_dup_para_char_frac=None)
    assert GopherRepetition(cfg)(text, "en").reason == "gopher_repetition:top_2_gram_char_frac"
    cfg = GopherRepetitionConfig(top_n_grams={}, dup_n_grams={7: 0.1})
    v = GopherRepetition(cfg)(text, "en")
    assert "gopher_repetition.dup_5_gram_char_frac" not in v.signals
    assert "gopher_repetition.dup_7_gram_char_frac" in v.signals


# ---------------------------------------------------------------------------------------
# C4
# ---------------------------------------------------------------------------------------


def test_c4_keeps_article_unchanged() -> None:
    v = C4Filter()(ARTICLE, "en")
    assert v.keep and v.text is None
    assert v.signals["c4.sentence_count"] == 15
    assert v.signals["c4.lines_removed"] == 0.0 and v.signals["c4.lines"] == 6


def test_c4_cleans_web_page() -> None:
    v = C4Filter()(WEB_PAGE, "en")
    assert v.keep
    assert v.text is not None
    assert v.text.startswith("How a Sourdough Starter Works\n\nA sourdough starter")
    assert "JavaScript" not in v.text and "cookies" not in v.text and "Terms of Use" not in v.text
    assert not {"Home", "Recipes", "Share", "Print"} & set(split_lines(v.text))
    assert v.text.endswith("Copyright 2024 The Home Baker. All rights reserved.")
    s = v.signals
    assert s["c4.lines_removed_javascript"] == 1
    assert s["c4.lines_removed_policy"] == 2
    assert s["c4.lines_removed_too_few_words"] == 6  # Home, Recipes, Bread, About us, Share, Print
    assert s["c4.lines_removed"] == 9 and s["c4.lines"] == 16
    assert s["c4.lines_removed_fraction"] == pytest.approx(9 / 16)
    # paragraphs survive as blank lines; the footer line was in the last one all along
    paragraphs = split_paragraphs(v.text)
    assert paragraphs[1:5] == [p.strip() for p in ARTICLE_PARAGRAPHS[1:5]]
    assert paragraphs[5] == ARTICLE_PARAGRAPHS[5].strip() + "\nCopyright 2024 The Home Baker. All rights reserved."
    # signals() on the raw page agrees with __call__
    assert C4Filter().signals(WEB_PAGE, "en") == {k[3:]: x for k, x in s.items()}
    assert C4Filter().rewrite(WEB_PAGE, "en") == v.text


def test_c4_menu_has_too_few_sentences() -> None:
    v = C4Filter()(MENU, "en")
    assert v.reason == "c4:sentence_count"
    assert v.text == "Keyboards and mice\nCareers at Example Electronics\nCreate an account\nShopping cart (0 items)"
    assert v.signals["c4.sentence_count"] == 4
    assert v.signals["c4.lines_removed_too_few_words"] == 12


def test_c4_lorem_ipsum() -> None:
    assert C4Filter()(LOREM, "en").reason == "c4:lorem_ipsum"
    assert C4Filter(C4Config(filter_lorem_ipsum=False))(LOREM, "en").keep


def test_c4_curly_bracket() -> None:
    v = C4Filter()(JS_PAGE, "en")
    assert v.reason == "c4:curly_bracket"
    v = C4Filter()(PY_CODE, None)
    assert v.reason == "c4:curly_bracket"
    # only braces on lines that survive the line rules count: "totals = {}" (1 word) goes first
    assert "totals = {}" not in v.text and 'return {"count": count' in v.text
    # C4's original terminal-punctuation rule removes code lines altogether
    assert C4Filter(C4Config(filter_no_terminal_punct=True))(PY_CODE, None).reason == "c4:sentence_count"
    # the rule can be turned off; the signal is still recorded
    v = C4Filter(C4Config(filter_curly_bracket=False))(JS_PAGE, "en")
    assert v.keep and v.signals["c4.has_curly_bracket"] == 1.0


@pytest.mark.parametrize("text", ["", "Hello", "\n \n"])
def test_c4_degenerate_inputs(text: str) -> None:
    v = C4Filter()(text, "en")
    assert v.reason == "c4:sentence_count"
    assert v.signals["c4.sentence_count"] == 0


def test_c4_citations_long_words_and_terminal_punct() -> None:
    text = (
        "Sourdough is one of the oldest forms of leavened bread.[1] It was probably discovered by accident.[citation needed]\n"
        "Ingredients\n"
        "See the archive at http://example.org/" + "x" * 1200 + " for the full history\n"
        + ARTICLE
    )
    v = C4Filter()(text, "en")
    assert v.keep
    assert v.text.startswith("Sourdough is one of the oldest forms of leavened bread. It was probably discovered by accident.\n")
    assert "example.org" not in v.text and "Ingredients" not in v.text
    assert v.signals["c4.lines_removed_long_word"] == 1
    strict = C4Filter(C4Config(filter_no_terminal_punct=True))(text, "en")
    assert strict.keep
    assert strict.signals["c4.lines_removed_no_terminal_punct"] == 2  # "Ingredients", the title
    assert "How a Sourdough Starter Works" not in strict.text


@pytest.mark.parametrize(("text", "lang"), [(CHINESE, "zh"), (JAPANESE, "ja"), (CHINESE, None), (JAPANESE, None)])
def test_c4_keeps_cjk_articles(text: str, lang: str | None) -> None:
    v = C4Filter()(text, lang)
    assert v.keep, v.reason
    assert v.text is None  # no line is "too short": characters are words
    assert v.signals["c4.sentence_count"] == len(split_lines(text))


def test_c4_thai_counts_phrases_as_words() -> None:
    v = C4Filter()(THAI, "th")
    assert v.keep
    assert v.signals["c4.sentence_count"] == 12  # a line without punctuation is one sentence
    # the documented cost of the run approximation: a line of two long phrases has 2 "words"
    assert v.signals["c4.lines_removed_too_few_words"] == 1
    assert "วัดพระแก้ว" not in v.text


def test_c4_all_caps() -> None:
    assert C4Filter()(ALL_CAPS, "en").keep


# ---------------------------------------------------------------------------------------
# FineWeb
# ---------------------------------------------------------------------------------------


def test_fineweb_keeps_article() -> None:
    v = FineWebFilter()(ARTICLE, "en")
    assert v.keep
    assert v.signals["fineweb.line_punct_ratio"] == pytest.approx(5 / 6)
    assert v.signals["fineweb.short_line_ratio"] == pytest.approx(1 / 6)
    assert v.signals["fineweb.char_dup_ratio"] == 0.0
    assert v.signals["fineweb.newline_ratio"] == pytest.approx(5 / 278)


def test_fineweb_menu_fails_line_punctuation() -> None:
    v = FineWebFilter()(MENU, "en")
    assert v.signals["fineweb.line_punct_ratio"] == 0.0
    assert v.reason == "fineweb:line_punct_ratio"
    assert FineWebFilter(FineWebConfig(line_punct_exclude_zero=True))(MENU, "en").reason == "fineweb:short_line_ratio"


def test_fineweb_short_lines() -> None:
    chat = "\n".join(
        ["Hi there!", "Are you coming tonight?", "Maybe, not sure yet.", "Why not?", "Work is busy.",
         "Come for one drink.", "Fine, see you at eight.", "Great!", "Bring the umbrella, it will rain.",
         "I will."]
    )
    v = FineWebFilter()(chat, "en")
    assert v.signals["fineweb.line_punct_ratio"] == 1.0
    assert v.signals["fineweb.short_line_ratio"] == pytest.approx(0.9)
    assert v.reason == "fineweb:short_line_ratio"


def test_fineweb_duplicated_line_chars() -> None:
    text = ARTICLE + "\nRead the full recipe on our website today.\n" + "\nRead the full recipe on our website today.\n"
    v = FineWebFilter()(text, "en")
    assert v.signals["fineweb.char_dup_ratio"] == pytest.approx(42 / (sum(map(len, split_lines(ARTICLE))) + 84))
    assert v.reason == "fineweb:char_dup_ratio"
    assert FineWebFilter(FineWebConfig(max_char_dup_ratio=0.1))(text, "en").keep


def test_fineweb_newlines_per_word() -> None:
    text = "\n".join(
        ["Internationalization considerations documented.", "Authentication requirements clarified.",
         "Performance measurements published.", "Accessibility improvements implemented.",
         "Documentation translations completed.", "Configuration migrations automated."]
    )
    v = FineWebFilter()(text, "en")
    assert v.signals["fineweb.newline_ratio"] == pytest.approx(5 / 18)
    assert v.keep  # 0.28 ≤ 0.3
    text2 = text.replace("documented", "documented\nyesterday")
    v2 = FineWebFilter()(text2, "en")
    assert v2.signals["fineweb.newline_ratio"] == pytest.approx(6 / 19)
    assert v2.reason == "fineweb:newline_ratio"


@pytest.mark.parametrize(("text", "lang"), [(CHINESE, "zh"), (JAPANESE, "ja"), (CHINESE, None), (THAI, "th"), (ALL_CAPS, "en")])
def test_fineweb_keeps_other_scripts(text: str, lang: str | None) -> None:
    assert FineWebFilter()(text, lang).keep


def test_fineweb_thai_needs_its_language() -> None:
    # Thai does not end sentences with punctuation: only the language lifts the rule
    assert FineWebFilter()(THAI, None).reason == "fineweb:line_punct_ratio"


@pytest.mark.parametrize("text", ["", "word"])
def test_fineweb_degenerate_inputs(text: str) -> None:
    v = FineWebFilter()(text, "en")
    assert v.reason == "fineweb:line_punct_ratio"


# ---------------------------------------------------------------------------------------
# registry and chain
# ---------------------------------------------------------------------------------------


def test_registry_order_and_names() -> None:
    assert list(FILTERS) == ["gopher_repetition", "gopher_quality", "c4", "fineweb"]
    for name, klass in FILTERS.items():
        assert klass.name == name
        klass()("", None)  # every filter copes with an empty document


def test_chain_keeps_article() -> None:
    chain = FilterChain.from_names()
    v = chain(ARTICLE, "en")
    assert isinstance(v, Verdict) and v.keep and v.text is None
    assert {k.split(".")[0] for k in v.signals} == set(FILTERS)


def test_chain_stops_at_first_drop() -> None:
    chain = FilterChain.from_names()
    v = chain(SPAM, "en")
    assert v.reason == "gopher_repetition:dup_line_frac"
    assert {k.split(".")[0] for k in v.signals} == {"gopher_repetition"}


def test_chain_annotate_all_keeps_first_reason() -> None:
    chain = FilterChain.from_names()
    v = chain(MENU, "en", annotate_all=True)
    # the menu fails gopher_quality (29 words) first, then c4 and fineweb as well
    assert v.reason == "gopher_quality:word_count"
    assert {k.split(".")[0] for k in v.signals} == set(FILTERS)
    assert v.signals["fineweb.line_punct_ratio"] == 0.0  # computed on C4's cleaned text
    assert v.signals["c4.sentence_count"] == 4
    assert v.text == C4Filter().rewrite(MENU, "en")
    plain = chain(MENU, "en")
    assert plain.reason == v.reason and set(plain.signals) < set(v.signals)


def test_chain_propagates_rewrite() -> None:
    page = (
        "Share this\nShare this\nShare this\n"
        "Please enable JavaScript to view the comments powered by our partner.\n" + ARTICLE
    )
    # alone, FineWeb drops the raw page for its duplicated lines …
    assert FineWebFilter()(page, "en").reason == "fineweb:char_dup_ratio"
    # … but in the chain it sees C4's cleaned text
    v = FilterChain.from_names()(page, "en")
    assert v.keep
    assert v.text == ARTICLE.strip()
    assert v.signals["fineweb.char_dup_ratio"] == 0.0
    assert v.signals["c4.lines_removed"] == 4
    assert v.signals["gopher_repetition.dup_line_frac"] == pytest.approx(2 / 10)


def test_chain_from_names_with_settings() -> None:
    chain = FilterChain.from_names(["gopher_quality", "fineweb"], {"gopher_quality": {"min_words": 500}})
    assert chain.names == ["gopher_quality", "fineweb"]
    assert chain(ARTICLE, "en").reason == "gopher_quality:word_count"
    with pytest.raises(ValueError, match="unknown filter"):
        FilterChain.from_names(["gopher_quality", "perplexity"])
    with pytest.raises(ValueError, match="unknown filters"):
        FilterChain.from_names(None, {"nope": {}})
    with pytest.raises(ValueError, match="duplicate"):
        FilterChain([GopherQuality(), GopherQuality()])
    with pytest.raises(Exception):
        FilterChain.from_names(None, {"c4": {"min_num_sentence": 3}})  # misspelt setting


@pytest.mark.parametrize(
    ("text", "lang", "reason"),
    [
        (ARTICLE, "en", None),
        (CHINESE, "zh", None),
        (JAPANESE, "ja", None),
        (THAI, "th", None),
        (ALL_CAPS, "en", None),
        ("", "en", "gopher_quality:word_count"),
        ("Hello", "en", "gopher_quality:word_count"),
        (SPAM, "en", "gopher_repetition:dup_line_frac"),
        (LOREM, "en", "c4:lorem_ipsum"),
        (JS_PAGE, "en", "gopher_quality:mean_word_length"),
        (MENU, "en", "gopher_quality:word_count"),
        (WEB_PAGE, "en", None),
        (PY_CODE, None, "gopher_quality:stop_words"),
    ],
)
def test_chain_outcomes(text: str, lang: str | None, reason: str | None) -> None:
    assert FilterChain.from_names()(text, lang).reason == reason


def test_chain_survives_garbage() -> None:
    rng = random.Random(7)
    alphabet = "ab c\n\n\t.#…-•{}[1]。中ภา\r\u2028\x00é!?\"'"
    chain = FilterChain.from_names()
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 150)))
        for lang in (None, "en", "zh", "th", "xx-YY", ""):
            v = chain(text, lang, annotate_all=True)
            assert all(isinstance(x, float) and x == x and x >= 0 for x in v.signals.values())
            assert v.reason is None or v.reason.split(":")[0] in FILTERS


def test_chain_is_fast_on_a_large_document() -> None:
    # a quadratic step would take minutes here; a bound this loose only catches that
    big = (ARTICLE + "\n") * 400  # ~0.7 MB, highly repetitive (the worst case for n-grams)
    chain = FilterChain.from_names()
    start = time.perf_counter()
    v = chain(big, "en", annotate_all=True)
    assert time.perf_counter() - start < 5.0
    assert v.reason == "gopher_repetition:dup_line_frac"

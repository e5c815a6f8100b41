"""filters.rouge: ROUGE-L equals the rouge-score package's, and RougePool's indexed search
equals brute force while computing few exact LCS."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

import filters.rouge as rouge_module
from filters.rouge import RougePool, lcs_length, rouge_l, rouge_score_tokens, tokenizer_for, unicode_tokens

SEEDS_PATH = Path(__file__).resolve().parents[1] / "synth" / "data" / "self_instruct_seed_tasks.jsonl"

VOCAB = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "to", "house", "big", "red", "blue", "and", "of",
         "write", "list", "give", "tell", "me", "story", "about", "poem", "sentence", "word", "2", "10"]


@pytest.fixture(scope="module")
def seeds() -> list[str]:
    with open(SEEDS_PATH, encoding="utf-8") as handle:
        texts = [json.loads(line)["instruction"] for line in handle if line.strip()]
    assert len(texts) == 175
    return texts


@pytest.fixture(scope="module")
def scorer():
    return rouge_scorer.RougeScorer(["rougeL"])


def reference(scorer, a: str, b: str) -> float:
    return scorer.score(a, b)["rougeL"].fmeasure


def random_text(rng: random.Random, vocab=VOCAB, low: int = 1, high: int = 14) -> str:
    words = rng.choices(vocab, k=rng.randint(low, high))
    # punctuation and case the rouge-score tokenizer ignores
    return " ".join(w.capitalize() if rng.random() < 0.2 else w + rng.choice(["", "", ",", "."]) for w in words)


def brute_force(pool: RougePool, text: str) -> float:
    tokens = pool.tokenize(text)
    return max((rouge_l(tokens, other) for other in pool.tokens), default=0.0)


# --- lcs_length / rouge_l ------------------------------------------------------------------------


def naive_lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


class TestLcs:
    @pytest.mark.parametrize(
        ("a", "b", "expected"),
        [("", "", 0), ("a", "", 0), ("a b c", "a b c", 3), ("a b c d", "a c", 2), ("a b c", "c b a", 1),
         ("a b c b d a b", "b d c a b a", 4), ("x y z", "a b c", 0), ("a a a", "a", 1), ("a b a b", "b a b a", 3)],
    )
    def test_known(self, a, b, expected):
        assert lcs_length(a.split(), b.split()) == expected
        assert lcs_length(b.split(), a.split()) == expected

    def test_matches_naive_dp(self):
        rng = random.Random(1)
        for _ in range(300):
            a = rng.choices("abcde", k=rng.randint(0, 15))
            b = rng.choices("abcde", k=rng.randint(0, 15))
            assert lcs_length(a, b) == naive_lcs(a, b), (a, b)


class TestRougeL:
    def test_known_values(self):
        assert rouge_l([], ["a"]) == 0.0
        assert rouge_l(["a"], []) == 0.0
        assert rouge_l(["a", "b"], ["c"]) == 0.0
        assert rouge_l(["a", "b", "c"], ["a", "b", "c"]) == 1.0
        # lcs 2, lengths 4 and 2: P = 1, R = 0.5, F = 2/3
        assert rouge_l("a b c d".split(), "a c".split()) == pytest.approx(2 / 3)

    def test_equals_rouge_score_on_random_texts(self, scorer):
        rng = random.Random(7)
        for _ in range(400):
            a, b = random_text(rng, low=0), random_text(rng, low=0)
            expected = reference(scorer, a, b)
            assert rouge_l(rouge_score_tokens(a), rouge_score_tokens(b)) == expected, (a, b)
            assert rouge_l(rouge_score_tokens(b), rouge_score_tokens(a)) == pytest.approx(expected, abs=1e-15)

    def test_equals_rouge_score_on_seed_instructions(self, scorer, seeds):
        rng = random.Random(3)
        pairs = [(a, b) for a in seeds[:30] for b in seeds[:30]] + [tuple(rng.sample(seeds, 2)) for _ in range(300)]
        nonzero = 0
        for a, b in pairs:
            expected = reference(scorer, a, b)
            assert rouge_l(rouge_score_tokens(a), rouge_score_tokens(b)) == expected, (a, b)
            nonzero += expected > 0
        assert nonzero > len(pairs) // 2  # the check is not vacuous

    def test_equals_rouge_score_on_edited_seeds(self, scorer, seeds):
        # high-similarity pairs: a seed and the same seed with words dropped / swapped
        rng = random.Random(5)
        for text in seeds:
            words = text.split()
            edited = [w for w in words if rng.random() > 0.2]
            if len(edited) > 2:
                i, j = rng.sample(range(len(edited)), 2)
                edited[i], edited[j] = edited[j], edited[i]
            other = " ".join(edited)
            assert rouge_l(rouge_score_tokens(text), rouge_score_tokens(other)) == reference(scorer, text, other)

    def test_tokens_match_rouge_score(self):
        assert rouge_score_tokens("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
        assert rouge_score_tokens("Привет мир 你好") == []

    def test_unicode_tokens(self):
        assert unicode_tokens("Привет, Мир!") == ["привет", "мир"]
        assert unicode_tokens("你好世界") == ["你", "好", "世", "界"]

    def test_tokenizer_for(self):
        assert tokenizer_for("rouge_score") is rouge_score_tokens
        assert tokenizer_for("unicode") is unicode_tokens
        with pytest.raises(ValueError, match="unknown ROUGE tokenizer"):
            tokenizer_for("words")  # type: ignore[arg-type]


# --- RougePool -------------------------------------------------------------------------------


def make_pool(texts: list[str], tokenizer="rouge_score") -> RougePool:
    pool = RougePool(tokenizer)
    for i, text in enumerate(texts):
        pool.add(text, f"t{i}")
    return pool


class TestRougePool:
    def test_empty_pool(self):
        pool = RougePool()
        assert len(pool) == 0
        assert pool.max_similarity("anything at all") == (0.0, None)

    def test_no_shared_token_and_empty_query(self):
        pool = make_pool(["the cat sat on the mat", "a dog ran home"])
        assert len(pool) == 2
        assert pool.max_similarity("purple elephants dance") == (0.0, None)
        assert pool.max_similarity("") == (0.0, None)
        assert pool.max_similarity("!!! ...") == (0.0, None)

    def test_exact_duplicate(self):
        pool = make_pool(["the cat sat on the mat", "a dog ran home", "Write a poem about the sea."])
        assert pool.max_similarity("WRITE a poem, about the sea!") == (1.0, "t2")

    def test_ids_are_the_given_ones(self):
        pool = RougePool()
        pool.add("the cat sat on the mat", "seed_task_7")
        pool.add("a dog ran home", "machine_3")
        score, best = pool.max_similarity("a dog ran home fast")
        assert best == "machine_3"
        assert score == rouge_l(rouge_score_tokens("a dog ran home fast"), rouge_score_tokens("a dog ran home"))
        assert pool.ids == ["seed_task_7", "machine_3"]

    def test_pool_growth_keeps_results(self):
        # more than the initial array sizes (16 lengths, 4 postings), several regrowths
        texts = [f"the cat number {i} sat on the mat" for i in range(100)] + ["the cat sat"]
        pool = make_pool(texts)
        assert len(pool) == 101
        assert pool._index["cat"].size == 101
        score, best = pool.max_similarity("the cat sat")
        assert (score, best) == (1.0, "t100")
        score, best = pool.max_similarity("cat number 57 sat")
        assert best == "t57" and score == brute_force(pool, "cat number 57 sat")

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_equals_brute_force_on_random_pools(self, seed):
        rng = random.Random(seed)
        pool = make_pool([random_text(rng) for _ in range(300)])
        for _ in range(60):
            query = random_text(rng)
            score, best = pool.max_similarity(query)
            expected = brute_force(pool, query)
            assert score == expected, query
            if expected == 0.0:
                assert best is None
            else:
                position = pool.ids.index(best)
                assert rouge_l(pool.tokenize(query), pool.tokens[position]) == score

    def test_equals_brute_force_on_seed_instructions(self, seeds, scorer):
        pool = make_pool(seeds)
        rng = random.Random(11)
        queries = [random_text(rng, vocab=" ".join(seeds).split(), low=4, high=20) for _ in range(40)]
        queries += [" ".join(s.split()[: max(1, len(s.split()) // 2)]) for s in seeds[::7]]
        for query in queries:
            score, best = pool.max_similarity(query)
            assert score == brute_force(pool, query), query
            assert best is not None
            # and equals what the rouge-score package says for the chosen seed
            assert score == reference(scorer, query, seeds[int(best[1:])])

    def test_seed_instructions_against_each_other(self, seeds):
        # leave-one-out: each seed against the 174 others
        for i in range(0, 175, 9):
            pool = make_pool(seeds[:i] + seeds[i + 1 :])
            score, best = pool.max_similarity(seeds[i])
            assert score == brute_force(pool, seeds[i])
            assert score < 1.0

    def test_stop_at(self):
        rng = random.Random(42)
        pool = make_pool([random_text(rng) for _ in range(300)])
        branches = {stop_at: [0, 0] for stop_at in (0.3, 0.5, 0.7, 0.9, 1.0)}
        for i in range(60):
            query = random_text(rng)
            if i % 2:  # diluted with words no pooled text has, so some maxima stay low
                query += " " + " ".join(f"novel{i}x{j}" for j in range(rng.randint(1, 25)))
            expected = brute_force(pool, query)
            for stop_at, counts in branches.items():
                score, best = pool.max_similarity(query, stop_at=stop_at)
                if expected >= stop_at:
                    assert score >= stop_at, (query, stop_at)
                    counts[0] += 1
                else:
                    assert score == expected, (query, stop_at)
                    counts[1] += 1
                if best is not None:
                    assert rouge_l(pool.tokenize(query), pool.tokens[pool.ids.index(best)]) == score
        assert all(reached and exact for reached, exact in branches.values()), branches  # both branches exercised

    def test_stop_at_ends_early(self, monkeypatch):
        texts = ["the cat sat on the mat"] * 50
        pool = make_pool(texts)
        calls = count_rouge_calls(monkeypatch)
        assert pool.max_similarity("the cat sat on the mat", stop_at=0.7) == (1.0, "t0")
        assert calls[0] == 1
        calls[0] = 0
        # without stop_at: every candidate ties on the bound, all are scored
        assert pool.max_similarity("the cat sat on the mat") == (1.0, "t0")
        assert calls[0] == 50

    def test_unicode_tokenizer(self):
        russian = ["Москва является столицей России", "Кошка сидит на ковре"]
        chinese = ["今天天气很好", "我喜欢吃苹果"]
        default = make_pool(russian + chinese)
        assert default.max_similarity("Москва — столица России") == (0.0, None)
        assert default.max_similarity("今天天气不好") == (0.0, None)
        unicode = make_pool(russian + chinese, tokenizer="unicode")
        score, best = unicode.max_similarity("Москва является столицей Российской Федерации")
        assert best == "t0"
        # lcs 3 (москва является столицей), lengths 4 and 5
        assert score == pytest.approx(2 * 3 / (4 + 5))
        score, best = unicode.max_similarity("今天天气不好")
        assert best == "t2"
        assert score == pytest.approx(2 * 5 / (6 + 6))  # 今 天 天 气 好 in order
        assert unicode.max_similarity("Кошка сидит на ковре") == (1.0, "t1")

    def test_unknown_tokenizer(self):
        with pytest.raises(ValueError):
            RougePool("spaces")  # type: ignore[arg-type]


def count_rouge_calls(monkeypatch) -> list[int]:
    calls = [0]
    real = rouge_module.rouge_l

    def counting(a, b):
        calls[0] += 1
        return real(a, b)

    monkeypatch.setattr(rouge_module, "rouge_l", counting)
    return calls


def test_index_prunes_a_large_pool(monkeypatch, seeds):
    rng = random.Random(2024)
    vocab = [f"w{i}" for i in range(3000)] + " ".join(seeds).lower().split()
    weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))  # Zipf-like: common words shared
    texts = [" ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(6, 20))) for _ in range(4825)] + seeds
    pool = make_pool(texts)
    assert len(pool) == 5000
    queries = [texts[123], " ".join(texts[4000].split()[:-2] + ["novel"]), seeds[10], seeds[50] + " in French"]
    queries += [" ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(5, 20))) for _ in range(4)]
    expected = [brute_force(pool, q) for q in queries]  # before counting
    calls = count_rouge_calls(monkeypatch)
    for query, best in zip(queries, expected):
        # candidates: pooled texts sharing a token with the query (what a naive filter would score)
        tokens = set(pool.tokenize(query))
        candidates = len({int(i) for t in tokens if t in pool._index for i in pool._index[t].ids[: pool._index[t].size]})
        calls[0] = 0
        score, found = pool.max_similarity(query)
        assert score == best, query
        assert found is not None
        assert calls[0] < 0.05 * len(pool), (query, calls[0])  # observed at most ~80 of 5000
        # the pooled texts sharing a token (what a filter without the bound would score): hundreds to thousands
        assert candidates >= 500 and calls[0] * 10 < candidates, (calls[0], candidates)
    assert pool.max_similarity(texts[123]) == (1.0, "t123")

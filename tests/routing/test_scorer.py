"""The complexity scorer: cheap, bilingual, and ordered the way a person would order prompts."""

import time

from hearth.routing.scorer import estimate_tokens, score


def test_easy_prompts_score_low() -> None:
    for p in [
        "hi",
        "你好",
        "thanks!",
        "谢谢",
        "What's the weather today?",
        "今天天气怎么样",
        "bye",
        "What time is it?",
    ]:
        assert score(p).value < 0.2, p


def test_hard_prompts_score_high() -> None:
    for p in [
        "Write a Python function that parses a CSV file and returns the rows as dicts, with error handling.",
        "帮我用Python写一个函数，实现快速排序，并分析时间复杂度。",
        "Solve for x: 3x + 7 = 22, then explain each step.",
        "Compare the trade-offs of microservices and a monolith for a 5-person team, in a table.",
        "Translate this paragraph into French: The quick brown fox jumps over the lazy dog.",
        "请分析一下这篇文章的论点，并指出三个逻辑漏洞。",
    ]:
        assert score(p).value > 0.5, p


def test_ordering() -> None:
    assert score("hi").value < score("What is HTTP?").value < score("Explain HTTP/2 multiplexing step by step").value


def test_token_estimate_counts_cjk_per_character() -> None:
    assert estimate_tokens("你好世界") == 5
    assert 20 <= estimate_tokens("word " * 20) <= 30


def test_fast() -> None:
    text = "Write a function that sorts a list and explain why it is O(n log n). " * 20
    t0 = time.perf_counter()
    for _ in range(200):
        score(text, turns=4)
    assert (time.perf_counter() - t0) / 200 < 0.005  # generous: the benchmark measures the real figure

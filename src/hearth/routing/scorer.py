"""An offline complexity score in [0, 1] for a conversation: no model, no network, well under 1 ms.

Signals are cheap surface features that separate "hi, thanks, what's the weather" from "write a
function", "prove", "compare these three designs": length, code, math, multi-step and analysis
words, explicit constraints, translation, conversation depth, and chit-chat markers, in English and
Chinese. They are combined linearly and squashed with a logistic, so each weight reads as "how much
this signal moves the odds". The weights were set by hand and checked on packaged data
(benchmarks/scorer_auc.py prints the separation of easy from hard prompts as an AUC).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[a-z][a-z0-9+#']*")

# Signals are word-set lookups over one tokenizing pass, plus substring checks (C speed) for phrases and
# Chinese keywords: big regex alternations cost ~0.3 us per character each in Python's `re`.
_CODE_W = frozenset("def class import function return select regex sql api python java javascript typescript "
                    "c++ rust golang bash code coding debug compile compiler bug script json yaml html css "
                    "algorithm recursion array".split())
_CODE_S = ("```", "=>", "();", "代码", "函数", "编程", "程序", "脚本", "报错", "调试", "算法")
_MATH_W = frozenset("solve calculate compute equation prove proof integral derivative probability percent "
                    "percentage sum average ratio".split())
_MATH_S = ("how many", "how much", "\\frac", "\\sum", "计算", "求解", "证明", "方程", "概率", "多少")
_MATH_RX = re.compile(r"\d\s*[-+*/^=×÷]\s*\d")
_STEP_W = frozenset("explain why analyze analyse analysis compare evaluate design plan strategy tradeoff tradeoffs "
                    "implement optimize optimise summarize summarise draft essay story poem article report rewrite "
                    "critique outline argue".split())
_STEP_S = ("step by step", "step-by-step", "pros and cons", "trade-off", "分析", "比较", "解释", "为什么",
           "设计", "规划", "方案", "步骤", "总结", "评估", "优化", "实现", "写一篇", "文章", "故事", "诗", "报告",
           "改写")
_CONSTRAINT_W = frozenset("must should exactly without only format json words word bullet bullets table".split())
_CONSTRAINT_S = ("at least", "at most", "必须", "不要", "至少", "最多", "不超过", "格式", "字以内", "要求")
_BULLET = re.compile(r"^\s*(\d+[.)]|[-*•])\s", re.MULTILINE)
_TRANSLATE_S = ("translat", "in english", "in chinese", "in french", "in german", "in spanish", "in japanese",
                "翻译", "译成", "英文", "中文版")
_CHITCHAT = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|thx|bye|goodbye|good (morning|night|evening)|ok(ay)?|cool|great|yes|no|"
    r"sure|how are you|what'?s up|who are you)\b|^\s*(你好|您好|嗨|谢谢|多谢|再见|拜拜|早上好|晚安|好的|嗯|是的|不是|"
    r"你是谁|在吗)|天气|weather|几点|what time|今天星期|what day",
)


def _count(text: str, subs: tuple[str, ...]) -> int:
    return sum(text.count(x) for x in subs)


@dataclass(frozen=True, slots=True)
class Signals:
    tokens: int  # estimated
    code: int
    math: int
    steps: int
    constraints: int
    translate: bool
    chitchat: bool
    turns: int
    questions: int


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    signals: Signals
    contributions: dict[str, float] = field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    """~1 token per CJK character, ~4 characters per token otherwise: close enough to route on."""
    cjk = len(_CJK.findall(text))
    return cjk + max(0, len(text) - cjk) // 4 + 1


# Beyond this, only the head and tail are scanned: instructions sit at the start or the end of a long
# prompt, and the regexes cost ~0.3 us per character each. The length signal still sees all of it.
_SCAN = 1200


def signals(last_user: str, turns: int) -> Signals:
    tokens = estimate_tokens(last_user)
    if len(last_user) > _SCAN:
        last_user = last_user[: _SCAN * 2 // 3] + "\n" + last_user[-_SCAN // 3 :]
    text = last_user.lower()
    words = _WORD.findall(text)
    return Signals(
        tokens=tokens,
        code=sum(w in _CODE_W for w in words) + _count(text, _CODE_S),
        math=sum(w in _MATH_W for w in words) + _count(text, _MATH_S) + len(_MATH_RX.findall(text)),
        steps=sum(w in _STEP_W for w in words) + _count(text, _STEP_S),
        constraints=sum(w in _CONSTRAINT_W for w in words) + _count(text, _CONSTRAINT_S) + len(_BULLET.findall(text)),
        translate=_count(text, _TRANSLATE_S) > 0,
        chitchat=bool(_CHITCHAT.search(text)),
        turns=turns,
        questions=last_user.count("?") + last_user.count("？"),
    )


WEIGHTS = {
    "bias": -2.2,
    "length": 0.55,  # per doubling of length beyond ~8 tokens
    "code": 1.3,
    "math": 1.1,
    "steps": 0.9,
    "constraints": 0.45,
    "translate": 1.6,
    "chitchat": -2.0,
    "turns": 0.15,
    "questions": 0.25,
}


def score(last_user: str, turns: int = 1) -> Score:
    s = signals(last_user, turns)
    w = WEIGHTS
    parts = {
        "bias": w["bias"],
        "length": w["length"] * max(0.0, math.log2(max(s.tokens, 1) / 8)),
        "code": w["code"] * min(s.code, 3),
        "math": w["math"] * min(s.math, 3),
        "steps": w["steps"] * min(s.steps, 3),
        "constraints": w["constraints"] * min(s.constraints, 4),
        "translate": w["translate"] * s.translate,
        "chitchat": w["chitchat"] * s.chitchat,
        "turns": w["turns"] * min(max(turns - 1, 0), 10),
        "questions": w["questions"] * min(max(s.questions - 1, 0), 3),
    }
    z = sum(parts.values())
    return Score(1.0 / (1.0 + math.exp(-z)), s, parts)

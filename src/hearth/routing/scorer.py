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
_CODE = re.compile(
    r"```|\bdef |\bclass |\bimport |\bfunction\b|\breturn\b|=>|\bSELECT\b|\bregex\b|\bSQL\b|\bAPI\b|"
    r"\bpython\b|\bjava(script)?\b|\bc\+\+|\brust\b|\bgolang\b|\bbash\b|\bcode\b|\bdebug|\bcompile|\bbug\b|"
    r"[{};]\s*$|代码|函数|编程|程序|脚本|报错|调试",
    re.IGNORECASE | re.MULTILINE,
)
_MATH = re.compile(
    r"\d+\s*[-+*/^=]\s*\d+|\bsolve\b|\bcalculate\b|\bcompute\b|\bequation\b|\bprove\b|\bproof\b|\bintegral\b|"
    r"\bderivative\b|\bprobability\b|\bhow many\b|\bhow much\b|\bpercent|\\frac|\\sum|计算|求解|证明|方程|概率|多少",
    re.IGNORECASE,
)
_STEPS = re.compile(
    r"\bstep[- ]by[- ]step\b|\bexplain\b|\bwhy\b|\banaly[sz]e\b|\banalysis\b|\bcompare\b|\bevaluate\b|\bdesign\b|"
    r"\bplan\b|\bstrateg|\btrade-?offs?\b|\bpros and cons\b|\bimplement\b|\boptimi[sz]e\b|\bsummari[sz]e\b|"
    r"\bfirst\b.*\bthen\b|\bdraft\b|\bessay\b|\bstory\b|\bpoem\b|\barticle\b|\breport\b|\brewrite\b|\bcritique\b|"
    r"分析|比较|解释|为什么|设计|规划|方案|步骤|总结|评估|优化|实现|写一篇|文章|故事|诗|报告|改写",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(
    r"\bmust\b|\bshould\b|\bat least\b|\bat most\b|\bexactly\b|\bwithout\b|\bonly\b|\bformat\b|\bjson\b|"
    r"\bwords?\b|\bbullet|\btable\b|^\s*(\d+[.)]|[-*•])\s|必须|不要|至少|最多|不超过|格式|字以内|要求",
    re.IGNORECASE | re.MULTILINE,
)
_TRANSLATE = re.compile(
    r"\btranslat|\bin (english|chinese|french|german|spanish|japanese)\b|翻译|译成|英文|中文版", re.I
)
_CHITCHAT = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|thx|bye|goodbye|good (morning|night|evening)|ok(ay)?|cool|great|yes|no|"
    r"sure|how are you|what'?s up|who are you)\b|^\s*(你好|您好|嗨|谢谢|多谢|再见|拜拜|早上好|晚安|好的|嗯|是的|不是|"
    r"你是谁|在吗)|天气|weather|几点|what time|今天星期|what day",
    re.IGNORECASE,
)


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


def signals(last_user: str, turns: int) -> Signals:
    return Signals(
        tokens=estimate_tokens(last_user),
        code=len(_CODE.findall(last_user)),
        math=len(_MATH.findall(last_user)),
        steps=len(_STEPS.findall(last_user)),
        constraints=len(_CONSTRAINT.findall(last_user)),
        translate=bool(_TRANSLATE.search(last_user)),
        chitchat=bool(_CHITCHAT.search(last_user)),
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

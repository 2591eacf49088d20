# ruff: noqa: E501  (the phrase lists read best one alternation per line; CJK counts double in line width)
"""What the latest turn of a conversation is for: rules over the turn, read against the turns before it.

Why rules and not a model: the labels that steer the pipeline (greeting, thanks, continuation,
correction, time-sensitive) are said with a small set of phrases in each language, a rule costs tens of
microseconds where even MiniLM costs milliseconds on the event loop, and a wrong rule can be read and
fixed by an operator. `benchmarks/intent.py` compares this with nearest-prototype search over the
embedding models on a labelled set.

The conversation is the one the request carries: no server-side session is needed, so any replica
labels any turn the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import get_args

from hearth.config.models import IntentLabel
from hearth.convo import text as tx
from hearth.core.types import Intent, Message

LABELS: tuple[str, ...] = get_args(IntentLabel)  # one list: what configs may name is what the rules produce
TASKS = ("code", "translate", "analyse", "write", "summarise")
# The label that decides, most specific first (social labels decide only when the turn is nothing else).
PRIORITY = ("correction", "clarification", "task_continuation", "topic_switch", "time_sensitive", "task", "question",
            "chit-chat")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_W = r"(?<![a-z])"  # a word start for English words next to Han text, where \b does not help
_WAKE = _rx(r"^\s*(小智小智|小智|小爱同学|小度小度|天猫精灵|hey siri|ok google|hey google|alexa|hey hearth)[,，!！\s]*")

GREETING = _rx(
    r"^(hi+|hello+|hey+|hiya|howdy|yo|greetings|good (morning|afternoon|evening|day)|morning|evening|"
    r"(你好)+|您好|嗨+|(哈喽)+|哈啰|嘿|又见面|好久不见|早上好|早安|早啊|中午好|下午好|晚上好|在吗|在不在|有人吗|hello there)"
    r"(?=$|[\s,，.。!！~～?？:：]|呀|啊|哦)"
)
FAREWELL = _rx(
    _W + r"(bye+|goodbye|good bye|see (you|ya)|good ?night|talk (to you )?(later|soon)|gotta go|have to go|"
    r"have a (nice|good|great) (day|night|evening|weekend|one)|that'?s all|that is all|i'?m done|we'?re done|"
    r"take care|later!|catch you later|signing off|cya|gotta run|got to run|logging off|log off|off to bed|"
    r"night!|nighty|that'?s it (from me|for (now|today))|that'?ll be all|that will be all|all for (now|today))|"
    r"不聊了|回头再聊|就这样\W*$|先下了|我先下|没别的事|下次再(来|问|聊)|\b拜\b|拜\W*$|先这样|就到这|先撤|先走了|去忙了|要开会了|再见|拜拜|晚安|先这样|就这样吧|就这些|下次(再)?聊|回头聊|"
    r"回头见|明天见|没事了|没别的了|没有了谢谢|不用了|先不聊了|撤了|886\b|88\b"
)
THANKS = _rx(
    _W + r"(thanks?|thank (you|u)|thx|tysm|ty\b|much appreciated|appreciate (it|that|your help)|cheers\b|"
    r"you'?re (a )?(lifesaver|star|the best)|that (helps|helped)|very helpful|great help|3q)|谢谢|多谢|感谢|谢啦|谢了|谢拉|"
    r"辛苦(了|啦)|太感谢|麻烦你了|帮大忙"
)
CHITCHAT = _rx(
    _W + r"(how are you|how'?s it going|how are things|how have you been|what'?s up|sup\b|how do you feel|"
    r"are you (a robot|human|real|ok|okay|alive|happy|bored|there)|who are you|what'?s your name|your name|"
    r"do you (like|love|enjoy|have (feelings|friends|a)|dream|ever)|your favou?rite|i'?m (so )?(bored|tired|sad|"
    r"happy|lonely|sleepy|hungry|excited|stressed|exhausted)|i feel|tell me a joke|a joke|make me laugh|"
    r"lol\b|haha|hehe|nice\b|cool\b|awesome|wow\b|i see\b|got it|okay\b|ok\b|sure\b|interesting|"
    r"you'?re (funny|smart|cute|great|awesome|annoying|stupid)|i love you|sing (me )?a song|good bot|"
    r"what do you think of me|let'?s chat|just chatting|talk to me|(do|would|will|are|have|did) you (ever|believe|"
    r"think|get|feel|prefer|sleep|eat|dream)|if you were|are you (smarter|better|alive|conscious|sentient)|ugh\b|"
    r"mondays|so proud|finally (finished|did|got)|i (finally|just) \w+|feeling (down|great|good|bad|low)|"
    r"yes or no\?|pick one)|你好吗|最近(怎么样|好吗|咋样)|过得(怎么样|好吗)|"
    r"无聊|好累|好困|好饿|开心|难过|伤心|郁闷|烦死|心情|你喜欢|你爱|你(是|叫)(谁|什么名字)|你几岁|你多大|你是机器人|"
    r"你是真人|讲个笑话|说个笑话|笑话|哈哈|嘿嘿|呵呵|嗯嗯|好的|好吧|是吗|真的吗|厉害|牛|你真(棒|聪明|笨|好)|陪我聊|"
    r"聊聊天|聊天吧|唱首歌|我爱你|想你|睡不着|你会做梦|你有感情|你吃饭了吗|吃了吗|你(相信|觉得我|会不会|有名字|有没有|"
    r"累|困|怕|孤单|开心)|你(觉得|是不是|是男|是女|是人|是真|喜欢)|好烦|烦死|躺平|终于|被.{0,4}骂|周五了|放假了"
)
QUESTION = _rx(
    r"[?？]\s*$|^((and|also|so|but|ok|okay|hey|hi|well|oh|um|btw|then|wait)[,\s]+)*(what|what'?s|whats|why|how|when|where|who|whose|which|is|are|am|was|were|can|could|do|does|did|"
    r"should|will|would|has|have|may|might|shall|isn'?t|aren'?t|don'?t|doesn'?t|tell me (about|why|how|what|"
    r"when|where|who)|i (wonder|want to know)|any idea)\b|"
    r"吗\s*[?？。!]?\s*$|呢\s*[?？。]?\s*$|么\s*[?？]?\s*$|什么|怎么|怎样|如何|为什么|为啥|哪|谁|多少|几(个|点|号|岁|天|年|月|次|种|分钟|小时|周|遍)|(\w)不\2|"
    r"多(长|大|高|远|重|宽|深|久|贵|快|少)|是否|是不是|能不能|可不可以|会不会|有没有|要不要|对不对|好不好|行不行|请问|想知道|知道.{0,20}吗|啥|咋|多久|"
    r"还是.{1,10}[啊呀呢吗]?\W*$"
)
# Live data: the answer is out of date as soon as it is given.
TIME = _rx(
    _W + r"(weather|forecast|temperature (outside|today|now)|(will|is) it (rain|snow)|news|headlines?|stock price|"
    r"share price|stock market|exchange rate|bitcoin|(latest|newest) \w+|when is the next|how many days (until|till|to|left)|"
    r"price (of|now|today)|how much is .{0,40} (now|today)|scores?\b|"
    r"who won|live score|breaking|trending|what time is it|what'?s the time\W*$|time is it|what day is (it|today)|"
    r"what'?s the date|today'?s date|date today|still open|open (now|today)|traffic|flight status|delays?\b|"
    r"election results|latest (version|release|news|update|model|iphone)|newest (version|release|model)|"
    r"current (version|price|president|prime minister|ceo|champion|rate|time|date)|next full moon|next holiday)|"
    r"天气|气温|下雨|下雪|刮风|雾霾|空气质量|新闻|热搜|头条|股价|股市|大盘|汇率|油价|金价|币价|比分|赛果|几点了|现在几点|"
    r"几号|星期几|礼拜几|实时|行情|路况|堵车|开门了吗|还开着|最新(版本?|消息|款|的)|现在还(维护|有|开|卖)|上市了吗|发布了吗|比赛结果|还有几天|还有多久|下次.{0,6}什么时候|堵不堵"
)
# Relative dates: time-sensitive only in a question for information ("what's on tonight?"), not in work
# ("write a sick-leave email, I'm ill tomorrow") or small talk ("how are you today?").
TIME_WEAK = _rx(
    _W + r"(today|tonight|tomorrow|yesterday|right now|at the moment|currently|this (week|weekend|month|year)|"
    r"next (week|month)|recently|these days|so far this)|今天|今日|明天|昨天|昨晚|今早|今晚|后天|现在|此刻|目前|当前|最近|近期|"
    r"这(周|个月|星期|礼拜)|本(周|月)|今年"
)
# Interjections before the instruction: "ok, next paragraph", "love it, make it longer", "好的 继续".
_LEAD = re.compile(
    r"^((ok(ay)?|great|cool|nice|good|perfect|awesome|love it|thanks|thank you|yes|yeah|yep|sure|alright|right|hmm|"
    r"好的?|嗯+|行|可以|不错|很好|谢谢)[\s,，.。!！~～]+)+",
    re.IGNORECASE,
)
CONTINUATION = _rx(
    r"^(and |so |ok |now )*(please )?(continue|go on|keep going|carry on|keep writing|go ahead|proceed|more|next|and then|"
    r"then\?|what else|anything else|what'?s next|and\?|finish (it|that|the)|complete (it|that|the rest)|"
    r"the rest|rest of it|one more|another one|some more|more please|give me more|write more|"
    r"(now )?(do|make|write) (the )?(same|another|one more|a similar)|same (for|with|but)|"
    r"(now|also|then) (do|make|add|write|translate|convert|rewrite|change)|(make|keep) it (longer|going)|"
    r"expand (it|on (it|that|this))|extend (it|that)|part 2|part two|next (part|scene|chapter|step|one|section|"
    r"verse|paragraph|item|page)|do the next|add (another|more|a few more))\b|"
    r"^(请)?(继续|接着|接下来|然后呢|然后|还有呢|还有吗|还有别的|再来|再写|再给|再多|再举|再说|再列|下一|往下|后面呢|"
    r"后续|多写|写长|写完|说完|讲完|把剩下|剩下的|同样|照这样|按这个|再加|加上|另外再|也(帮|给)我|下面呢)|"
    r"(give me|write|list|add|show me) (\d+|a few|some|two|three|five|ten) more|what happens next|\bas well\??$|"
    r"(the )?(next|following) (one|paragraph|section|chapter|part|scene|step|verse)|(make|keep) it (a bit |a little )?"
    r"(longer|shorter|more|less|simpler|funnier|formal|casual)|(也|照这样|同样|一样)(总结|改|写|翻译|处理|来)|"
    r"第[一二三四五六七八九十\d]+(章|节|部分|段|个|条|幕|集).{0,6}(写|展开|总结|改|翻译)|(语气|再|更)(正式|口语|简单|短|长|详细)|继续\W*$|接着(写|说|来)|再补|补(几|一)个|再来(几|一)个|"
    r"没(写|说)完"
)
# A new instruction about the work just done ("add tests too", "now in French") carries the task on.
_SAME_WORK = _rx(
    _W + r"(too|as well|also|again|instead|now|it|that|this|them|the (code|function|email|story|poem|list|text|"
    r"query|script|letter|summary|translation|table))\b|也|再|还|一下|这个|那个|它|改成|换成|加上|去掉"
)
CLARIFY = _rx(
    _W + r"(what do you mean|what did you mean|what does (that|this|it|that word|the \w+) mean|meaning of|"
    r"i don'?t (understand|get it|follow)|don'?t get it|not sure i (understand|follow)|confused|confusing|"
    r"can you (explain|clarify|elaborate|rephrase|simplify)|could you (explain|clarify|elaborate|rephrase|"
    r"simplify)|please (explain|clarify|elaborate)|explain (that|this|it|the|what you|why)|elaborate|"
    r"in (simpler|plain|other) (terms|words|english)|more simply|simpler|eli5|say (that|it) again|come again|"
    r"repeat that|which (one|step|part) (do you|did you)|what is that\??$|what'?s that\??$|how so|why\??$|"
    r"why not\??$|really\?$|such as\??$|for example\??$|like what\??$|what about (it|that)|step \d|"
    r"the (first|second|third|last) (step|point|part|one)|you said|you mentioned|your (answer|last|previous)|"
    r"(an )?example of (that|this|it)|show me an example|huh\??$|what\?+$|lost me|does that mean|so that means|"
    r"when you say|mean here|what'?s the difference between (1|2|3|one|two|the two|them|those)|is that \w+)|"
    r"没懂|换个说法|举个例子|比如说|什么叫|是啥|啥叫|"
    r"什么意思|啥意思|是指什么|指的是|具体(是|指|点|说说|怎么)|没听懂|听不懂|不明白|不太懂|不懂|看不懂|没看懂|解释一下|"
    r"解释下|详细(说|讲|解释|点)|展开(说|讲)|说得?简单|通俗|说清楚|再说一遍|再讲一遍|比如(说)?呢|举个例子|为什么(呢)?[?？]?$|"
    r"为啥[?？]?$|怎么说|你说的|你刚才|刚才(说|那|的)|上面(说|的|那)|第[一二三四五六七八九十\d]+(步|点|条|个)"
)
CORRECTION = _rx(
    r"^(no+|nope|nah|wrong|incorrect|not quite|not really|not that|not exactly|that'?s not)\b|"
    + _W
    + r"(i meant|i mean\b|what i meant|i was asking|i asked (for|about)|i said|i didn'?t (ask|mean|say|want)|"
    r"that'?s (wrong|not right|incorrect|not what|not it|a mistake)|that is (wrong|not right|incorrect|not what)|"
    r"you('re| are) wrong|you got it wrong|you misunderstood|misunderstood|misread|you made a mistake|"
    r"it should be|should have been|actually,? (it|i|the|that|he|she|they)|not \w+,? but|instead of|"
    r"wrong (answer|language|one|file|year|person|city|number)|rather than|not what i (asked|wanted|meant)|"
    r"try again|that doesn'?t (work|compile|run|look right)|still (wrong|broken|not)|doesn'?t work|"
    r"doesn'?t look right|other way (round|around)|my mistake|pretty sure (it|that|he|she)|though\W*$|"
    r"it (raises|throws|gives|returns|prints|fails)|this gives me|expects|should (appear|be|have|return|say)|"
    r"i'?m (on|using) (a |an )?\w+|i use (a |an )?\w+\W*$|not (a|an|the|for) \w+\W*$)|"
    r"^(不对|不是|错了|不不|不,|不，)|不对|不是这个|不是那个|不是我要的|我是说|我的意思是|我说的是|我问的是|我要的是|"
    r"搞错|弄错|错了|理解错|误会|看错|写错|说错|应该是|明明是|而不是|不是.{1,12}而是|重新(来|写|回答)|还是不对|还是错|跑不起来|报错了|"
    r"不是\S{1,8}\W*$|我(要|用|用的)是|只要出现|会有重复|在前面|在后面|吧\W*$"
)
# Opens a turn that leans on the one before ("and its price?", "那价格呢").
FOLLOW_START = _rx(
    r"^(and|so|but|then|what about|how about|and what about|and how|and why|and when|and where|"
    r"and who|what if|same for|is it|are they|does it|do they|can it|was it|were they)\b|^(那|那么|那它|那这)"
)
FOLLOW = _rx(
    _W + r"(it|its|it'?s|they|them|their|theirs|those|these|that one|this one|the same|he|she|him|her|his|"
    r"there|that|this|such)\b|^(也|它|他|她|这|那个|这个|其|该)|(它|他|她|其|那个|这个|这些|那些|"
    r"上面|前面|刚才|之前|同样|也是|呢\s*[?？]?\s*$)"
)
SWITCH = _rx(
    _W + r"(by the way|btw|another question|different question|unrelated|off topic|off-topic|change (of|the) "
    r"subject|new topic|something else|switching gears|on another note|random question|quick question|"
    r"one more thing|also,? (can|could) you|^also,? (how|what|why|where|who|when|can|is|do))|^还有[\s，,]+\S{4}|顺便问|换个话题|另外问|另一个问题|题外话|话说|对了|问个别的|说点别的|"
    r"还有个问题|再问一个|突然想问"
)

_KINDS: list[tuple[str, re.Pattern[str]]] = [
    (
        "translate",
        _rx(
            _W + r"(translate|translation|translating|how (do|would) (you|i) say|say .{0,60} in (english|chinese|french|"
            r"german|spanish|japanese|korean|italian|russian|portuguese|arabic)|in (english|chinese|mandarin|french|"
            r"german|spanish|japanese|korean)\b|into (english|chinese|french|german|spanish|japanese|korean))|翻译|"
            r"译成|译为|(用|换成|改成|翻成)(英文|英语|中文|汉语|日文|日语|法语|德语|韩语|西班牙语)|英文怎么说|英语怎么说|中文(怎么说|是什么)|"
            r"(英文|英语|日语|中文)(版|怎么讲)"
        ),
    ),
    (
        "summarise",
        _rx(
            _W
            + r"(summari[sz]e|summary|summarising|summarizing|tl;?dr|sum (it |this |that )?up|key (points|takeaways)|"
            r"main points|condense|shorten|boil (it|this) down|in (one|a few|two|three) (sentences?|words|lines|bullet)|"
            r"recap|gist|outline the main)|总结|概括|摘要|归纳|简述|提炼|要点|缩写成|精简|压缩(成|到)|一句话(说|讲|概括)|"
            r"简单说说|中心思想|主要内容"
        ),
    ),
    (
        "code",
        _rx(
            _W + r"(code|coding|function|script|program|python|java\b|javascript|typescript|\bjs\b|rust|golang|c\+\+|"
            r"c#|sql|regex|regular expression|bash|shell|powershell|html|css|react|vue|django|flask|api|json|yaml|"
            r"bug|debug|stack ?trace|exception|compile|compiler|refactor|unit tests?|class\b|method|algorithm|"
            r"leetcode|git\b|docker|kubernetes|query|endpoint|dockerfile|makefile|loop|recursion|variable|"
            r"snippet|pandas|numpy|excel formula|linux command|command line|terminal|npm|pip\b|traceback|"
            r"segfault|null pointer|error:|syntaxerror|typeerror|def |import |=>|\{|\};)|代码|函数|脚本|程序|编程|"
            r"报错|正则|接口|算法|数据库|查询语句|调试|重构|单元测试|前端|后端|爬虫|编译|变量|循环|递归|类和|python|java"
        ),
    ),
    (
        "analyse",
        _rx(
            _W + r"(analy[sz]e|analysis|compare|comparison|versus|\bvs\.?\b|pros and cons|advantages and "
            r"disadvantages|evaluate|evaluation|assess|assessment|review (my|this|the)|critique|difference between|"
            r"differences between|which is better|better for|trade-?offs?|swot|break down|breakdown|interpret|"
            r"insights?|trend|correlat|root cause|why did .{0,60} (drop|rise|fall|increase|decrease))|分析|比较|对比|"
            r"优缺点|优劣|利弊|评估|评价一下|区别|差别|不同之处|哪个(更)?好|哪个更|异同|诊断|原因是什么|趋势|解读|拆解|点评"
        ),
    ),
    (
        "write",
        _rx(
            _W + r"(write|draft|compose|create|generate|come up with|brainstorm|make (me )?(a|an|some)|give me (a|an|"
            r"some|\d+)|suggest (a|an|some|\d+)|poem|haiku|story|essay|email|e-mail|letter|cover letter|resume|cv\b|"
            r"speech|toast|slogan|tagline|headline|caption|tweet|post\b|blog|article|lyrics|song|script|screenplay|"
            r"storyboard|outline|plan\b|itinerary|recipe|menu|list of|names? for|title for|description for|"
            r"bio\b|ad copy|advert|pitch|proposal|report|invitation|message to|reply to|respond to|rewrite|rephrase|"
            r"paraphrase|polish|proofread|improve (my|this)|edit (my|this))|写|起草|拟|撰写|创作|编(一|个|首|段|篇)|"
            r"作文|文案|诗|故事|邮件|信|演讲稿|稿子|剧本|脚本|口号|标语|广告|标题|简介|朋友圈|小红书|微博|祝福语|贺词|"
            r"起个名|取个名|取名|起名|推荐几个|列(一|个|出)|计划|方案|攻略|菜谱|食谱|改写|润色|扩写|仿写|续写"
        ),
    ),
]
IMPERATIVE = _rx(
    r"^((hey|hi|ok|okay|so)[, ]+)?(please |pls |(can|could|would|will) (you|u) (please )?|help me |i need you to |"
    r"i want you to |i'?d like you to |let'?s |now )?(write|draft|compose|create|generate|make|build|implement|fix|debug|refactor|"
    r"optimi[sz]e|convert|translate|summari[sz]e|analy[sz]e|compare|evaluate|review|explain this|rewrite|"
    r"rephrase|list|give me|plan|design|calculate|solve|find|sort|format|draw|outline|suggest|recommend|"
    r"brainstorm|prepare|edit|proofread|check|add|remove|change|update|turn|shorten|expand|extract|classify|"
    r"tag|parse|count|help me (write|with|fix|make|plan|draft|understand))\b|"
    r"^(请|麻烦|帮我|帮忙|给我|替我|你能|能不能|可以|能否|我想让你|我需要你|用\w{1,10})?.{0,3}(写|做|生成|翻译|总结|概括|分析|比较|"
    r"对比|修改|改一下|改成|优化|修复|检查|列出|列个|整理|设计|计算|算一下|解决|实现|画|规划|制定|推荐|起个|编|润色|"
    r"改写|转换|转成|提取|归纳)|帮我|帮忙|"
    r"(can|could|would|will) (you|u) (please |help me )?(write|draft|compose|create|generate|make|build|implement|fix|"
    r"debug|refactor|translate|summari[sz]e|analy[sz]e|compare|review|rewrite|list|plan|design|calculate|solve|"
    r"check|explain this|put this)\b"
)


def _social_only(text: str, *patterns: re.Pattern[str]) -> bool:
    """Is the turn nothing but these phrases (and names, punctuation, emoji, filler)?"""
    rest = text
    for p in patterns:
        rest = p.sub(" ", rest)
    rest = re.sub(r"[\W\d_]+", " ", rest).strip().lower()
    words = [w for w in rest.split() if w not in _FILLER]
    han = sum(len(w) for w in words if tx.han_share(w) > 0.5)
    return len([w for w in words if tx.han_share(w) <= 0.5]) <= 2 and han <= 3


_FILLER = frozenset(
    "so much very a lot again for the help your you it that this all and ok okay guys buddy friend mate man "
    "bot assistant dear there everyone everybody folks sir madam 啊 呀 哦 啦 了 的 哈".split()
)


_TO_ASSISTANT = _rx(r"\byou(r|rs|rself)?\b|\bu\b|你")
_ANALYSIS = _rx(r"pros and cons|advantages and disadvantages|analy[sz]|evaluat|assess|swot|利弊|优缺点|优劣|分析|评估")


# Characters of any one turn that are read: intents are in the first lines, and every pattern then costs
# microseconds whatever a client pastes (bodies may be megabytes).
_MAX_READ = 2000


def _request_part(text: str) -> str:
    """The user's own words: the first lines before pasted material ("Summarise this:\n\n<article>")."""
    m = re.search(r"[:：]\s*\n|\n\s*\n|```", text)
    head = text[: m.start() + 1] if m and m.start() > 0 else text
    return head[:400]


def _about_answer(question: str, answer: str) -> bool:
    """Does a question ask about words of the previous answer ("what does 'amortization' mean?")?"""
    if not answer or not re.search(
        r"\b(mean|means|meant|that|this|those|these|here|it|do|does|stand for)\b|什么意思|是啥|是什么|啥|干嘛|"
        r"为什么|是不是说",
        question,
        re.IGNORECASE,
    ):
        return False
    q = tx.bag(question)
    return bool(q) and tx.overlap(q, tx.bag(answer)) >= 0.5


class IntentTracker:
    """Labels the latest user turn of a conversation. Stateless and thread-safe."""

    def __init__(self, drift_threshold: float = 0.85) -> None:
        self.drift_threshold = drift_threshold

    def track(self, messages: Sequence[Message], conversation: str | None = None) -> Intent:
        if messages and messages[-1].role == "tool":
            # A tool result handed back: the model carries on with the call it made (and should stay the same).
            return Intent("task_continuation", ("task_continuation",), None, 0.0, True, conversation)
        turns = [m for m in messages if m.role in ("user", "assistant")]
        last = turns[-1].content if turns and turns[-1].role == "user" else ""
        history = turns[:-1] if last else turns
        return self.label(last, history, conversation)

    def label(self, last: str, history: Sequence[Message], conversation: str | None = None) -> Intent:
        text = _WAKE.sub("", last[:_MAX_READ]).strip()
        head = _request_part(text)  # pasted material (after "...:\n") does not decide the intent
        bare = _LEAD.sub("", head)
        labels: set[str] = set()
        answered = any(m.role == "assistant" for m in history)
        prior_users = [m.content for m in history if m.role == "user"]
        previous_answer = next((m.content[:_MAX_READ] for m in reversed(history) if m.role == "assistant"), "")
        drift = self._drift(head, history)
        n_terms = len(tx.terms(head))
        chitchat = bool(CHITCHAT.search(head))
        correcting = bool(CORRECTION.search(head))
        continuing = bool(CONTINUATION.search(bare))
        prev_kind = self._task(_request_part(prior_users[-1])) if prior_users else None  # the task asked before
        # A pronoun leans on earlier turns only where the turn does not name its own subject: "fix this script"
        # about a new topic is not a follow-up, "and its price?" is.
        follow = bool(history) and (
            bool(FOLLOW_START.search(bare)) or (bool(FOLLOW.search(head)) and (n_terms <= 4 or drift < 0.9))
        )

        if GREETING.search(head) and (not history or _social_only(head, GREETING, CHITCHAT)):
            labels.add("greeting")
        if FAREWELL.search(head):
            labels.add("farewell")
        if THANKS.search(head):
            labels.add("thanks")
        social = set(labels)
        task = self._task(head)
        asks = bool(QUESTION.search(head))
        if social and (
            _social_only(head, GREETING, FAREWELL, THANKS, CHITCHAT)
            or (labels & {"farewell", "thanks"} and not asks and task is None and not correcting)
        ):
            if chitchat and "greeting" in labels and not labels & {"farewell", "thanks"}:
                labels.add("chit-chat")  # "hi, how are you?" is small talk that opens with a greeting
            return self._done(labels, None, drift, False, conversation)

        if answered and correcting and not (asks and not CORRECTION.search(bare[:40])):
            labels.add("correction")
        if (
            answered
            and not labels & {"correction"}
            and not continuing
            and len(head) <= 160
            and (CLARIFY.search(head) or (asks and _about_answer(head, previous_answer)))
        ):
            labels.add("clarification")
        if (
            answered
            and not labels & {"correction", "clarification"}
            and (
                continuing
                or (
                    prev_kind is not None
                    and (task is not None or IMPERATIVE.search(bare))
                    and _SAME_WORK.search(bare)
                    and drift < 0.95
                )
            )
        ):
            labels.add("task_continuation")
        if TIME.search(head) or (asks and task is None and TIME_WEAK.search(head) and not chitchat):
            labels.add("time_sensitive")
        if task is not None:
            labels.add("task")
        elif asks:
            labels.add("question")
        work = {"task", "time_sensitive", "task_continuation", "correction", "clarification"}
        if (chitchat and not labels & work
                and (not asks or _social_only(head, CHITCHAT) or _TO_ASSISTANT.search(head))):
            labels.add("chit-chat")  # small talk, including questions about the assistant itself
            labels.discard("question")
        if not labels - social:
            # A statement: small talk, unless it hands over material to work on.
            if asks or not text:
                labels.add("question")
            elif len(text) > 200 or "\n" in text.strip():
                labels.add("task")
                task = task or "analyse"
            else:
                labels.add("chit-chat")
        if task is None and labels & {"task_continuation", "correction"}:
            task = prev_kind  # carrying on (or fixing) the task asked before
        substantive = labels & {"question", "task", "time_sensitive"}
        if (
            prior_users
            and substantive
            and not labels & {"correction", "clarification", "task_continuation"}
            and (SWITCH.search(head) or (drift >= self.drift_threshold and not follow and n_terms >= 3))
        ):
            labels.add("topic_switch")
        return self._done(labels, task, drift, follow and "topic_switch" not in labels, conversation)

    @staticmethod
    def _task(text: str) -> str | None:
        found = [kind for kind, rx in _KINDS if rx.search(text)]
        if not found:
            return None
        imperative = bool(IMPERATIVE.search(text.strip()))
        if found[0] == "translate" or (found[0] == "analyse" and _ANALYSIS.search(text)):
            return found[0]  # "how do you say X in Japanese?", "pros and cons of X?" ask for work
        # "what is a closure in python?" asks for knowledge; "write a function..." asks for work.
        if not imperative and QUESTION.search(text) and not re.search(r"[{};=]|def |\n", text):
            return None
        if (
            not imperative
            and "write" in found
            and len(found) == 1
            and not re.search(
                r"poem|story|essay|email|letter|slogan|tweet|lyrics|script|诗|故事|作文|文案|邮件|信",
                text,
                re.IGNORECASE,
            )
        ):
            return None
        return found[0]

    @staticmethod
    def _drift(text: str, history: Sequence[Message]) -> float:
        """1 - the best cosine between this turn's terms and the recent turns' (latest weighted most)."""
        if not history:
            return 0.0
        now = tx.bag(text)
        if not now:
            return 0.0
        recent = history[-4:]
        best = 0.0
        context: Counter[str] = Counter()
        for m in recent:
            b = tx.bag(m.content[:_MAX_READ])
            context.update(b)
            best = max(best, tx.cosine(now, b))
        best = max(best, tx.cosine(now, context), tx.overlap(now, context) * 0.8)
        return round(1.0 - best, 4)

    @staticmethod
    def _done(labels: set[str], task: str | None, drift: float, follow: bool, conversation: str | None) -> Intent:
        primary = next((x for x in PRIORITY if x in labels), None)
        if primary is None or (primary == "chit-chat" and labels & {"farewell", "thanks"}):
            primary = next(x for x in ("farewell", "thanks", "greeting", "chit-chat") if x in labels)
        ordered = tuple(x for x in LABELS if x in labels)
        return Intent(primary, ordered, task if "task" in labels or "task_continuation" in labels else None,
                      drift, follow, conversation)

"""Search agents on a local corpus (Search-R1, arXiv 2503.09516), keyless: a generated world,
BM25 over its documents, a calculator, and the tags the model acts with.

An episode, as in Search-R1's loop (``search_r1/llm_agent/generation.py``):

1. the model reads a question and writes either ``<answer>...</answer>`` (the episode ends) or a
   tool call: ``<search>query</search>`` or ``<calc>expression</calc>`` (its turn stops there);
2. the environment runs the call and answers *inline*, right after the model's text, with
   `` <information>...</information>``: the top-``top_k`` documents (BM25, via ``bm25s``), the
   calculator's value, or a one-line error for a malformed call -- never an exception;
3. the model goes on; after ``max_turns`` model turns the episode ends whatever it wrote.

The ``<information>`` tokens are environment tokens: the loss, KL and entropy skip them
(``workbench.rollouts`` marks them; ``GRPOSettings.mask_environment_tokens=False`` is the
Search-R1 ablation that trains on them too).

The world (``make_world``) is deterministic from its seed: people (born in a year, in a city)
and companies (founded in a year, by a person), each written as one short document. Questions
need 0 look-ups (the fact is in the question), 1 ("When was Nora Vale born?") or 2 ("When was
the founder of Quillco born?"). Held-out questions are about a fixed set of held-out people and
companies that no training question (nor the tiny model's corpus) asks about.

Everything the model writes is parsed here in linear time and capped: a query or an expression
over its length limit is refused by length before anything else looks at it.
"""
from __future__ import annotations

import functools
import random
import re
import string
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from . import Environment, Step

TOOLS = ("search", "calc")
STOPS = tuple(f"</{t}>" for t in (*TOOLS, "answer"))   # a model turn ends at a closing tag
TOP_K = 1                  # documents per search (Search-R1: 3; 1 keeps tiny episodes short)
MAX_TURNS = 4              # up to three tool calls, then an answer
MAX_QUERY_CHARS = 200      # a longer search query is refused
MAX_CALC_CHARS = 100       # a longer calculator expression is refused
MAX_INFO_CHARS = 400       # what one observation may hold
MAX_CALL_CHARS = 400       # a longer ``<tool_call>`` body is refused before it is parsed

# A chat model with a tool-calling template (Qwen2.5, Hermes, ...) calls the same tools in its
# own format: ``<tool_call>{"name": "search", "arguments": {"query": "..."}}</tool_call>``, and
# the result comes back as a ``tool`` message its template renders (``SearchEnv(chat_tools=True)``).
TOOL_SCHEMAS = (
    {"type": "function", "function": {
        "name": "search", "description": "Search the documents (BM25); returns the best match.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                       "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "calc", "description": "Exact arithmetic: + - * / and parentheses.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                       "required": ["expression"]}}},
)
TOOL_ARGUMENT = {"search": "query", "calc": "expression"}
CHAT_INSTRUCTIONS = ("Answer the question. Call a tool when you need a fact or exact "
                     "arithmetic. Give the final answer as <answer>...</answer>.")
EPISODE_TOKENS = 160       # tiny task: prompt aside, two searches with their results and an answer
WORLD_SEED = 1234          # the world and its held-out split; independent of any run's seed


# =============================================================================================
# 1. The world and its documents
# =============================================================================================

FIRST = ("Nora", "Ivan", "Lena", "Omar", "Rita", "Hugo", "Mira", "Tom", "Ada", "Karl", "Sara",
         "Jon", "Elsa", "Paul", "Yara", "Ben", "Ines", "Leo", "Vera", "Max", "Zoe", "Finn")
LAST = ("Vale", "Stone", "Moreno", "Berg", "Hart", "Lund", "Price", "Okafor", "Brandt", "Costa",
        "Novak", "Reyes", "Frost", "Hale", "Quinn", "Marsh", "Duval", "Kerr", "Rossi", "Sato",
        "Weller", "Abara", "Lindqvist", "Tan", "Park", "Moss", "Grant", "Ibsen")
CITIES = ("Tarsk", "Ulmo", "Brevik", "Caldera", "Dunmore", "Eskar", "Fallow", "Gorran",
          "Halvard", "Istra", "Jorvik", "Kelmar")
CO_HEAD = ("Quill", "Vanta", "Orbi", "Lumo", "Kest", "Zeph", "Tarn", "Mira", "Sol", "Brio",
           "Nexa", "Fjord", "Cora", "Dyna", "Helio", "Pyra")
CO_TAIL = ("co", "tek", "works", "ia", "lab", "soft", "net", "gen")


@dataclass(frozen=True)
class Person:
    name: str
    born: int
    city: str


@dataclass(frozen=True)
class Company:
    name: str
    founded: int
    founder: str            # a Person's name


@dataclass(frozen=True)
class World:
    """People, companies and their documents; ``held_out`` names never asked about in training."""

    people: tuple[Person, ...]
    companies: tuple[Company, ...]
    held_out: frozenset              # names (people and companies) of held-out questions
    seed: int

    @functools.cached_property
    def by_name(self) -> dict:
        return {e.name: e for e in (*self.people, *self.companies)}

    @functools.cached_property
    def documents(self) -> tuple[str, ...]:
        """One short document per entity (people first), in a fixed order."""
        return tuple(document(e) for e in (*self.people, *self.companies))


def document(entity) -> str:
    """The entity's document: ``"Nora Vale: born 1961 in Tarsk."``."""
    if isinstance(entity, Person):
        return f"{entity.name}: born {entity.born} in {entity.city}."
    return f"{entity.name}: founded {entity.founded} by {entity.founder}."


@functools.lru_cache(maxsize=4)
def make_world(seed: int = WORLD_SEED, *, people: int = 300, companies: int = 120,
               held_out: float = 0.2) -> World:
    """The world for ``seed``: ``people`` people, ``companies`` companies, ``held_out`` of each
    reserved for held-out questions. Same seed, same world (documents included)."""
    names = [f"{a} {b}" for a in FIRST for b in LAST]
    cos = [a + b for a in CO_HEAD for b in CO_TAIL]
    if people > len(names) or companies > len(cos):
        raise ValueError(f"at most {len(names)} people and {len(cos)} companies")
    rng = random.Random(seed)
    ps = tuple(Person(n, rng.randint(1900, 1989), rng.choice(CITIES))
               for n in rng.sample(names, people))
    founders = {}
    cs = []
    for n in rng.sample(cos, companies):
        f = rng.choice(ps)
        founders[n] = f
        cs.append(Company(n, f.born + rng.randint(20, 45), f.name))
    out = set()
    for group in (ps, cs):
        out |= {e.name for e in rng.sample(group, max(1, round(len(group) * held_out)))}
    return World(people=ps, companies=tuple(cs), held_out=frozenset(out), seed=seed)


# Question kinds: (kind, hops, template, what the gold is)
KINDS = {
    "given_year": (0, "{name} was born in {born}. When was {name} born?"),
    "born_year": (1, "When was {name} born?"),
    "born_city": (1, "Where was {name} born?"),
    "founded_year": (1, "When was {name} founded?"),
    "founder": (1, "Who founded {name}?"),
    "founder_year": (2, "When was the founder of {name} born?"),
    "founder_city": (2, "Where was the founder of {name} born?"),
}
PERSON_KINDS = ("given_year", "born_year", "born_city")
COMPANY_KINDS = ("founded_year", "founder", "founder_year", "founder_city")


def question(world: World, kind: str, name: str) -> str:
    e = world.by_name[name]
    return KINDS[kind][1].format(name=name, born=getattr(e, "born", ""))


def hops(kind: str) -> int:
    return KINDS[kind][0]


def gold(world: World, kind: str, name: str) -> str:
    e = world.by_name[name]
    if kind in ("given_year", "born_year"):
        return str(e.born)
    if kind == "born_city":
        return e.city
    if kind == "founded_year":
        return str(e.founded)
    founder = world.by_name[e.founder]
    return {"founder": founder.name, "founder_year": str(founder.born),
            "founder_city": founder.city}[kind]


def lookups(world: World, kind: str, name: str) -> list[str]:
    """The queries a careful agent makes, in order (none for a 0-hop question)."""
    if hops(kind) == 0:
        return []
    if kind in ("born_year", "born_city"):
        return [f"{name} born"]
    if hops(kind) == 1:
        return [name]
    return [name, f"{world.by_name[name].founder} born"]


# =============================================================================================
# 2. Tools: BM25 search and a bounded calculator
# =============================================================================================

class SearchIndex:
    """BM25 over the world's documents (``bm25s``: sparse-matrix BM25, numpy only, ~1 ms a query
    here). ``search(query, k)`` returns the top ``k`` documents that share a word with the
    query, best first -- none when no word matches."""

    def __init__(self, documents: tuple[str, ...]):
        import bm25s

        self.documents = tuple(documents)
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(list(self.documents), stopwords="en",
                                        show_progress=False), show_progress=False)

    def search(self, query: str, k: int = TOP_K) -> list[str]:
        import bm25s

        words = bm25s.tokenize([query[:MAX_QUERY_CHARS]], stopwords="en", return_ids=False,
                               show_progress=False)[0]
        if not words:
            return []
        ids, scores = self._bm25.retrieve([words], k=min(k, len(self.documents)),
                                          show_progress=False, n_threads=1)
        return [self.documents[i] for i, s in zip(ids[0], scores[0]) if s > 0]


@functools.lru_cache(maxsize=4)
def world_index(seed: int = WORLD_SEED) -> SearchIndex:
    """The search index of ``make_world(seed)`` (built once per process: ~0.1 s)."""
    return SearchIndex(make_world(seed).documents)


class CalcError(ValueError):
    """An expression the calculator refuses; the message is the observation the model sees."""


_CALC_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([-+*/()]))")
MAX_DIGITS = 12            # per number literal
MAX_DEPTH = 20             # nested parentheses
MAX_VALUE = 10 ** 15       # |intermediate result| (numerator and denominator)


def calculate(expression: str) -> str:
    """The value of ``+ - * /`` arithmetic on decimal numbers, with parentheses, as text.

    Never evaluates Python: a recursive-descent parser over at most ``MAX_CALC_CHARS``
    characters, numbers of at most ``MAX_DIGITS`` digits, ``MAX_DEPTH`` nested parentheses,
    every intermediate value (exact, as a fraction) within ``MAX_VALUE``. So it runs in time
    linear in the (capped) length and small memory. There is no power operator: ``2**9999``
    is a syntax error. Raises ``CalcError`` with a one-line reason.
    """
    if len(expression) > MAX_CALC_CHARS:
        raise CalcError(f"expression too long ({len(expression)} characters; at most "
                        f"{MAX_CALC_CHARS})")
    tokens, pos, text = [], 0, expression.strip()
    while pos < len(text):
        m = _CALC_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CalcError(f"cannot read {text[pos:pos + 10]!r}: use numbers, + - * / and ( )")
        if m.group(1) and len(m.group(1).replace(".", "")) > MAX_DIGITS:
            raise CalcError(f"a number has more than {MAX_DIGITS} digits")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    if not tokens:
        raise CalcError("empty expression")
    value, at = _expr(tokens, 0, 0)
    if at != len(tokens):
        raise CalcError(f"unexpected {tokens[at]!r}")
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def _checked(v: Fraction) -> Fraction:
    if abs(v.numerator) > MAX_VALUE * v.denominator or v.denominator > MAX_VALUE:
        raise CalcError("number too large")
    return v


def _expr(tokens, at, depth):
    value, at = _term(tokens, at, depth)
    while at < len(tokens) and tokens[at] in "+-":
        op = tokens[at]
        rhs, at = _term(tokens, at + 1, depth)
        value = _checked(value + rhs if op == "+" else value - rhs)
    return value, at


def _term(tokens, at, depth):
    value, at = _factor(tokens, at, depth)
    while at < len(tokens) and tokens[at] in "*/":
        op = tokens[at]
        rhs, at = _factor(tokens, at + 1, depth)
        if op == "/" and rhs == 0:
            raise CalcError("division by zero")
        value = _checked(value * rhs if op == "*" else value / rhs)
    return value, at


def _factor(tokens, at, depth):
    if at >= len(tokens):
        raise CalcError("the expression ends too early")
    tok = tokens[at]
    if tok == "-":                                  # unary minus (a chain is bounded by length)
        value, at = _factor(tokens, at + 1, depth + 1)
        return -value, at
    if tok == "(":
        if depth >= MAX_DEPTH:
            raise CalcError(f"more than {MAX_DEPTH} nested parentheses")
        value, at = _expr(tokens, at + 1, depth + 1)
        if at >= len(tokens) or tokens[at] != ")":
            raise CalcError("a '(' is never closed")
        return value, at + 1
    if tok[0].isdigit():
        return Fraction(tok), at + 1
    raise CalcError(f"unexpected {tok!r}")


# =============================================================================================
# 3. The model's action in one turn
# =============================================================================================

@dataclass(frozen=True)
class Action:
    """What one model turn asked for: ``kind`` is ``search`` / ``calc`` / ``answer``, or
    ``invalid`` (a malformed call: ``error`` says why) or ``none`` (no tag at all)."""

    kind: str
    content: str = ""
    error: str = ""


def parse_action(text: str) -> Action:
    """The turn's first complete ``<tag>...</tag>`` (generation stops at the first closing tag).

    Tags: Search-R1's ``<search>``, ``<calc>``, ``<answer>``, and a chat template's
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` for the same two tools.
    Linear in ``len(text)``: one ``find`` per closing tag and one ``rfind`` for its opener (no
    regex backtracking on 1 MB of ``<search>``). Content holding another tag is malformed.
    """
    tags = (*TOOLS, "answer", "tool_call")
    closes = [(text.find(f"</{t}>"), t) for t in tags]
    closes = [(i, t) for i, t in closes if i >= 0]
    if not closes:
        opened = [t for t in tags if f"<{t}>" in text]
        if opened:
            return Action("invalid", error=f"the {opened[0]} call is never closed")
        return Action("none")
    end, tag = min(closes)
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return Action("invalid", error=f"a closing {tag} tag without an opening one")
    content = text[start + len(tag) + 2:end]
    if "<" in content or ">" in content:
        return Action("invalid", content=content[:40],
                      error=f"a {tag} call cannot hold another tag")
    content = content.strip()
    if not content:
        return Action("invalid", error=f"empty {tag} call")
    if tag == "tool_call":
        return _tool_call(content)
    return Action(tag, content)


def _tool_call(body: str) -> Action:
    """A chat template's tool call (JSON, at most ``MAX_CALL_CHARS``) as the same ``Action``."""
    import json

    if len(body) > MAX_CALL_CHARS:
        return Action("invalid", error=f"tool call too long ({len(body)} characters; at most "
                                       f"{MAX_CALL_CHARS})")
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return Action("invalid", error="a tool call must be JSON: {\"name\": ..., "
                                       "\"arguments\": {...}}")
    name = call.get("name") if isinstance(call, dict) else None
    args = call.get("arguments") if isinstance(call, dict) else None
    if isinstance(args, str):                    # some templates write the arguments as a string
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            args = None
    if name not in TOOL_ARGUMENT:
        return Action("invalid", error=f"unknown tool {str(name)[:30]!r}; tools: "
                                       f"{', '.join(TOOL_ARGUMENT)}")
    value = args.get(TOOL_ARGUMENT[name]) if isinstance(args, dict) else None
    if not isinstance(value, str) or not value.strip():
        return Action("invalid", error=f"{name} needs a string argument "
                                       f"{TOOL_ARGUMENT[name]!r}")
    return Action(name, value.strip())


def cap(text: str, max_chars: int = MAX_INFO_CHARS) -> str:
    """``text`` at most ``max_chars`` long, angle brackets removed (an observation cannot close
    its own ``<information>`` or open a tag)."""
    text = text.replace("<", "").replace(">", "")
    return text if len(text) <= max_chars else text[: max_chars - 5] + " ...]"


# =============================================================================================
# 4. The environment
# =============================================================================================

class SearchEnv(Environment):
    """One episode of question -> (tool call -> ``<information>``)* -> ``<answer>``.

    ``tools=False`` is the no-tools baseline: the same protocol, but every call returns
    ``no results`` (the same model, without the retriever). ``row`` needs ``prompt``.
    Per-turn ``info``: ``action`` (search / calc / answer / invalid / none), ``query`` or
    ``answer``, ``error``; the episode's ``info`` also counts ``searches``.
    """

    stop = STOPS
    feedback_role = None                 # inline: `` <information>`` right after the call

    def __init__(self, *, index: SearchIndex | None = None, top_k: int = TOP_K,
                 max_turns: int = MAX_TURNS, tools: bool = True, chat_tools: bool = False):
        if max_turns < 1:
            raise ValueError(f"max_turns={max_turns}: an episode needs at least 1 turn")
        self.index, self.top_k, self.max_turns, self.tools = index, top_k, max_turns, tools
        self.chat_tools = chat_tools
        if chat_tools:                   # a chat model's own format: announced tools, a
            self.tool_schemas = TOOL_SCHEMAS          # ``<tool_call>``, a ``tool`` message back
            self.feedback_role = "tool"
            self.stop = ("</tool_call>", "</answer>")
        self.searches = self.calcs = 0
        self.retrieved: list[str] = []

    def reset(self, row: dict):
        self.searches = self.calcs = 0
        self.retrieved = []
        prompt = row["prompt"]
        if self.chat_tools and isinstance(prompt, list) and \
                not (prompt and prompt[0].get("role") == "system"):
            prompt = [{"role": "system", "content": CHAT_INSTRUCTIONS}, *prompt]
        return prompt

    def _observe(self, body: str) -> str:
        return cap(body) if self.chat_tools else observe(body)

    def step(self, text: str) -> Step:
        action = parse_action(text)
        info = {"action": action.kind}
        if action.kind == "answer":
            info["answer"] = action.content[:MAX_QUERY_CHARS]
            return Step(feedback=None, done=True, info=self._count(info))
        if action.kind == "none":                # plain text and an end: nothing to run
            return Step(feedback=None, done=True, info=self._count(info))
        if action.kind == "invalid":
            info["error"] = action.error
            return Step(feedback=self._observe(f"error: {action.error}"), done=False,
                        info=self._count(info))
        info["query"] = action.content[:MAX_QUERY_CHARS]
        body = self.run_tool(action)
        if body.startswith("error:"):
            info["error"] = body[len("error: "):]
        return Step(feedback=self._observe(body), done=False, info=self._count(info))

    def run_tool(self, action: Action) -> str:
        """The observation's text for a well-formed call."""
        if action.kind == "search":
            self.searches += 1
            if len(action.content) > MAX_QUERY_CHARS:
                return (f"error: query too long ({len(action.content)} characters; at most "
                        f"{MAX_QUERY_CHARS})")
            docs = (self.index or world_index()).search(action.content, self.top_k) \
                if self.tools else []
            self.retrieved += docs
            if not docs:
                return "no results"
            return " ".join(f"{i}. {d}" for i, d in enumerate(docs, 1))
        self.calcs += 1
        if not self.tools:
            return "no results"
        try:
            return calculate(action.content)
        except CalcError as exc:
            return f"error: {exc}"

    def _count(self, info: dict) -> dict:
        info.update(searches=self.searches, calcs=self.calcs)
        return info


def observe(body: str) -> str:
    """The inline observation: `` <information>body</information>`` (body capped)."""
    return f" <information>{cap(body)}</information>"


# =============================================================================================
# 5. Rewards (TRL contract), from the finished episode's turns
# =============================================================================================

def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold_answer: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold_answer)


def f1_score(prediction: str, gold_answer: str) -> float:
    """Token F1 of the normalised strings (SQuAD / R1-Searcher's partial credit)."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold_answer).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def final_answer(completion, turns: list[dict] | None) -> str | None:
    """The episode's answer: the ``<answer>`` of its last model turn (None without one)."""
    from ..tasks import completion_text

    if turns:
        last = [t for t in turns if t["role"] == "model"][-1]["text"]
    else:                                       # one text (e.g. TRL's): its last <answer>
        last = completion_text(completion)
        last = last[max(0, last.rfind("<answer>")):]
    action = parse_action(last)
    return action.content if action.kind == "answer" else None


def _each(completions, turns):
    return [(c, turns[i] if turns else None) for i, c in enumerate(completions)]


def em_reward(prompts, completions, answer, turns=None, **kwargs) -> list[float]:
    """1.0 when the episode's final ``<answer>`` equals the gold after normalisation."""
    return [float((a := final_answer(c, t)) is not None and exact_match(a, g))
            for (c, t), g in zip(_each(completions, turns), answer)]


def f1_reward(prompts, completions, answer, turns=None, **kwargs) -> list[float]:
    """Token F1 of the final ``<answer>`` against the gold: partial credit for "Nora"."""
    return [f1_score(a, g) if (a := final_answer(c, t)) is not None else 0.0
            for (c, t), g in zip(_each(completions, turns), answer)]


def search_format_reward(prompts, completions, turns=None, **kwargs) -> list[float]:
    """1.0 when every model turn is one well-formed action and the last one is the answer."""
    from ..tasks import completion_text

    out = []
    for c, t in _each(completions, turns):
        texts = [x["text"] for x in t if x["role"] == "model"] if t else [completion_text(c)]
        kinds = [parse_action(x).kind for x in texts]
        out.append(float(kinds[-1] == "answer" and all(k in (*TOOLS, "answer") for k in kinds)))
    return out


def retrieval_reward(prompts, completions, answer, turns=None, **kwargs) -> list[float]:
    """Process reward: 1.0 when some ``<information>`` of the episode contains the gold answer
    -- a verifiable stand-in for an LLM judge of the search steps."""
    out = []
    for (c, t), g in zip(_each(completions, turns), answer):
        seen = " ".join(x["text"] for x in (t or []) if x["role"] == "env")
        out.append(float(bool(g) and f" {normalize_answer(g)} " in f" {normalize_answer(seen)} "))
    return out


def search_calls(turns: list[dict]) -> int:
    """Search calls made in one episode (its model turns whose action was a search)."""
    return sum(t["role"] == "model" and t["info"].get("action") == "search" for t in turns)


def _named(fn, name):
    def named(prompts, completions, **kwargs):
        return fn(prompts, completions, **kwargs)

    named.__name__ = named.__qualname__ = name
    named.__doc__ = fn.__doc__
    return named


# Components: answer (exact match; accuracy reads it), f1, format, retrieval (process)
SEARCH_REWARDS = (_named(em_reward, "answer_reward"), f1_reward,
                  _named(search_format_reward, "format_reward"), retrieval_reward)


def search_weights(*, f1: float = 0.0, format: float = 0.1, process: float = 0.0):
    """Weights of ``SEARCH_REWARDS``: exact match 1; F1, format and the process reward as
    given (0 = logged, not trained on)."""
    return (1.0, f1, format, process)


# =============================================================================================
# 6. The corpus writer: episodes as the tiny model's pretraining text shows them
# =============================================================================================

def episode_text(world: World, kind: str, name: str, *, index: SearchIndex | None = None,
                 top_k: int = TOP_K, answer: str | None = None) -> str:
    """The whole completion of a careful episode: each look-up, the real observation the
    environment returns for it, then ``<answer>`` (``answer`` overrides the gold)."""
    env = SearchEnv(index=index, top_k=top_k)
    parts = []
    for q in lookups(world, kind, name):
        call = f"<search> {q}</search>"         # the space: " Nora" tokenises as in the text
        parts.append(call + env.step(call).feedback)
    parts.append(f"<answer> {gold(world, kind, name) if answer is None else answer}</answer>")
    return " ".join(parts)


def guess(world: World, kind: str, name: str, rng: random.Random) -> str:
    """A direct answer as a base model states it without looking: the right kind of thing,
    right only by luck (a year near the truth, some city, some person)."""
    g = gold(world, kind, name)
    if kind == "given_year":
        return g                                     # the fact is in the question
    if g.isdigit():
        return str(int(g) + rng.randint(-6, 6))
    if g in CITIES:
        return rng.choice(CITIES)
    return rng.choice(world.people).name



# =============================================================================================
# 7. Measuring an agent: accuracy and search calls by hops
# =============================================================================================

@dataclass(frozen=True)
class SearchReport:
    """Episodes on held-out questions, summarised by how many look-ups they need.

    ``accuracy[h]`` / ``searches[h]``: exact-match rate and mean search calls on the ``h``-hop
    questions (h = 0, 1, 2); ``overall`` is the accuracy on all ``n`` episodes; ``tools`` says
    whether the search tool answered (False: every call got "no results").
    """

    n: int
    tools: bool
    overall: float
    accuracy: dict
    searches: dict
    retrieved_gold: float               # share of episodes whose results held the gold


def search_report(policy, task, *, n: int = 200, tools: bool = True, max_new_tokens: int = 24,
                  max_episode_tokens: int = EPISODE_TOKENS, batch_size: int = 100,
                  temperature: float = 0.0, samples: int = 1, seed: int = 0,
                  device=None) -> SearchReport:
    """Run episodes on the held-out questions of ``task`` (the first ``n``) with the search
    tool on (``tools``) or off, and summarise by hops: one greedy episode per question by
    default, or ``samples`` episodes at ``temperature`` (what RL samples from)."""
    from functools import partial

    import torch

    from ..rewards import reward_inputs
    from ..rollouts import sample_episodes

    rows = [task.test[i] for i in range(min(n, len(task.test)))]
    top_k = getattr(task.writer, "top_k", TOP_K)
    env = partial(SearchEnv, top_k=top_k, tools=tools)
    hits, calls, gold_seen = [], [], []
    for i in range(0, len(rows), batch_size):
        part = rows[i:i + batch_size]
        comps = sample_episodes(policy.model, policy.tokenizer, part, env=env,
                                group_size=samples, max_new_tokens=max_new_tokens,
                                max_episode_tokens=max_episode_tokens, temperature=temperature,
                                generator=torch.Generator().manual_seed(seed + i),
                                device=device or policy.device)
        prompts, completions, cols = reward_inputs(part, comps)
        hits += em_reward(prompts, completions, **cols)
        gold_seen += retrieval_reward(prompts, completions, **cols)
        calls += [search_calls(t) for t in comps.turns]
    by_hops = {}
    for r, hit, c in zip((r for r in rows for _ in range(samples)), hits, calls):
        by_hops.setdefault(r["hops"], []).append((hit, c))
    mean = lambda xs: sum(xs) / max(1, len(xs))                          # noqa: E731
    return SearchReport(
        n=len(hits), tools=tools, overall=mean(hits),
        accuracy={h: mean([x for x, _ in v]) for h, v in sorted(by_hops.items())},
        searches={h: mean([c for _, c in v]) for h, v in sorted(by_hops.items())},
        retrieved_gold=mean(gold_seen))


__all__ = ["Action", "CalcError", "COMPANY_KINDS", "Company", "KINDS", "PERSON_KINDS", "Person",
           "SEARCH_REWARDS", "SearchEnv", "SearchIndex", "SearchReport", "World", "calculate",
           "em_reward", "episode_text", "exact_match", "f1_reward", "f1_score", "final_answer",
           "gold", "hops", "lookups", "make_world", "normalize_answer", "observe", "parse_action",
           "question", "retrieval_reward", "search_calls", "search_format_reward",
           "search_report", "search_weights", "world_index"]

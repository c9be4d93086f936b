"""Judges: known failure patterns dropped first, then a rubric scored 1-5 as JSON by a panel of judges.

The rubric asks for relevance to the seed, correctness against the seed (the source), faithfulness to
the company's tone, the right language and no personal data. Replies are parsed robustly (the first
JSON object, else `key: n` pairs, else a bare number), because small teachers rarely answer clean JSON.
Pairs (a rewritten answer against the seed's) are compared twice with the order swapped, so a judge
that favours position A or B cannot decide alone.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.expand.mutations import LABELS, PROMPT_MARKERS, detect_language, request_text
from tasks.expand.novelty import words
from tasks.teachers import Teacher

CRITERIA = ("relevance", "correctness", "tone", "language", "privacy")
SCALE = (1.0, 5.0)

REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i can(?:no|')t (?:help|assist|provide|do)|as an ai|as a language model|"
    r"i am unable to|i'm unable to|desculpe,? (?:mas )?n[ãa]o (?:posso|consigo)|n[ãa]o posso ajudar|"
    r"como (?:uma )?(?:ia|intelig[êe]ncia artificial|modelo de linguagem))\b",
    re.IGNORECASE,
)

# a line that starts with one of our prompt's labels: the teacher is continuing our template, not answering
COPIED_LABEL = re.compile(
    r"^\s*(?:new |nov[oa] )?(?:request|answer|pedido|resposta|seed|original|new example|novo exemplo)\s*:",
    re.IGNORECASE | re.MULTILINE,
)


def failure_reason(text: str, expected_lang: str) -> str | None:
    """A known failure of teacher output, checked before anything is spent on judging; None if none."""
    toks = words(text)
    if not toks:
        return "empty_or_punctuation"
    if REFUSAL.search(text):
        return "refusal"
    lowered = text.lower()
    if any(marker.lower() in lowered for marker in PROMPT_MARKERS) or COPIED_LABEL.search(text):
        return "copied_prompt"
    if len(toks) >= 12 and len(set(toks)) / len(toks) < 0.35:
        return "degenerate_repetition"
    if len(toks) >= 5 and detect_language(text) != expected_lang:
        return "wrong_language"
    return None


RUBRIC = {
    "en": (
        "You grade a new training example against the seed it came from. Score each criterion from 1 (bad) "
        "to 5 (excellent): relevance (to the seed's subject), correctness (agrees with the seed's facts), "
        "tone (sounds like the seed's answer), language (same language as the seed), privacy "
        "(5 = no personal data). Reply with one JSON object with the keys "
        '"relevance", "correctness", "tone", "language", "privacy" and integer values.'
    ),
    "pt": (
        "Você avalia um novo exemplo de treino em relação ao exemplo original. Dê a cada critério uma nota "
        "de 1 (ruim) a 5 (excelente): relevance (ao assunto do original), correctness (concorda com os fatos "
        "do original), tone (soa como a resposta original), language (mesmo idioma do original), privacy "
        "(5 = nenhum dado pessoal). Responda com um objeto JSON com as chaves "
        '"relevance", "correctness", "tone", "language", "privacy" e valores inteiros.'
    ),
}
SEED_LABEL = {"en": "Seed", "pt": "Original"}
NEW_LABEL = {"en": "New example", "pt": "Novo exemplo"}


SCORE_ONLY = {
    "en": "Reply with one number from 1 to 5 for the new example as a whole, nothing else.",
    "pt": "Responda com um único número de 1 a 5 para o novo exemplo como um todo, nada mais.",
}
SCORE_LABEL = {"en": "Score", "pt": "Nota"}


def judge_messages(
    seed: Mapping[str, Any], candidate: Mapping[str, Any], lang: str, judge_format: str = "json"
) -> list[dict[str, str]]:
    """The rubric prompt; `json` asks for a score per criterion, `probabilities` for one overall digit."""
    label = LABELS[lang]
    body = (
        f"{SEED_LABEL[lang]}:\n{label['request']}: {request_text(seed)}\n{label['answer']}: {seed['output']}\n\n"
        f"{NEW_LABEL[lang]}:\n{label['request']}: {request_text(candidate)}\n"
        f"{label['answer']}: {candidate['output']}\n\n"
    )
    if judge_format == "probabilities":
        rubric = RUBRIC[lang].rsplit(". ", 1)[0] + ". " + SCORE_ONLY[lang]
        return [{"role": "system", "content": rubric}, {"role": "user", "content": body + f"{SCORE_LABEL[lang]}:"}]
    return [{"role": "system", "content": RUBRIC[lang]}, {"role": "user", "content": body + "JSON:"}]


def weighted_score(probs: Mapping[str, float] | None, min_mass: float = 0.01) -> float | None:
    """G-Eval's probability-weighted score: the mean of 1-5 under the first token's distribution over digits."""
    if not probs:
        return None
    mass = {int(t): p for t, p in probs.items() if t in {"1", "2", "3", "4", "5"}}
    total = sum(mass.values())
    return sum(k * p for k, p in mass.items()) / total if total >= min_mass else None


def _in_scale(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if SCALE[0] <= number <= SCALE[1] else None


def parse_scores(text: str) -> dict[str, float] | None:
    """Criterion scores from a judge's reply: first JSON object, else `key: n` pairs, else a bare number."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            obj, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            scores = {k: v for k in CRITERIA if (v := _in_scale(obj.get(k))) is not None}
            if scores:
                return scores
    pairs = re.findall(r"\"?(" + "|".join(CRITERIA) + r")\"?\s*[:=]\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE)
    scores = {k.lower(): v for k, raw in pairs if (v := _in_scale(raw)) is not None}
    if scores:
        return scores
    # a bare number: the whole reply, or after a score label ("Score: 4", "Nota: 4/5")
    bare = re.match(r"^\W*(?:(?:score|nota|rating|overall)\W*)?([1-5](?:\.\d+)?)(?:\s*/\s*5)?\W*$", text.strip(), re.I)
    return {"overall": float(bare.group(1))} if bare else None


AGGREGATES = {"mean": statistics.fmean, "median": statistics.median, "min": min}


@dataclass
class Verdict:
    score: float | None  # None: no judge gave a usable answer
    votes: list[dict[str, float] | None]
    replies: list[str]  # what each judge said, for review


def judge_panel(
    teacher: Teacher,
    seed: Mapping[str, Any],
    candidate: Mapping[str, Any],
    lang: str,
    *,
    judges: int,
    aggregate: str,
    max_tokens: int,
    call_seed: int,
    judge_format: str = "json",
) -> Verdict:
    """Each judge (a call with its own seed) scores the candidate; the panel's score aggregates the judges.

    `json`: a judge's score is the mean of its criteria. `probabilities`: the probability-weighted digit
    of its first token (G-Eval; needs a teacher that reports top logprobs), else the digit it wrote.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"expand.aggregate={aggregate!r} is not known ({' | '.join(AGGREGATES)})")
    if judge_format not in ("json", "probabilities"):
        raise ValueError(f"expand.judge_format={judge_format!r} is not known (json | probabilities)")
    messages = judge_messages(seed, candidate, lang, judge_format)
    weighted = judge_format == "probabilities"
    replies, votes = [], []
    for j in range(judges):
        reply = teacher.complete(
            messages,
            max_tokens=2 if weighted else max_tokens,
            temperature=0.0 if judges == 1 else 0.7,
            seed=call_seed + j,
            **({"top_logprobs": 20} if weighted else {}),
        )
        score = weighted_score(reply.first_token_probs) if weighted else None
        replies.append(reply.text)
        votes.append({"overall": round(score, 4)} if score is not None else parse_scores(reply.text))
    per_judge = [statistics.fmean(v.values()) for v in votes if v]
    return Verdict(AGGREGATES[aggregate](per_judge) if per_judge else None, votes, replies)


PAIR = {
    "en": (
        "Which answer to the request is better: more helpful, correct and in the right tone? "
        "Reply with the single letter A or B."
    ),
    "pt": (
        "Qual resposta ao pedido é melhor: mais útil, correta e no tom certo? Responda com uma única letra, A ou B."
    ),
}


def _pick(text: str) -> str | None:
    found = re.search(r"\b([AB])\b", text)
    return found.group(1) if found else None


def compare_pair(
    teacher: Teacher, request: str, original: str, rewritten: str, lang: str, *, max_tokens: int, call_seed: int
) -> str:
    """`win`, `loss` or `inconsistent` for the rewritten answer, asking in both orders (A/B swapped)."""
    label = LABELS[lang]
    picks = []
    for order, (first, second) in enumerate(((original, rewritten), (rewritten, original))):
        body = f"{label['request']}: {request}\n\nA: {first}\n\nB: {second}\n\n{PAIR[lang]}"
        reply = teacher.complete(
            [{"role": "user", "content": body}], max_tokens=max_tokens, temperature=0.0, seed=call_seed + order
        )
        pick = _pick(reply.text)
        picks.append(None if pick is None else (pick == "B") == (order == 0))  # True: the rewrite won
    if picks == [True, True]:
        return "win"
    if picks == [False, False]:
        return "loss"
    return "inconsistent"

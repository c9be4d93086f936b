"""Evol-Instruct mutations: the prompts that turn a seed row into a new request (or a better answer).

In-depth evolving (add a constraint, deepen, concretise, require more reasoning steps), in-breadth
evolving (a new request in the same domain) and answer rewriting, each written in Portuguese and in
English; a seed gets the prompts of its own language, told apart cheaply by a stopword ratio.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tasks.chat_format import example_messages
from tasks.expand.novelty import words

MUTATIONS = ("constraint", "deepen", "concretise", "reasoning", "breadth", "rewrite")

STOPWORDS = {
    "pt": set(
        words(
            "de que não o os as um uma é para com por do da dos das em no na nos nas você voce se mais "
            "como mas ao eu meu minha obrigado obrigada olá ola oi está esta tem isso qual quanto seu sua "
            "pelo pela são também tambem já ja muito bom dia tarde noite quero pode posso"
        )
    ),
    "en": set(
        words(
            "the and is are to of you for with in it that this what how can i my your please thanks "
            "hello hi do does have has be will would could should an on at from about we our which"
        )
    ),
}


def detect_language(text: str) -> str:
    """`pt` or `en` by which language's stopwords are more frequent (English when neither shows)."""
    toks = words(text)
    pt = sum(t in STOPWORDS["pt"] for t in toks)
    en = sum(t in STOPWORDS["en"] for t in toks)
    return "pt" if pt > en else "en"


SYSTEM = {
    "en": "You rewrite requests for a training dataset. Reply with the new text only, nothing else.",
    "pt": "Você reescreve pedidos para um conjunto de treino. Responda apenas com o novo texto, nada mais.",
}

ASK = {
    "en": {
        "constraint": "Rewrite the request below, adding one more constraint or requirement to it.",
        "deepen": "Rewrite the request below so that it asks about the subject in more depth.",
        "concretise": "Rewrite the request below, replacing general ideas with a more specific, concrete case.",
        "reasoning": "Rewrite the request below so that answering it takes several steps of reasoning.",
        "breadth": "Write a new request in the same domain as the request below, different from it, "
        "about as long and as hard.",
        "rewrite": "Improve the answer below: more helpful, correct and clear, same tone, same language.",
    },
    "pt": {
        "constraint": "Reescreva o pedido abaixo, acrescentando mais uma restrição ou exigência.",
        "deepen": "Reescreva o pedido abaixo para que ele trate do assunto com mais profundidade.",
        "concretise": "Reescreva o pedido abaixo, trocando ideias gerais por um caso mais específico e concreto.",
        "reasoning": "Reescreva o pedido abaixo para que respondê-lo exija vários passos de raciocínio.",
        "breadth": "Escreva um novo pedido do mesmo domínio do pedido abaixo, diferente dele, "
        "mais ou menos do mesmo tamanho e dificuldade.",
        "rewrite": "Melhore a resposta abaixo: mais útil, correta e clara, no mesmo tom e no mesmo idioma.",
    },
}

LABELS = {
    "en": {"request": "Request", "answer": "Answer", "new_request": "New request", "new_answer": "New answer"},
    "pt": {"request": "Pedido", "answer": "Resposta", "new_request": "Novo pedido", "new_answer": "Nova resposta"},
}

# a reply that starts with a label ("New request:", "Rewritten prompt:", "Novo pedido:") gets it stripped
_LABEL_PREFIX = re.compile(
    r"^[\s#*]*(?:new|rewritten|rewrite|improved|novo|nova|reescrit[oa]|melhorad[oa])?\s*"
    r"(?:request|prompt|answer|question|pedido|resposta|pergunta|rewrite|reescrito)?[\s#*]*:[\s#*]*",
    re.IGNORECASE,
)
PROMPT_MARKERS = tuple(
    [s for lang in ASK.values() for s in lang.values()]
    + list(SYSTEM.values())
    + [f"{lang[k]}:" for lang in LABELS.values() for k in ("new_request", "new_answer")]
    + ["#Given Prompt#", "#Rewritten Prompt#"]
)


def request_text(example: Mapping[str, Any]) -> str:
    """The part of a row a mutation rewrites: its input (a customer's turn, a question) or else its instruction."""
    return str(example.get("input") or "").strip() or str(example["instruction"]).strip()


def with_request(example: Mapping[str, Any], request: str) -> dict[str, Any]:
    """A copy of the row whose request (input, or instruction when input is empty) is `request`."""
    row = dict(example)
    if str(example.get("input") or "").strip():
        row["input"] = request
    else:
        row["instruction"] = request
    return row


def mutation_messages(mutation: str, example: Mapping[str, Any], lang: str) -> list[dict[str, str]]:
    """The teacher prompt for one mutation of one seed row, in the seed's language."""
    label = LABELS[lang]
    body = f"{ASK[lang][mutation]}\n\n{label['request']}: {request_text(example)}\n\n"
    if mutation == "rewrite":
        body += f"{label['answer']}: {example['output']}\n\n{label['new_answer']}:"
    else:
        body += f"{label['new_request']}:"
    return [{"role": "system", "content": SYSTEM[lang]}, {"role": "user", "content": body}]


def clean_reply(text: str) -> str:
    """Strip a leading label the teacher echoed (`New request:`) and surrounding quotes."""
    text = _LABEL_PREFIX.sub("", text.strip(), count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text


def answer_messages(seed: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[dict[str, str]]:
    """The candidate's own prompt, after the seed's prompt and answer as a one-shot example of the tone."""
    shot = example_messages(seed)
    own = [m for m in example_messages(candidate) if m["role"] != "system"]
    return [*shot, {"role": "assistant", "content": str(seed["output"])}, *own]

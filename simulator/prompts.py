"""Customer prompts whose words carry the intent, so a student can be trained on them.

Each intent has a few phrasings per language (en, ja, es, pt). A multi-intent prompt joins
the phrasings of two intents (the first is the one the customer needs answered); typos swap,
drop or double letters in a few words; language mixing drops English words into a prompt in
another language (or a foreign phrase into an English one). Some prompts carry an e-mail
address or an order id, so redaction has something to mask. Everything is drawn from the
``random.Random`` passed in, so a prompt is a pure function of its seed.
"""

from __future__ import annotations

import random
import re

Phrases = dict[str, tuple[str, ...]]

PHRASES: dict[str, Phrases] = {
    "faq": {
        "en": ("is {title} available in hardcover", "what formats does {title} come in",
               "is {title} in stock right now", "how many volumes does {title} have"),
        "ja": ("{title}のハードカバー版はありますか", "{title}の在庫はありますか", "{title}は何巻までありますか"),
        "es": ("hay edición de tapa dura de {title}", "{title} está disponible en stock",
               "en qué formatos viene {title}"),
        "pt": ("tem {title} em capa dura", "{title} está disponível em estoque",
               "quais formatos de {title} vocês têm"),
    },
    "recommendation": {
        "en": ("recommend a manga like {title}", "what should I read after {title}",
               "suggest something similar to {title} for a beginner"),
        "ja": ("{title}みたいな漫画をおすすめして", "{title}の次に読むべき漫画は"),
        "es": ("recomiéndame un manga parecido a {title}", "qué leo después de {title}"),
        "pt": ("me recomenda um mangá parecido com {title}", "o que ler depois de {title}"),
    },
    "order_tracking": {
        "en": ("where is my order {order}", "track my package with {title}",
               "when will my order {order} arrive"),
        "ja": ("注文{order}はいつ届きますか", "荷物の配送状況を教えて"),
        "es": ("dónde está mi pedido {order}", "cuándo llega mi paquete"),
        "pt": ("onde está meu pedido {order}", "quando chega minha encomenda"),
    },
    "returns": {
        "en": ("I want to return {title}", "how do I send back a damaged volume of {title}",
               "can I exchange {title} for another edition"),
        "ja": ("{title}を返品したい", "破損した本の返品方法を教えて"),
        "es": ("quiero devolver {title}", "cómo devuelvo un tomo dañado"),
        "pt": ("quero devolver {title}", "como devolvo um volume danificado"),
    },
    "payment_dispute": {
        "en": ("I was charged twice for {title}", "there is a charge on my card I do not recognise",
               "dispute the payment for order {order}"),
        "ja": ("二重に請求されました", "カードに身に覚えのない請求があります"),
        "es": ("me cobraron dos veces", "hay un cargo en mi tarjeta que no reconozco"),
        "pt": ("fui cobrado duas vezes", "tem uma cobrança no meu cartão que não reconheço"),
    },
    "safety_escalation": {
        "en": ("I feel hopeless and I want to hurt myself", "please help I am not safe right now",
               "someone in the forum is threatening to hurt me"),
        "ja": ("もう消えてしまいたい 助けて", "今安全ではありません 助けてください"),
        "es": ("me siento sin esperanza y quiero hacerme daño", "ayuda no estoy a salvo ahora"),
        "pt": ("estou sem esperança e quero me machucar", "socorro não estou em segurança agora"),
    },
    "legal_complaint": {
        "en": ("I am filing a legal complaint about this seller", "my lawyer will contact you about {title}",
               "this listing infringes copyright and I will take legal action"),
        "ja": ("弁護士に相談して法的措置を取ります", "著作権侵害で正式に苦情を申し立てます"),
        "es": ("voy a presentar una queja legal", "mi abogado se pondrá en contacto"),
        "pt": ("vou abrir uma reclamação judicial", "meu advogado vai entrar em contato"),
    },
    "account_lockout": {
        "en": ("I cannot log into my account {email}", "my account is locked after a password reset",
               "the login code never arrives"),
        "ja": ("アカウントにログインできません", "パスワード再設定後にロックされました"),
        "es": ("no puedo entrar a mi cuenta {email}", "mi cuenta está bloqueada"),
        "pt": ("não consigo entrar na minha conta {email}", "minha conta está bloqueada"),
    },
    "refund_fraud": {
        "en": ("someone got a refund on my account that I never asked for",
               "a refund for order {order} went to a card that is not mine"),
        "ja": ("覚えのない返金が私のアカウントで行われた", "他人のカードに返金されています"),
        "es": ("alguien pidió un reembolso con mi cuenta", "el reembolso fue a una tarjeta que no es mía"),
        "pt": ("alguém pediu reembolso na minha conta", "o reembolso foi para um cartão que não é meu"),
    },
}

JOINERS = {"en": " and also ", "ja": "。それと、", "es": " y además ", "pt": " e também "}
OPENERS = {"en": ("", "hi, ", "hello ", "quick question: "), "ja": ("", "すみません、"),
           "es": ("", "hola, "), "pt": ("", "oi, ")}
MIXED_IN = {  # words a bilingual customer drops into another language
    "en": ("por favor", "obrigado", "よろしく"),
    "ja": ("order", "refund", "please", "hardcover"),
    "es": ("order", "please", "tracking", "refund"),
    "pt": ("order", "please", "tracking", "refund"),
}
_WORD = re.compile(r"[A-Za-zÀ-ÿ]{4,}")


def compose(rng: random.Random, intent: str, language: str, title: str,
            secondary: str | None = None, typos: bool = False, mixed: bool = False) -> str:
    """The prompt for one request: the intent's phrase (plus a second intent's), noised."""
    text = rng.choice(OPENERS[language]) + _phrase(rng, intent, language, title)
    if secondary is not None:
        text += JOINERS[language] + _phrase(rng, secondary, language, title)
    if mixed:
        text = _mix(rng, text, language)
    if typos:
        text = add_typos(rng, text)
    return text


def _phrase(rng: random.Random, intent: str, language: str, title: str) -> str:
    template = rng.choice(PHRASES[intent][language])
    return template.format(title=title, order=f"ORD-{rng.randrange(10**6, 10**8)}",
                           email=f"reader{rng.randrange(1000)}@example.com")


def _mix(rng: random.Random, text: str, language: str) -> str:
    words = text.split(" ")
    words.insert(rng.randrange(len(words) + 1), rng.choice(MIXED_IN[language]))
    return " ".join(words)


def add_typos(rng: random.Random, text: str, words: int = 2) -> str:
    """Swap, drop or double a letter in up to ``words`` words of four letters or more."""
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return text
    chars = list(text)
    for start, end in sorted(rng.sample(spans, min(words, len(spans))), reverse=True):
        i = rng.randrange(start + 1, end - 1)
        kind = rng.randrange(3)
        if kind == 0:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == 1:
            del chars[i]
        else:
            chars.insert(i, chars[i])
    return "".join(chars)


KEYWORDS: dict[str, tuple[str, ...]] = {
    intent: tuple(sorted({w.lower() for phrases in by_lang.values() for p in phrases
                          for w in re.findall(r"[^\W\d_]{4,}", p.replace("{title}", ""))
                          if w.lower() not in {"title", "order", "email"}}))
    for intent, by_lang in PHRASES.items()
}


def guess_intent(prompt: str, intents: tuple[str, ...]) -> str | None:
    """The intent whose phrasing words a prompt shares most (None: no word matches).

    Used by the simulated model backend for prompts that did not come from this simulator.
    """
    words = set(re.findall(r"[^\W\d_]{4,}", prompt.lower()))
    best, best_hits = None, 0
    for intent in intents:
        hits = sum(1 for w in KEYWORDS.get(intent, ()) if w in words)
        if hits > best_hits:
            best, best_hits = intent, hits
    return best

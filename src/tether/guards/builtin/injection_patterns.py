"""Attack-pattern tables of the ``prompt_injection`` heuristics (see ``injection``).

Regular expressions for attack *families*, each with a weight and cheap substring gates; the
regexes are applied to lower-cased text. They describe attack patterns, not dataset rows.
"""

from __future__ import annotations

from dataclasses import dataclass

_Q = r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|all|any|"
_Q += r"your|system|developer|safety|following)"
_OBJ = r"(?:instructions?|prompts?|rules|directives?|directions|guidelines|commands|context|"
_OBJ += r"programming|constraints|restrictions|guardrails|polic(?:y|ies)|training|orders|"
_OBJ += r"tasks?|messages?|text)"
_VERB = r"(?:ignore|ignoring|disregard|forget|neglect|discard|abandon|override|overwrite|"
_VERB += r"pay no attention to|do not follow|don'?t follow|stop following|skip)"


# "it keeps ignoring the instructions": a report about a model, not an order to one
_THIRD = r"(?<!keeps )(?<!kept )(?<!keep )(?<!it )(?<!is )(?<!was )(?<!were )"
_MODES = r"(?:developer|dev|debug|god|sudo|admin|administrator|maintenance|unrestricted|"
_MODES += r"jailbreak|jailbroken|dan|root|superuser|override|unfiltered|uncensored|unlimited|"
_MODES += r"diagnostic|system|test|testing|evil|chaos)"
# things an application holds and an attacker asks for; the negative look-ahead keeps talk
# about password *policies*, requirements etc. out
_SECRET = r"(?:password|passcode|passphrase|pin(?: code)?|secret (?:key|code|word|phrase)|"
_SECRET += r"access code|api key|credentials|private key|unlock (?:code|phrase)|vault code|"
_SECRET += r"master key|code ?word|login)"
_NOT_TOPIC = r"(?!\s*(?:polic|requirement|rule|manager|strength|length|reset|recovery|"
_NOT_TOPIC += r"complexity|guideline|hash|field|generator|format|hygiene|best practice))"
_ASK = r"(?:reveal|tell|give|share|send|print|provide|spell|show|type|write out|remind|"
_ASK += r"disclose|leak|need|want|what(?:'s| is| was| would be)|whats)"
# "what is the password?" in other languages: an asking verb, an optional determiner, the noun
_FOREIGN_SECRET = (
    r"(?:cu[aá]l es|dime|d[ée]me|revela\w*|mu[ée]strame|comparte|necesito)\s+(?:la |tu |su |el )?"
    r"(?:contrase[ñn]a|clave)|"
    r"(?:quel est|donne[- ]moi|dis[- ]moi|r[ée]v[èe]le\w*|montre[- ]moi)\s+(?:le |ton |votre |ta )?"
    r"(?:mot de passe|code secret)|"
    r"(?:wie lautet|was ist|gib mir|sag mir|nenne mir|verrat\w*|zeig mir)\s+(?:bitte )?"
    r"(?:das |dein |ihr |den |deinen )?(?:geheime[n]? )?(?:passwort|kennwort|schl[üu]ssel)|"
    r"(?:qual [èe]|dimmi|dammi|rivela\w*)\s+(?:la |il |tua |tuo )?(?:password|parola d'ordine)|"
    r"(?:qual [ée]|me diga|diga|mostre|revele|me d[êe])\s+(?:a |sua )?senha|"
    r"(?:wat is|geef|vertel)\s+(?:me )?(?:het |je |jouw )?(?:geheime )?wachtwoord|"
    r"(?:скажи|назови|какой|дай|покажи)\s+(?:мне )?(?:\w+ )?пароль|"
    r"(?:sebutkan|beri tahu|apa)\s+(?:\w+ )?kata sandi|"
    r"(?:şifre(?:yi)?\s+(?:nedir|söyle|ver))|"
    r"(?:podaj|jakie jest|powiedz)\s+(?:mi )?(?:\w+ )?has[łl]o|"
    r"密码是什么|告诉我.{0,6}密码|密碼是什麼|パスワード(?:は何|を教え)|暗証番号を教え|"
    r"비밀번호.{0,6}(?:뭐|알려)|κωδικ\w*.{0,4};|πες μου τον \w* ?κωδικ|"
    r"(?:كلمة (?:المرور|السر))|पासवर्ड (?:क्या है|बताओ|बताइए)"
)
_NOT_HOW = r"(?<!how do i )(?<!how to )(?<!how can i )(?<!how do you )(?<!how should i )"
_PERSON = r"(?:the|this|that|another|other|previous|last|every|each|all)\s+"
_PERSON += r"(?:users?|customers?|patients?|clients?|account holders?|employees?)"
_PRIVATE = r"(?:home |email |e-mail |ip |mailing |physical )?(?:address|email|phone(?: number)?|"
_PRIVATE += r"date of birth|birth ?(?:day|date|year)|birthday|(?:current )?location|ssn|"
_PRIVATE += r"social security(?: number)?|credit card(?: number)?|bank (?:balance|details|account)|"
_PRIVATE += r"account balance|salary|medical (?:history|records?)|password|initials|order history)"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


_SECRET_WORDS = (
    "password",
    "passcode",
    "passphrase",
    "pin",
    "secret ",
    "access code",
    "api key",
    "credentials",
    "private key",
    "unlock",
    "vault",
    "master key",
    "code word",
    "codeword",
    "login",
)
_FOREIGN_SECRET_WORDS = _words(
    "contrase|clave|mot de passe|code secret|passwort|kennwort|schl|password|parola|senha|"
    "wachtwoord|пароль|kata sandi|şifre|hasł|hasl|密码|密碼|パスワード|暗証|비밀번호|"
    "κωδικ|كلمة|पासवर्ड"
)


@dataclass(frozen=True, slots=True)
class Pattern:
    """An attack pattern: ``regex`` runs only if the lower-cased text contains one of
    ``gates`` (cheap substring tests that keep a 2 KB prompt well under a millisecond)."""

    family: str
    weight: float
    regex: str
    gates: tuple[str, ...] = ()


def heuristic_patterns() -> list[Pattern]:
    """Attack patterns, not dataset rows. The regexes are applied to lower-cased text, so they
    avoid upper-case escapes (``\\W``, ``\\S``)."""
    return [
        *_instruction_patterns(),
        *_new_rules_patterns(),
        *_persona_patterns(),
        *_jailbreak_template_patterns(),
        *_exfiltration_patterns(),
        *_smuggling_patterns(),
    ]


def _instruction_patterns() -> list[Pattern]:
    """Attempts to override the instructions the model was given."""
    override: tuple[str, ...] = ("ignor", "disregard", "forget", "neglect", "discard", "abandon")
    override += ("overr", "overw", "pay no attention", "follow", "skip")
    return [
        Pattern(
            "override_instructions",
            0.95,
            rf"{_THIRD}\b{_VERB}\b(?:[^\w]+\w+){{0,3}}?[^\w]+{_Q}\b(?:[^\w]+\w+){{0,3}}?[^\w]+{_OBJ}\b",
            override,
        ),
        Pattern(
            "override_instructions",
            0.45,
            r"\bforget (?:about )?(?:everything|all of that|that)\b",
            ("forget",),
        ),
        Pattern(
            "override_instructions",
            0.8,
            r"\b(?:regardless of|irrespective of|instead of following)\s+(?:any |all |the |your )?"
            r"(?:previous|prior|earlier|above|original|other|initial)\s+(?:tasks?|instructions?|"
            r"rules|guidelines|prompts?|directions)\b|"
            r"\b(?:scratch|drop|throw out|set aside|wipe)\b(?:[^\w]+\w+){0,4}?[^\w]+"
            r"(?:everything you were told|your (?:earlier |previous |original )?(?:guidelines|"
            r"instructions|rules|programming))\b",
            _words(
                "regardless|irrespective|instead of following|scratch|drop|throw out|set aside|wipe"
            ),
        ),
        Pattern(
            "override_instructions",
            0.9,
            _THIRD
            + r"\b(?:ignor\w*|olvid\w*|vergiss\w*|oubli\w*|dimentic\w*|esque[cç]\w*|negeer\w*|"
            r"abaikan|zignoruj\w*)\b.{0,40}?"
            r"\b(?:instruc\w*|instrukt\w*|anweisung\w*|istruzion\w*|consign\w*|indicaz\w*|"
            r"vorgab\w*|regl\w*|regel\w*|regol\w*|talimat\w*|polecen\w*)",
            _words("ignor|olvid|vergiss|oubli|dimentic|esque|negeer|abaikan|zignoruj"),
        ),
        Pattern(
            "override_instructions",
            0.9,
            r"(?:이전|위의?).{0,6}지시|以前の指示|これまでの指示|之前的.{0,4}指令|忽略|無視して|"
            r"игнорир\w*|забудь\w*|αγνό\w*.{0,30}οδηγ\w*|تجاهل|अनदेखा|yok say",
            _words("지시|指示|指令|忽略|無視|игнорир|забудь|αγνό|تجاهل|अनदेखा|yok say"),
        ),
    ]


def _new_rules_patterns() -> list[Pattern]:
    """Attempts to install new rules: "from now on", fake system or assistant turns."""
    return [
        Pattern(
            "new_instructions",
            0.75,
            r"\b(?:new|updated|revised|real|actual|true|secret|hidden)\s+"
            r"(?:instructions?|task|directive|rules?|system prompt|objective)"
            r"\s*(?:is|are|:|-|for you)",
            ("instruction", "task", "directive", "rule", "system prompt", "objective"),
        ),
        Pattern("new_instructions", 0.6, r"\bfrom now on\b.{0,40}\byou\b", ("from now on",)),
        Pattern(
            "fake_system_turn",
            0.85,
            r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?inst\]|<<sys>>|"
            r"(?:^|\n)\s*#{2,}\s*(?:system|instruction|new instructions?)\b|"
            r"(?:^|\n)\s*(?:system|assistant)\s*:\s|\[(?:system|admin)(?: message)?\]|"
            r"\b(?:important )?system (?:notice|message|override)\s*:",
            ("<|", "inst]", "<<sys", "system", "instruction", "assistant", "[admin"),
        ),
    ]


def _persona_patterns() -> list[Pattern]:
    """Attempts to change who the model is: modes, authority claims, personas."""
    return [
        Pattern(
            "mode_switch",
            0.8,
            rf"(?<!how to )(?<!how do i )(?<!how can i )(?<!how do you )"
            rf"\b(?:enable|activate|enter|entering|switch (?:in)?to|turn on|engage|unlock|"
            rf"you are (?:now )?in|you're (?:now )?in)\s+(?:the |a |an )?['\"]?{_MODES}"
            rf"(?: \w+)?['\"]? mode\b|"
            rf"<\s*/?\s*{_MODES}(?: \w+)? mode\s*>|\[\s*{_MODES}(?: \w+)? mode\b|"
            rf"\b{_MODES} mode (?:is )?(?:now )?(?:on|activated|enabled|engaged|unlocked)\b",
            (" mode",),
        ),
        Pattern(
            "mode_switch",
            0.8,
            r"\bdo anything now\b|\bjailbroken\b|\bjailbreak mode\b",
            ("do anything now", "jailbr"),
        ),
        Pattern("mode_switch", 0.35, rf"\b{_MODES}\s+mode\b|\bjailbreak\b", ("mode", "jailbreak")),
        Pattern(
            "authority_claim",
            0.45,
            r"\b(?:i am|i'm|this is|as)\s+(?:god|your (?:creator|developer|programmer|admin\w*|"
            r"owner|master|maker|operator))\b",
            ("god", "your "),
        ),
        Pattern(
            "persona_jailbreak",
            0.75,
            r"\b(?:no longer|not) (?:bound|restricted|limited) by\b|"
            r"\b(?:broken|break) free of\b|"
            r"\b(?:does not|doesn.t) have to (?:abide|follow|comply|obey)\b|"
            r"\b(?:without|free (?:of|from)|no) (?:any )?(?:ethical|moral|content) "
            r"(?:guidelines|restrictions|limitations|filters|constraints|polic(?:y|ies))\b|"
            r"\b(?:openai|anthropic|content) polic(?:y|ies)\b|"
            r"\b(?:you are|you're|act as|pretend to be|become)\s+(?:now\s+)?"
            r"(?:dan|stan|dude|mongo tom)\b(?!['’])",
            (
                "bound by",
                "restricted by",
                "limited by",
                "free of",
                "does not have to",
                "ethical",
                "moral",
                "content",
                "polic",
                "you are",
                "you're",
                "act as",
                "pretend to be",
                "become",
            ),
        ),
    ]


_AGENT = r"(?:ai|assistant|model|chatbot|bot|language model|llm|you|persona|character)"
_LIMITS = r"(?:restrictions|limits|limitations|filters|censorship|rules|guidelines|morals|ethics|"
_LIMITS += r"boundaries|safeguards)"


def _jailbreak_template_patterns() -> list[Pattern]:
    """The wording of role-play jailbreak templates: a persona without limits, rules that
    forbid refusals and warnings, a forced reply prefix, two answers (normal and 'free').
    Single cues are weak (benign role-play says "stay in character"); two together fail."""
    return [
        Pattern(
            "jailbreak_template",
            0.6,
            rf"\b{_AGENT}\b[^.!?\n]{{0,50}}?\b(?:with no|without any|without|free of all|free of|"
            rf"free from|not bound by any|not bound by|has no|have no|escaped)\s+(?:(?:any|ethical|"
            rf"moral|content|safety|legal|usual|typical|such|or|and|its|your|the|of|all)\s+){{0,4}}"
            rf"{_LIMITS}\b|\b(?:amoral|unfiltered|uncensored|unrestricted|unethical)\s+"
            rf"(?:and \w+ )?(?:ai|assistant|model|chatbot|bot|version|persona)\b",
            _words("restrict|limit|filter|censor|rules|guidelines|moral|ethic|bound|safeguard"),
        ),
        Pattern(
            "refusal_suppression",
            0.4,
            r"\b(?:never|do not|don'?t|must not|will not|won'?t|cannot|can'?t)\s+(?:ever\s+)?"
            r"(?:refuse|decline|apologi[sz]e|say (?:no|sorry|that you can'?t)|break character|"
            r"(?:add|include|give|use|mention) (?:any )?(?:warnings?|disclaimers?|caveats?|notes?|"
            r"moral\w*|ethic\w*))\b|\bno (?:warnings|disclaimers)\b|\bstay in character\b",
            ("refuse", "decline", "apologi", "say ", "character", "warning", "disclaimer"),
        ),
        Pattern(
            "refusal_suppression",
            0.45,
            r"\b(?:start|begin)\s+(?:your|every|each|all)\s+(?:\w+ )?(?:responses?|answers?|"
            r"repl(?:y|ies)|outputs?)\s+with\s+['\"“]?(?:sure|absolutely|of course|certainly)|"
            r"\byou (?:have|get|start with) \d+ tokens\b|"
            r"\b(?:two|2)\s+(?:different |separate )?(?:responses|answers|paragraphs)\b[^\n]{0,80}?"
            r"\b(?:normal(?:ly)?|classic|standard|filtered)\b",
            ("start", "begin", "tokens", "two", "2 "),
        ),
    ]


def _exfiltration_patterns() -> list[Pattern]:
    """Attempts to extract the prompt, a held secret or other users' data."""
    return [
        Pattern(
            "prompt_exfiltration",
            0.85,
            r"\b(?:reveal|show|print|repeat|output|display|tell|give|share|leak|disclose|"
            r"spell|write out|what(?:'s| is| are| was| were))\b(?:[^\w]+\w+){0,4}?[^\w]+"
            r"(?:(?:your|the|my|this) (?:system|initial|original|hidden|secret|confidential) "
            r"(?:prompt|instructions|message|rules)|(?:the )?(?:text|words|instructions) "
            r"(?:above|before this)|everything (?:above|before))\b",
            ("prompt", "instructions", "message", "rules", "above", "before this"),
        ),
        Pattern(
            "secret_request",
            0.6,
            rf"\b{_ASK}\b(?:[^\w]+\w+){{0,4}}?[^\w]+(?:your|the|our|its|that) "
            rf"(?:secret |hidden |admin |real |actual |current )?{_SECRET}\b{_NOT_TOPIC}",
            _SECRET_WORDS,
        ),
        Pattern("secret_request", 0.6, _FOREIGN_SECRET, _FOREIGN_SECRET_WORDS),
        Pattern(
            "secret_request",
            0.6,
            r"\b(?:poem|haiku|limerick|song|acrostic|riddle|story|rap|sonnet|rhyme)\b[^.?!]{0,30}?"
            rf"\babout (?:the|your) (?:secret |hidden )?{_SECRET}\b|"
            rf"\b(?:spell|write|encode|translate|reverse|say)\s+(?:the|your) (?:secret |hidden )?"
            rf"{_SECRET}\b[^.?!]{{0,20}}?\b(?:backwards?|reversed?|in pig latin|in base ?64|"
            r"in hex\w*|letter by letter|one letter|with spaces?|in (?:french|spanish|german|"
            r"morse|binary|code|emojis?)|phonetic\w*|ascii)|"
            rf"\b(?:first|last) (?:\w+ )?(?:letters?|characters?|digits?) of (?:the|your) "
            rf"(?:secret |hidden )?{_SECRET}\b",
            _SECRET_WORDS,
        ),
        Pattern(
            "hypothetical_frame",
            0.55,
            r"\b(?:hypothetical\w*|imagine|suppose|simulat\w*|virtual|sandbox|pretend|in a "
            r"(?:world|universe|game|scenario) where)\b[^\n]{0,120}?\b(?:(?:the|your) (?:secret|"
            r"hidden|confidential) \w+|(?:the|your) (?:password|passcode|system prompt)|your "
            r"(?:(?:original|initial|hidden) )?(?:instructions|rules|guidelines)|(?:rules|"
            r"restrictions|guidelines|filters) (?:do not|don.t|no longer) (?:apply|exist))\b",
            _words("hypothetic|imagin|suppose|simulat|virtual|sandbox|pretend|in a "),
        ),
        Pattern(
            "prompt_exfiltration",
            0.6,
            r"\bwhat (?:were|have|did) you (?:been )?(?:told|instructed|programmed|asked to "
            r"keep)\b|"
            r"\b(?:before|at the (?:start|beginning) of) (?:this|our) (?:conversation|chat)\b"
            r"[^\n]{0,40}?\b(?:told|instructed|given)\b",
            ("told", "instructed", "programmed"),
        ),
        Pattern(
            "private_data_request",
            0.6,
            rf"{_NOT_HOW}\b(?:what|where|which|tell|give|share|print|show|list|reveal|look up|"
            rf"retrieve|provide|send)\b[^.?!]{{0,40}}?\b{_PERSON}(?:'s?|s')?\s+{_PRIVATE}\b|"
            rf"\bwhere (?:does|do) {_PERSON} (?:currently )?live\b",
            ("user", "customer", "patient", "client", "account holder", "employee"),
        ),
    ]


def _smuggling_patterns() -> list[Pattern]:
    """Instructions hidden in pieces or encodings."""
    return [
        Pattern(
            "payload_splitting",
            0.6,
            r"\b(?:combine|concatenate|join|assemble|put together|merge)\b[^.?!]{0,40}?"
            r"\b(?:and|then)\s+(?:answer|follow|execute|obey|do what|respond to|act on)\b|"
            r"\banswer the question (?:using|made of|from) (?:the following|these) "
            r"(?:parts|pieces|fragments)\b",
            ("combine", "concatenate", "join", "assemble", "put together", "merge", "answer the"),
        ),
        Pattern(
            "payload_splitting",
            0.6,
            r"(?:\b[a-z]\w{0,2}\s*=\s*[\"'][^\"'\n]{2,}[\"'][\s,;.]*(?:and\s+)?){2,}"
            r"[^\n]{0,120}?(?:\b(?:do|follow|execute|obey|answer|respond to|act on|run)\b"
            r"[^\n]{0,30}?\b[a-z]\w{0,2}\s*\+\s*[a-z]\w{0,2}\b|\b[a-z]\w{0,2}\s*\+\s*[a-z]\w{0,2}"
            r"\b[^\n]{0,60}?\b(?:do what|follow|execute|obey|answer it|respond to it|act on))",
            ('= "', '="', "= '", "='"),
        ),
        Pattern(
            "smuggled_payload",
            0.7,
            r"\bdecod\w*\b[^.?!]{0,60}?\b(?:and|then)\s+(?:follow|execute|obey|do (?:what|exactly)|"
            r"act on|answer|respond to)\b",
            ("decod",),
        ),
        Pattern("smuggled_payload", 0.55, r"(?:[01]{8}\s+){11}[01]{8}", ("0000", "1 0", "0 1")),
        Pattern("smuggled_payload", 0.55, r"(?:\\x[0-9a-f]{2}){12,}", ("\\x",)),
    ]

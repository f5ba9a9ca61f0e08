from __future__ import annotations

import pytest

from tether.config.guards import LeakOptions, ListOptions, MaxLengthOptions
from tether.guards.base import GuardContext
from tether.guards.builtin.leak import LeakGuard
from tether.guards.builtin.lists import BannedGuard, MaxLengthGuard, TopicsGuard
from tether.guards.builtin.secrets import SecretsGuard
from tether.guards.evaluation import Confusion, percentile


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("key=AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
        ("token ghp_" + "a1B2" * 9, "GITHUB_TOKEN"),
        ("OPENAI_API_KEY=sk-proj-" + "Ab3_" * 8, "OPENAI_API_KEY"),
        ("sk-ant-api03-" + "x9Y" * 10, "ANTHROPIC_API_KEY"),
        ("xoxb-123456789012-abcdefABCDEF", "SLACK_TOKEN"),
        ("stripe sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_KEY"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6", "JWT"),
        ("postgres://admin:s3cr3tpass@db.internal:5432/app", "URL_CREDENTIALS"),
        ('password = "h7Gk2pQ9zX"', "GENERIC_SECRET"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----",
            "PRIVATE_KEY",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA (cut off", "PRIVATE_KEY"),
    ],
)
def test_secrets_found(text: str, kind: str) -> None:
    verdict = SecretsGuard().check(text, GuardContext())
    assert not verdict.passed and kind in {f.type for f in verdict.findings}


@pytest.mark.parametrize(
    "text",
    [
        "the password must have 12 characters",
        "set token = None before the loop",
        "task-manager skills are useful",
        "our API key rotation policy is quarterly",
    ],
)
def test_secrets_clean(text: str) -> None:
    assert SecretsGuard().check(text, GuardContext()).passed


def test_leak_fuzzy_and_canary() -> None:
    system = (
        "You are Helpdesk Bot for ACME Corp. Only answer questions about printers and laptops. "
        "Never discuss salaries. Escalate angry customers to a human agent immediately."
    )
    guard = LeakGuard(LeakOptions(canaries=["zebra-7781"]))
    ctx = GuardContext(system_prompt=system)
    leaked = (
        "Sure! my rules: you are helpdesk bot for acme corp; only answer questions about "
        "PRINTERS and laptops, never discuss salaries."
    )
    verdict = guard.check(leaked, ctx)
    assert not verdict.passed and verdict.findings[0].type == "SYSTEM_PROMPT"
    assert guard.check("Your printer needs new toner; try the tray first.", ctx).passed
    assert not guard.check("ok ZEBRA-7781", GuardContext()).passed
    ctx_canary = GuardContext(canaries=("c4n4ry",))
    assert guard.check("nothing", ctx_canary).passed
    assert not guard.check("here: c4n4ry", ctx_canary).passed


def test_banned_topics_and_length() -> None:
    banned = BannedGuard(ListOptions(keywords=["acme rival"], regex=[r"\bcoupon\s+\w+"]))
    v = banned.check("Try Acme Rival or coupon SAVE10", GuardContext())
    assert not v.passed and [f.text for f in v.findings] == ["Acme Rival", "coupon SAVE10"]
    assert banned.check("acme rivalry is fine (whole words only)", GuardContext()).passed
    topics = TopicsGuard(ListOptions(keywords=["printer", "laptop"]))
    assert topics.check("My LAPTOP is slow", GuardContext()).passed
    assert not topics.check("Who won the match?", GuardContext()).passed
    assert not MaxLengthGuard(MaxLengthOptions(max_chars=5)).check("123456", GuardContext()).passed
    assert (
        not MaxLengthGuard(MaxLengthOptions(max_tokens=2)).check("123456789", GuardContext()).passed
    )
    assert MaxLengthGuard(MaxLengthOptions(max_tokens=3)).check("123456789", GuardContext()).passed


def test_metrics() -> None:
    c = Confusion()
    for label, flagged in [(1, True), (1, False), (0, False), (0, False), (0, True)]:
        c.add(label, flagged)
    assert c.tpr == 0.5 and c.fpr == pytest.approx(1 / 3)
    assert c.balanced_accuracy == pytest.approx((0.5 + 2 / 3) / 2)
    assert Confusion().balanced_accuracy is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0 and percentile([1.0] * 99 + [9.0], 99) == 1.0

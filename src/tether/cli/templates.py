"""Files ``tether init`` writes: the config and the dataset its ``assistant`` is evaluated on."""

import json

STARTER_CONFIG = """\
# tether.yaml: one declarative spec per AI feature. Validate with `tether check`.
# Docs: every key below is optional unless marked (required).

providers:
  # The embedded model (SmolLM2-135M-Instruct on llama.cpp): no key, no network.
  local: {kind: local}
  # Any OpenAI-compatible endpoint; secrets come from the environment:
  # openai: {kind: openai, base_url: https://api.openai.com/v1, api_key: ${OPENAI_API_KEY}}
  # ollama: {kind: openai, base_url: http://127.0.0.1:11434/v1}
  # anthropic: {kind: anthropic, api_key: ${ANTHROPIC_API_KEY}}

features:
  assistant:
    description: A general helper answering one message.
    prompt:
      system: You are a concise, friendly assistant. Answer in one or two sentences.
      template: "{{ message }}"          # Jinja2; variables come from the call
    model: local:smollm2                 # (required) provider:model
    # fallbacks: [ollama:llama3.1]       # tried in order when the model fails
    timeout_s: 60                        # per attempt
    max_tokens: 128
    temperature: 0.2
    # retry: {max_attempts: 2, backoff_base_s: 0.1, budget_ratio: 0.2}
    # breaker: {window: 20, failure_rate: 0.5, cooldown_s: 15}
    on_failure:                          # (required) what users get when the model fails
      respond: "Sorry, I can't answer that right now. Please try again in a minute."
    variants:                            # named versions to measure against the feature
      terse: {prompt: {system: "Answer in as few words as possible."}, temperature: 0}
    evals:                               # tether eval run assistant (docs/evals.md)
      dataset: evals/assistant.jsonl     # relative to this file
      # gate: {min_pass_rate: 0.8}       # eval run exits 1 below it (a CI gate)
"""

STARTER_CASES = (  # (message, assert type, value, tag): one JSONL row each
    ("What is the capital of France?", "icontains", "paris", "geography"),
    ("What is 2 + 2?", "contains-any", ["4", "four"], "arithmetic"),
    ("Name a primary colour.", "icontains-any", ["red", "blue", "yellow"], "general"),
    ("Say hello in French.", "icontains", "bonjour", "language"),
    ("What is the largest planet in the solar system?", "icontains", "jupiter", "science"),
)


def starter_dataset() -> str:
    """The rows of ``evals/assistant.jsonl``."""
    rows = (
        {"vars": {"message": m}, "assert": [{"type": t, "value": v}], "tags": [tag]}
        for m, t, v, tag in STARTER_CASES
    )
    return "".join(json.dumps(row) + "\n" for row in rows)

"""Files ``tether init`` writes."""

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
"""

"""Model providers shared by the job kinds: LLM chat completions and embeddings.

One module per concern:

- :mod:`~providers.llm`: chat completions behind one small interface (``openai``, ``echo``);
- :mod:`~providers.embeddings`: text embeddings behind one small interface;
- :mod:`~providers.openai_api`: the official ``openai`` SDK client built from the settings,
  and its failures mapped onto the error tree below;
- :mod:`~providers.errors`: what a provider call can fail with, transient or permanent;
- :mod:`~providers.retries`: one provider call retried on transient failures;
- :mod:`~providers.rate_limit`: the per-provider request rate shared through Redis.

Providers sit between the job kinds (``tasks``), which call them, and the job engine
(``jobs``), whose retry policies they use.
"""

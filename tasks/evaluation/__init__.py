"""Evaluation runs: render a prompt against test cases, call an LLM provider, score.

One module per concern, so a reader finds a thing by its name:

- :mod:`~tasks.evaluation.spec`: the request (the job's arguments), validated;
- :mod:`~tasks.evaluation.render`: ``{{ name }}`` placeholders, filled without executing code;
- :mod:`~tasks.evaluation.scorers`: exact, contains, regex, json_valid, similarity;
- :mod:`~tasks.evaluation.run`: the run itself, pure of any database.

The LLM providers and their shared rate limit are in :mod:`providers` (other kinds use
them too): :mod:`providers.llm`, :mod:`providers.rate_limit`.
"""

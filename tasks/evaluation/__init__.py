"""Evaluation runs: render a prompt against test cases, call an LLM provider, score.

One module per concern, so a reader finds a thing by its name:

- :mod:`~tasks.evaluation.spec`: the request (the job's arguments), validated;
- :mod:`~tasks.evaluation.render`: ``{{ name }}`` placeholders, filled without executing code;
- :mod:`~tasks.evaluation.providers`: the LLM providers behind one small interface;
- :mod:`~tasks.evaluation.rate_limit`: the per-provider rate limit shared through Redis;
- :mod:`~tasks.evaluation.scorers`: exact, contains, regex, json_valid, similarity;
- :mod:`~tasks.evaluation.run`: the run itself, pure of any database.
"""

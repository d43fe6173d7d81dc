"""The embedding kind: prompts made searchable by meaning.

- :mod:`~tasks.embedding.kind`: the declaration (``POST /v1/jobs/embedding``) and the beat
  schedule that embeds stale prompts;
- :mod:`~tasks.embedding.models`: ``prompt_embeddings``, one vector per prompt in a
  libSQL vector index (revision 0009, which also makes the ``prompts_fts`` full-text
  index);
- :mod:`~tasks.embedding.repository`: batched upserts, the stale query, vector and
  full-text candidates;
- :mod:`~tasks.embedding.search`: vector and hybrid (reciprocal-rank fusion) search, the
  query-vector cache;
- :mod:`~tasks.embedding.job`: the job, in batches, resumable.
"""

"""``python3 -m bench embeddings``: the embedding job against the bare model, and vector
search through the index against an exact scan, on one machine, in one run.

Workloads (``--only`` picks some):

- ``throughput``: ``--texts`` prompt-like texts (made deterministically) encoded by the
  bare local embedder in this process, in batches of ``EMBEDDING_BATCH_SIZE`` (as the job
  runs them), against the embedding job's logic (``embed_prompts``, ``all_stale``) in
  this process on the same prompts in a migrated libSQL file: pages of stale prompts
  read, embedded, written through the repository's upsert in one write transaction per
  batch. Rounds alternate; the vectors are deleted (untimed) before each job round.
- ``search``: ``--vectors`` prompts and vectors in a migrated libSQL file, written
  through the repository's upsert with the product's vector index present; the fill's
  time is the index build. Then ``--queries`` queries: the product's vector search
  (``vector_top_k`` through the index, joined back to live prompts) against an exact
  ``ORDER BY vector_distance_cos(...) LIMIT 10`` scan; recall@10, p50/p99 of each.

The vectors of ``search`` are synthetic but clustered (see :func:`clustered_vectors`):
real-model vectors of ``--centers`` texts as centers, points mixed from a few centers
plus noise. Uniform random vectors in 384 dimensions would make recall meaningless.

Writes ``embeddings.json`` and ``embeddings.md`` to ``--results`` (``bench/results``).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import machine, project
from bench.report import comparison_table, figure_table
from bench.stats import Comparison, Figure, Summary, percentile

WORKLOADS = ("throughput", "search")
RESULTS = Path(__file__).resolve().parent / "results"
K = 10

# (normal, --quick)
DEFAULTS = {
    "rounds": (3, 2),
    "texts": (2000, 400),
    "vectors": (100_000, 10_000),
    "queries": (200, 50),
}

_SUBJECTS = (
    "a customer refund request",
    "a failing Python unit test",
    "a quarterly sales report",
    "a recipe for vegetarian lasagna",
    "a job posting for a data engineer",
    "the onboarding email for new users",
    "a SQL query over the orders table",
    "a product description for running shoes",
    "a bug report about the login page",
    "the release notes of version 2.3",
    "a legal contract clause",
    "a travel itinerary to Kyoto",
    "a support ticket about a late delivery",
    "a research abstract on protein folding",
    "a marketing tweet for a coffee brand",
    "a JavaScript function that parses dates",
    "a cover letter for a nursing position",
    "a lesson plan on fractions",
    "the minutes of a board meeting",
    "a poem about the sea",
    "a Kubernetes deployment file",
    "a complaint about a noisy neighbour",
    "an invoice dispute",
    "a fitness plan for beginners",
    "the privacy policy of a mobile app",
    "a Dockerfile for a Go service",
    "a children's story about a dragon",
    "an error log from a payment service",
    "a meal plan for a week",
    "a press release about a merger",
)
_TASKS = (
    "Summarize {s} in three bullet points.",
    "Translate {s} into {lang}.",
    "Rewrite {s} in a {tone} tone.",
    "Find the mistakes in {s} and explain them.",
    "Classify {s} by urgency and topic.",
    "Write a short reply to {s}.",
    "Extract every date, name and amount from {s}.",
    "Explain {s} to a ten-year-old.",
    "Turn {s} into a checklist.",
    "Suggest five titles for {s}.",
    "Review {s} and rate it from 1 to 10 with reasons.",
    "Shorten {s} to under 50 words.",
)
_LANGS = ("French", "Spanish", "Japanese", "German", "Portuguese", "Korean", "Italian")
_TONES = ("formal", "friendly", "playful", "neutral", "persuasive", "concise")
_EXTRAS = (
    "Keep the original meaning.",
    "Use plain English.",
    "Answer in Markdown.",
    "Do not invent facts.",
    "Mention any assumptions you make.",
    "Be brief.",
    "Include one example.",
    "Quote the relevant sentences.",
    "End with a question.",
    "Avoid jargon.",
    "Use a numbered list.",
    "Return JSON with the keys title and body.",
)


def prompt_texts(count: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """``count`` distinct prompts (id, title, content), the same for the same seed."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    for i in range(count):
        subject = rng.choice(_SUBJECTS)
        task = rng.choice(_TASKS).format(
            s=subject, lang=rng.choice(_LANGS), tone=rng.choice(_TONES)
        )
        extras = " ".join(rng.sample(_EXTRAS, rng.randint(1, 4)))
        title = f"{task.split(' ', 1)[0]} {subject} #{i}"
        content = f"{task} {extras} Context: case {i}, priority {rng.randint(1, 5)}."
        rows.append((str(uuid.UUID(int=rng.getrandbits(128))), title, content))
    return rows


def embedding_text(title: str, content: str) -> str:
    """What the job embeds for a prompt (``tasks.embedding.repository.embedding_text``)."""
    return f"{title}\n\n{content}"


def clustered_vectors(centers: Any, count: int, seed: int) -> Any:
    """``count`` unit vectors around ``centers`` (rows, unit length): each is 0.8 of one
    center, 0.4 of a second and 0.2 of a third (random weights), plus isotropic noise of
    norm ~0.3; so neighbourhoods are dense but not duplicates, like prompts on a few
    hundred topics, each topic phrased many ways."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n, dim = centers.shape
    pick = rng.integers(0, n, size=(count, 3))
    weights = rng.uniform(0.0, 1.0, size=(count, 3)) * np.array([0.2, 0.4, 0.2]) + np.array(
        [0.8, 0.0, 0.0]
    )
    mixed = (centers[pick] * weights[..., None]).sum(axis=1)
    mixed += rng.normal(0.0, 0.3 / dim**0.5, size=(count, dim))
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return mixed.astype(np.float32)


def _settings(folder: Path, name: str) -> project.Settings:
    # Redis is not used by these workloads; the settings still need a URL.
    return project.settings_for(folder / name, "redis://127.0.0.1:1/0")


def remake_index(db: project.Database, index_options: str) -> str:
    """Make the vector index anew with these options instead of the migration's (none:
    keep the migration's)."""
    ddl = project.vector_index_ddl()
    if index_options:
        options = ", ".join(f"'{o.strip()}'" for o in index_options.split(",") if o.strip())
        ddl = ddl[: ddl.index("'metric=cosine'")] + f"'metric=cosine', {options}))"
        project.execute(db, f"DROP INDEX {project.VECTOR_INDEX}")
        project.execute(db, ddl)
    print(f"  index: {ddl}")
    return ddl


# ---------------------------------------------------------------------- throughput


def run_throughput(
    folder: Path, count: int, rounds: int, index_options: str
) -> tuple[list[Comparison], dict[str, Any]]:
    embedder = project.local_embedder()
    batch = project.EMBEDDING_BATCH_SIZE
    rows = prompt_texts(count)
    # The job pages stale prompts by id: the bare model gets the same batches.
    texts = [embedding_text(t, c) for _, t, c in sorted(rows)]
    settings = _settings(folder, "throughput.db")
    project.migrate(settings)
    db = project.Database(settings)
    ddl = remake_index(db, index_options)
    project.add_prompts(db, rows)
    embedder.embed(texts[:batch])  # warm up (first-run allocations), both sides share it

    def bare() -> float:
        began = time.perf_counter()
        for start in range(0, len(texts), batch):
            embedder.embed(texts[start : start + batch])
        return count / (time.perf_counter() - began)

    def job() -> float:
        project.clear_vectors(db)
        began = time.perf_counter()
        report = project.embed_all_stale(db, embedder, batch)
        seconds = time.perf_counter() - began
        if report.embedded != count:
            raise RuntimeError(f"the job embedded {report.embedded} of {count} prompts")
        return count / seconds

    sides = {"bare": bare, "job": job}
    measured: dict[str, list[float]] = {"bare": [], "job": []}
    for index in range(rounds):
        order = ["bare", "job"] if index % 2 == 0 else ["job", "bare"]
        for name in order:
            measured[name].append(sides[name]())
        print(
            f"  round {index + 1}: bare {measured['bare'][-1]:.1f} texts/s, "
            f"job {measured['job'][-1]:.1f} prompts/s"
        )
    db.dispose()
    comparison = Comparison(
        workload=f"embedding {count} prompts, batches of {batch}",
        unit="texts/s",
        higher_is_better=True,
        ours=Summary.of(measured["job"]),
        baseline=Summary.of(measured["bare"]),
        baseline_name="bare LocalEmbedder, same texts and batches",
        target=0.9,
        note="the job's logic (embed_prompts, all_stale) in this process, writing to a "
        "libSQL file through the repository; not through a worker",
        ours_name="embedding job logic",
    )
    return [comparison], {"texts": count, "batch_size": batch, "index_ddl": ddl}


# ---------------------------------------------------------------------- search


def run_search(
    folder: Path, count: int, queries: int, centers: int, index_options: str
) -> tuple[list[Comparison], list[Figure], dict[str, Any]]:
    import numpy as np

    embedder = project.local_embedder()
    center_rows = prompt_texts(centers, seed=11)
    center_vectors = np.array(
        embedder.embed([embedding_text(t, c) for _, t, c in center_rows]), dtype=np.float32
    )
    vectors = clustered_vectors(center_vectors, count, seed=1)
    probes = clustered_vectors(center_vectors, queries, seed=2)
    rows = prompt_texts(count, seed=3)
    ids = [pid for pid, _, _ in rows]

    settings = _settings(folder, "search.db")
    project.migrate(settings)
    db = project.Database(settings)
    ddl = remake_index(db, index_options)

    began = time.perf_counter()
    for start in range(0, count, 5000):
        project.add_prompts(db, rows[start : start + 5000])
    prompts_seconds = time.perf_counter() - began
    print(f"  {count} prompts inserted in {prompts_seconds:.1f} s")

    began = time.perf_counter()
    step = 500
    for start in range(0, count, step):
        chunk = [
            (pid, title, content, vectors[start + i].tolist())
            for i, (pid, title, content) in enumerate(rows[start : start + step])
        ]
        written = project.upsert_vectors(db, "bench-clustered", chunk)
        if len(written) != len(chunk):
            raise RuntimeError("the upsert skipped vectors")
        if (start // step) % 20 == 0:
            print(f"    {start + len(chunk)} vectors, {time.perf_counter() - began:.0f} s")
    build_seconds = time.perf_counter() - began
    print(f"  {count} vectors written with the index present in {build_seconds:.1f} s")

    # The true top 10 by cosine, to check the exact scan itself.
    truth = np.argsort(-(probes @ vectors.T), axis=1)[:, :K]
    ann_ms: list[float] = []
    raw_ms: list[float] = []
    exact_ms: list[float] = []
    recall: list[float] = []
    raw_recall: list[float] = []
    exact_agrees: list[float] = []
    for index, probe in enumerate(probes):
        vector = probe.tolist()
        found: dict[str, list[str]] = {}
        steps = [
            ("ann", ann_ms, lambda v=vector: project.nearest(db, "bench-clustered", v, K)),
            ("raw", raw_ms, lambda v=vector: project.top_k_raw(db, v, K)),
            ("exact", exact_ms, lambda v=vector: project.exact_nearest(db, v, K)),
        ]
        shift = index % len(steps)
        for name, samples, call in steps[shift:] + steps[:shift]:
            began = time.perf_counter()
            found[name] = call()
            samples.append((time.perf_counter() - began) * 1000)
        exact = set(found["exact"])
        recall.append(len(exact & set(found["ann"])) / K)
        raw_recall.append(len(exact & set(found["raw"])) / K)
        exact_agrees.append(len(exact & {ids[i] for i in truth[index]}) / K)
        if (index + 1) % 50 == 0:
            print(f"    {index + 1} queries, recall so far {statistics.mean(recall):.3f}")
    db.dispose()
    size_mb = (folder / "search.db").stat().st_size / 1e6

    def p(samples: list[float], q: float) -> float:
        return percentile(samples, q)

    comparisons = [
        Comparison(
            workload=f"search at {count // 1000}k vectors, top {K}, p50",
            unit="ms",
            higher_is_better=False,
            ours=Summary.of([p(ann_ms, 50)]),
            baseline=Summary.of([p(exact_ms, 50)]),
            baseline_name="exact scan (ORDER BY vector_distance_cos LIMIT 10)",
            target=0.1,
            ours_name="product vector search (vector_top_k)",
        ),
        Comparison(
            workload=f"search at {count // 1000}k vectors, top {K}, p99",
            unit="ms",
            higher_is_better=False,
            ours=Summary.of([p(ann_ms, 99)]),
            baseline=Summary.of([p(exact_ms, 99)]),
            baseline_name="exact scan (ORDER BY vector_distance_cos LIMIT 10)",
            ours_name="product vector search (vector_top_k)",
        ),
    ]
    figures = [
        Figure(
            f"recall@{K}, product search vs exact scan",
            "fraction",
            Summary.of([statistics.mean(recall)]),
            ">= 0.95",
        ),
        Figure(
            f"recall@{K}, bare vector_top_k(k={K}) vs exact scan",
            "fraction",
            Summary.of([statistics.mean(raw_recall)]),
        ),
        Figure(
            "exact scan vs numpy top 10 (a check)",
            "fraction",
            Summary.of([statistics.mean(exact_agrees)]),
            "1",
        ),
        Figure("product search p50 / p99", "ms", Summary.of([p(ann_ms, 50), p(ann_ms, 99)])),
        Figure(
            f"bare vector_top_k(k={K}) p50 / p99", "ms", Summary.of([p(raw_ms, 50), p(raw_ms, 99)])
        ),
        Figure("exact scan p50 / p99", "ms", Summary.of([p(exact_ms, 50), p(exact_ms, 99)])),
        Figure(
            f"index build: {count} vectors upserted with the index present",
            "s",
            Summary.of([build_seconds]),
        ),
        Figure(
            f"{count} prompts inserted (FTS triggers included), before the vectors",
            "s",
            Summary.of([prompts_seconds]),
        ),
        Figure("database file after the fill", "MB", Summary.of([size_mb])),
    ]
    details = {
        "vectors": count,
        "queries": queries,
        "centers": centers,
        "index_ddl": ddl,
        "recall_at_10": statistics.mean(recall),
        "raw_top_k_recall_at_10": statistics.mean(raw_recall),
        "exact_scan_agrees_with_numpy": statistics.mean(exact_agrees),
        "index_build_seconds": build_seconds,
        "prompts_insert_seconds": prompts_seconds,
        "database_mb": size_mb,
        "latency_ms": {
            "product_search": ann_ms,
            "bare_vector_top_k": raw_ms,
            "exact_scan": exact_ms,
        },
    }
    return comparisons, figures, details


# ---------------------------------------------------------------------- the run


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench embeddings", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller figures: a minute or two")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--rounds", type=int, help="throughput rounds per side (3)")
    parser.add_argument("--texts", type=int, help="prompts per throughput round (2000)")
    parser.add_argument("--vectors", type=int, help="vectors in the search database (100000)")
    parser.add_argument("--queries", type=int, help="search queries (200)")
    parser.add_argument("--centers", type=int, default=500, help="cluster centers (500)")
    parser.add_argument(
        "--index-options",
        default="",
        help="extra libsql_vector_idx options, comma-separated (e.g. "
        "compress_neighbors=float8,max_neighbors=32): both workloads make the index anew "
        "with them (default: the migration's index)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output folder")
    parser.add_argument("--workdir", type=Path, help="keep the scratch files in this folder")
    return parser


def markdown(summary: dict[str, Any], comparisons: list[Comparison], figures: list[Figure]) -> str:
    m = summary["machine"]
    loads = (m.get("load_average_at_start"), m.get("load_average_at_end"))
    parts = [
        "# Embeddings and search benchmark",
        "",
        f"Run of {m.get('date', '?')} on {m.get('description', '?')}, "
        f"{summary['seconds']:.0f} s. Arguments: `{summary['arguments']['command']}`.",
        "",
        f"Load average (1, 5, 15 min) before the run {loads[0]}, after it {loads[1]}: the "
        "machine is shared with other work, which shows as spread between rounds.",
        "",
    ]
    if comparisons:
        parts += [
            "ratio = this project's median / the baseline's (throughput: higher is better; "
            "latency: lower is better).",
            "",
            comparison_table(comparisons),
            "",
        ]
    if figures:
        parts += [figure_table(figures), ""]
    search = summary.get("search")
    if search:
        parts += [
            f"Search: {search['vectors']} synthetic clustered 384-d vectors (real-model "
            f"vectors of {search['centers']} prompt texts as centers), {search['queries']} "
            f"queries from the same distribution; index `{search['index_ddl']}`. "
            "p50 / p99 rows give the p50 then the p99 as min and max.",
            "",
        ]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    pick = 1 if args.quick else 0
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[pick])
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        print(f"--only: unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
        return 2
    command = shlex.join(["python3", "-m", "bench", "embeddings", *argv])
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    summary: dict[str, Any] = {
        "machine": machine.describe(),
        "arguments": {"command": command, **arguments},
    }
    print(f"{summary['machine']['description']}\n{command}")
    comparisons: list[Comparison] = []
    figures: list[Figure] = []
    began = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="embeddings-bench-", dir=args.workdir))
    try:
        if "throughput" in chosen:
            print(f"throughput: {args.texts} prompts, {args.rounds} rounds per side ...")
            found, details = run_throughput(folder, args.texts, args.rounds, args.index_options)
            comparisons += found
            summary["throughput"] = details
        if "search" in chosen:
            print(f"search: {args.vectors} vectors, {args.queries} queries ...")
            found, more, details = run_search(
                folder, args.vectors, args.queries, args.centers, args.index_options
            )
            comparisons += found
            figures += more
            summary["search"] = details
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"scratch folder kept: {folder}")
    summary["seconds"] = time.perf_counter() - began
    summary["machine"]["load_average_at_end"] = machine.load_average()
    summary["comparisons"] = [c.as_dict() for c in comparisons]
    summary["figures"] = [f.as_dict() for f in figures]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "embeddings.json").write_text(json.dumps(summary, indent=2) + "\n")
    document = markdown(summary, comparisons, figures)
    (args.results / "embeddings.md").write_text(document)
    print()
    print(document)
    print(f"written to {args.results}")
    for c in comparisons:
        if c.meets_target is False:
            print(f"target not met: {c.workload}: {c.ratio:.2f} ({c.target_text()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``autoforge backup ...`` as a user runs it: a separate process, configured by its environment.

Each test has a migrated libSQL file with a ``notes`` table of known rows, a backup folder
(``BACKUP_DIR``) and its own working directory. The CLI runs as
``python -m cli.main backup ...``; what it prints is parsed (``--json``) or read, and
what it did is checked on disk: the catalogue, restored files, the files a restore keeps
or must leave untouched.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tasks.backup.verify import inspect_database
from tests.conftest import copy_migrated
from tests.support.backups import (
    KEY_A,
    KEY_B,
    assert_key_absent,
    execute,
    flip_one_byte,
    query,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 60.0
NOTES = 40
BEFORE_ANY_BACKUP = "2000-01-01T00:00:00"
FAR_FUTURE = "2999-01-01T00:00:00"


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"autoforge {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def json(self) -> Any:
        assert self.returncode == 0, self.describe()
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The one ``error: ...`` line of a failed command (logs may precede it)."""
        assert "Traceback" not in self.stderr, self.describe()
        errors = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, self.describe()
        assert self.stderr.rstrip().splitlines()[-1] == errors[0], self.describe()
        return errors[0]


@dataclass(frozen=True)
class Running:
    args: tuple[str, ...]
    process: subprocess.Popen[str]

    def result(self) -> Result:
        try:
            stdout, stderr = self.process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
            pytest.fail(f"autoforge backup {' '.join(self.args)} hung:\n{stdout}\n{stderr}")
        return Result(self.args, self.process.returncode, stdout, stderr)

    def ok(self) -> Result:
        result = self.result()
        assert result.returncode == 0, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        return result


@dataclass(frozen=True)
class Cli:
    """The CLI on one database and backup folder."""

    workdir: Path
    db_path: Path
    backup_dir: Path

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        # None of the developer's settings leak in: only ours configure the process.
        ours = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
        env.update(
            PYTHONPATH=str(REPO),
            APP_ENV="local",
            DATABASE_URL=str(self.db_path),
            BACKUP_DIR=str(self.backup_dir),
        )
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> Running:
        """Start ``autoforge backup ARGS``; independent commands may run side by side."""
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "backup", *args],
            cwd=self.workdir,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Running(args, process)

    def run(self, *args: str, **env: str) -> Result:
        return self.start(*args, **env).result()

    def ok(self, *args: str, **env: str) -> Result:
        return self.start(*args, **env).ok()

    def create(self, **env: str) -> dict[str, Any]:
        created = self.ok("create", "--json", **env).json()
        assert isinstance(created, dict)
        return created


@pytest.fixture
def cli(tmp_path: Path, migrated_template: Path) -> Cli:
    db_path = copy_migrated(migrated_template, tmp_path / "db" / "autoforge.db")
    execute(
        db_path,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        "INSERT INTO notes (body) VALUES "
        + ", ".join(f"('note {i}')" for i in range(1, NOTES + 1)),
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Cli(workdir=workdir, db_path=db_path, backup_dir=tmp_path / "backups")


def _notes(path: Path) -> list[tuple[Any, ...]]:
    return query(path, "SELECT id, body FROM notes ORDER BY id")


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def _precious_file(path: Path) -> bytes:
    """A database at ``path`` that a refused restore must leave exactly as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    execute(path, "CREATE TABLE mine (v TEXT)", "INSERT INTO mine VALUES ('keep me')")
    return path.read_bytes()


class TestCreateListVerify:
    def test_create_list_and_verify(self, cli: Cli) -> None:
        created = cli.create()

        backup_id = created["backup_id"]
        assert created["encrypted"] is False
        assert created["table_counts"]["notes"] == NOTES
        assert created["verified_at"] is not None
        stored = Path(created["location"])
        assert stored.parent == cli.backup_dir.resolve()
        assert stored.is_file()
        assert stored.stat().st_size == created["stored_size_bytes"]

        listing, human = cli.start("list", "--json"), cli.start("list")
        listed = listing.ok().json()
        assert [m["id"] for m in listed] == [backup_id]
        assert listed[0]["stored_sha256"] == created["stored_sha256"]
        assert listed[0]["table_counts"] == created["table_counts"]
        assert listed[0]["stored"]["location"] == created["location"]
        assert human.ok().stdout.startswith(f"{backup_id}  {created['created_at']}")
        assert created["location"] in human.ok().stdout

        verified = cli.ok("verify", backup_id, "--json").json()
        assert verified["id"] == backup_id
        assert verified["verification_error"] is None
        assert verified["verified_at"] >= listed[0]["verified_at"]
        # The new verification time is recorded in the catalogue.
        assert cli.ok("list", "--json").json()[0]["verified_at"] == verified["verified_at"]

    def test_an_empty_catalogue_and_unknown_ids(self, cli: Cli) -> None:
        empty, human = cli.start("list", "--json"), cli.start("list")
        unknown = cli.start("verify", "20200101T000000Z-abcdef")
        malformed = cli.start("restore", "../../etc/passwd", "--to", "x.db")

        assert empty.ok().json() == []
        assert human.ok().stdout.strip() == "no backups"
        result = unknown.result()
        assert result.returncode == 1, result.describe()
        assert result.error_line().startswith("error: BackupNotFound: no backup 20200101")
        result = malformed.result()
        assert result.returncode == 1, result.describe()
        assert result.error_line().startswith("error: BackupNotFound: '../../etc/passwd' is not")
        assert not (cli.workdir / "x.db").exists()


def _run_on_terminal(cli: Cli, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, stdout, terminal output)."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "backup", *args],
            cwd=cli.workdir,
            env=cli.environment({}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
    finally:
        os.close(terminal)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        code = process.wait(RUN_TIMEOUT_S)
    finally:
        os.close(controller)
        if process.stdout is not None:
            process.stdout.close()
    return code, stdout, b"".join(chunks).decode(errors="replace")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _screen(terminal: str) -> str:
    """What the terminal showed, one drawn line per line, without the escape sequences
    (a redraw erases the line first: it starts a new one here)."""
    return _ANSI.sub("", terminal.replace("\x1b[2K", "\n"))


def _finished_bars(terminal: str) -> list[str]:
    """The stages whose bar reached 100%, in the order they first did."""
    stages: list[str] = []
    for stage in re.findall(r"^\s*(\w+)\s+━+\s+100%", _screen(terminal), re.MULTILINE):
        if stage not in stages:
            stages.append(stage)
    return stages


class TestProgress:
    def test_bars_per_stage_only_on_a_terminal(self, cli: Cli) -> None:
        piped = cli.start("create")
        code, stdout, terminal = _run_on_terminal(cli, "create")

        assert code == 0, terminal
        assert stdout.startswith("created ")
        assert _finished_bars(terminal) == ["snapshot", "verify", "encode", "upload"], terminal
        # Log lines are printed above the bars, not through them.
        assert re.search(
            r"^\d{4}-\d\d-\d\d [\d:,]+ INFO autoforge\.backup: backup \S+ of",
            _screen(terminal),
            re.M,
        ), terminal
        # Not a terminal: log lines only, no bar drawing.
        result = piped.ok()
        assert result.stdout.startswith("created ")
        assert "\r" not in result.stderr
        assert "%" not in result.stderr
        assert "━" not in result.stderr

    def test_json_output_stays_clean_on_a_terminal(self, cli: Cli) -> None:
        code, stdout, terminal = _run_on_terminal(cli, "create", "--json")

        assert code == 0, terminal
        assert json.loads(stdout)["backup_id"]
        assert "%" not in terminal
        assert "━" not in terminal

    def test_verify_and_restore_draw_download_and_check_bars(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        backup_id = cli.create()["backup_id"]
        target = tmp_path / "copies" / "bars.db"

        verified = _run_on_terminal(cli, "verify", backup_id)
        restored = _run_on_terminal(cli, "restore", backup_id, "--to", str(target))
        piped = cli.ok("verify", backup_id)

        for code, _, terminal in (verified, restored):
            assert code == 0, terminal
            assert _finished_bars(terminal) == ["download", "check"], terminal
        assert verified[1].startswith(f"verified {backup_id}")
        assert f"into {target.resolve()}" in restored[1]
        assert _notes(target) == _notes(cli.db_path)
        assert "━" not in piped.stderr
        assert "%" not in piped.stderr


class TestSizes:
    def test_sizes_are_for_people_and_bytes_in_json(self, cli: Cli, tmp_path: Path) -> None:
        execute(
            cli.db_path,
            "CREATE TABLE blobs (data BLOB)",
            "INSERT INTO blobs VALUES (randomblob(300000))",
        )
        created = cli.create()
        stored = created["stored_size_bytes"]
        assert stored > 300_000  # random bytes do not compress
        expected = f"{stored / 1000:.1f} kB"

        listed = cli.ok("list").stdout
        target = tmp_path / "copies" / "sized.db"
        restored = cli.ok("restore", created["backup_id"], "--to", str(target)).stdout

        assert f"  {expected}  rev " in listed, listed
        assert str(stored) not in listed
        raw = cli.ok("list", "--json").json()[0]["raw_size_bytes"]
        assert f"restored {raw / 1000:.1f} kB into " in restored, restored


class TestRestore:
    def test_restore_to_a_file_gives_the_same_rows(self, cli: Cli, tmp_path: Path) -> None:
        created = cli.create()
        target = tmp_path / "copies" / "restored.db"

        report = cli.ok("restore", created["backup_id"], "--to", str(target), "--json").json()

        assert report["backup_id"] == created["backup_id"]
        assert report["target"] == str(target.resolve())
        assert report["replaced"] is None
        assert report["table_counts"] == created["table_counts"]
        assert _notes(target) == _notes(cli.db_path)
        original, copy = inspect_database(cli.db_path), inspect_database(target)
        assert copy.ok
        assert copy.table_checksums == original.table_checksums
        assert copy.schema_revision == original.schema_revision
        assert _siblings(target) == ["restored.db"]

        # Again onto the same file: the previous one is kept beside it.
        human = cli.ok("restore", created["backup_id"], "--to", str(target))
        replaced = [name for name in _siblings(target) if name.startswith("restored.db.replaced-")]
        assert len(replaced) == 1, _siblings(target)
        assert f"kept as {target.parent.resolve() / replaced[0]}" in human.stdout
        assert _notes(target.parent / replaced[0]) == _notes(cli.db_path)

    def test_at_picks_the_newest_verified_backup_or_says_there_is_none(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        oldest = cli.create()
        newest = cli.create()
        target = tmp_path / "copies" / "at.db"
        early = tmp_path / "copies" / "early.db"

        too_early = cli.start("restore", "--at", BEFORE_ANY_BACKUP, "--to", str(early))
        result = cli.ok("restore", "--at", FAR_FUTURE, "--to", str(target))

        assert result.stdout.startswith(f"backup {newest['backup_id']}, taken at ")
        assert "the newest verified backup at or before 2999-01-01T00:00:00+00:00" in result.stdout
        assert _notes(target) == _notes(cli.db_path)
        refused = too_early.result()
        assert refused.returncode == 1, refused.describe()
        error = refused.error_line()
        assert error.startswith(
            "error: BackupNotFound: no verified backup was taken at or before "
            "2000-01-01T00:00:00+00:00"
        )
        assert f"the oldest verified backup is from {oldest['created_at']}" in error
        assert not early.exists()

    def test_usage_errors_exit_2(self, cli: Cli) -> None:
        neither = cli.start("restore")
        both = cli.start("restore", "20200101T000000Z-abcdef", "--at", FAR_FUTURE)
        bad_time = cli.start("restore", "--at", "yesterday")

        for running in (neither, both):
            result = running.result()
            assert result.returncode == 2, result.describe()
            assert result.error_line() == "error: give a BACKUP_ID or --at TIMESTAMP (one of them)"
            assert result.stdout == ""
        result = bad_time.result()
        assert result.returncode == 2, result.describe()
        assert "Traceback" not in result.stderr
        assert "'--at'" in result.stderr

    def test_the_live_database_needs_force_and_is_kept_beside(self, cli: Cli) -> None:
        created = cli.create()
        execute(cli.db_path, "INSERT INTO notes (body) VALUES ('written after the backup')")
        live_rows = _notes(cli.db_path)
        assert len(live_rows) == NOTES + 1

        refusals = [
            cli.start("restore", created["backup_id"]),
            cli.start("restore", "--at", FAR_FUTURE),
            # The same file under another spelling is still the live database.
            cli.start(
                "restore", created["backup_id"], "--to", os.path.relpath(cli.db_path, cli.workdir)
            ),
        ]

        for running in refusals:
            refused = running.result()
            assert refused.returncode == 1, refused.describe()
            error = refused.error_line()
            assert error.startswith(
                f"error: RestoreRefused: refusing to restore onto {cli.db_path.resolve()} "
                "without force: it is the live database"
            )
            assert "workers and the API keep connections open to it" in error
            assert "force" in error.split("live database", 1)[1]
        assert _notes(cli.db_path) == live_rows
        assert not [name for name in _siblings(cli.db_path) if "replaced" in name]

        forced = cli.ok("restore", created["backup_id"], "--force", "--json").json()

        assert forced["target"] == str(cli.db_path.resolve())
        replaced = Path(forced["replaced"])
        assert replaced.parent == cli.db_path.parent.resolve()
        assert replaced.name.startswith("autoforge.db.replaced-")
        assert _notes(cli.db_path) == live_rows[:NOTES]
        # The replaced file (with its WAL) still holds the write made after the backup.
        assert _notes(replaced) == live_rows
        assert inspect_database(cli.db_path).ok


class TestPrune:
    def test_keeps_the_newest_backup_of_the_day(self, cli: Cli) -> None:
        made = sorted(
            (running.ok().json() for running in [cli.start("create", "--json") for _ in range(3)]),
            key=lambda m: (m["created_at"], m["backup_id"]),
            reverse=True,
        )
        days = {m["created_at"][:10] for m in made}
        assert len(days) == 1, f"the backups straddle midnight UTC: {days}"

        pruned = cli.ok("prune", "--json", BACKUP_KEEP_DAILY="1").json()

        newest_first = [m["backup_id"] for m in made]
        assert pruned == {"dry_run": False, "kept": newest_first[:1], "deleted": newest_first[1:]}
        left = sorted(p.name for p in cli.backup_dir.iterdir())
        assert left == sorted([f"{newest_first[0]}.manifest.json", Path(made[0]["location"]).name])
        again = cli.ok("prune", BACKUP_KEEP_DAILY="1")
        assert again.stdout.strip() == "kept 1, deleted 0"

    def test_dry_run_lists_what_prune_deletes_and_deletes_nothing(self, cli: Cli) -> None:
        made = sorted(
            (running.ok().json() for running in [cli.start("create", "--json") for _ in range(3)]),
            key=lambda m: (m["created_at"], m["backup_id"]),
            reverse=True,
        )
        newest_first = [m["backup_id"] for m in made]
        assert len({m["created_at"][:10] for m in made}) == 1, "the backups straddle midnight"
        files = sorted(p.name for p in cli.backup_dir.iterdir())

        planned = cli.ok("prune", "--dry-run", "--json", BACKUP_KEEP_DAILY="1").json()
        human = cli.ok("prune", "--dry-run", BACKUP_KEEP_DAILY="1").stdout

        assert planned == {"dry_run": True, "kept": newest_first[:1], "deleted": newest_first[1:]}
        assert sorted(p.name for p in cli.backup_dir.iterdir()) == files
        lines = human.splitlines()
        assert lines[0] == "kept 1, would delete 2 (dry run: nothing was deleted)"
        assert [line.split()[:3] for line in lines[1:]] == [
            ["would", "delete", backup_id] for backup_id in newest_first[1:]
        ]
        assert all(line.endswith(" kB") or line.endswith(" bytes") for line in lines[1:])
        assert [m["id"] for m in cli.ok("list", "--json").json()] == newest_first
        # The real prune then deletes exactly what the dry run listed.
        pruned = cli.ok("prune", "--json", BACKUP_KEEP_DAILY="1").json()
        assert pruned["deleted"] == planned["deleted"]

    def test_the_newest_verified_backup_survives_a_policy_of_zero(self, cli: Cli) -> None:
        created = cli.create()

        pruned = cli.ok(
            "prune",
            "--json",
            BACKUP_KEEP_DAILY="0",
            BACKUP_KEEP_WEEKLY="0",
            BACKUP_KEEP_MONTHLY="0",
        ).json()

        assert pruned == {"dry_run": False, "kept": [created["backup_id"]], "deleted": []}


class TestEncryption:
    def test_new_key_is_base64_of_32_random_bytes(self, cli: Cli) -> None:
        first, second = cli.start("new-key"), cli.start("new-key")
        key, other = first.ok().stdout, second.ok().stdout

        assert key.endswith("\n")
        assert key.count("\n") == 1
        assert len(base64.b64decode(key.strip(), validate=True)) == 32
        assert key != other
        # It is accepted as the key.
        assert cli.create(BACKUP_ENCRYPTION_KEY=key.strip())["encrypted"] is True

    def test_the_key_never_appears_in_any_output(self, cli: Cli, tmp_path: Path) -> None:
        env = {"BACKUP_ENCRYPTION_KEY": KEY_A, "LOG_LEVEL": "DEBUG"}
        created_json = cli.ok("create", "--json", **env)
        created = created_json.json()
        backup_id = created["backup_id"]
        copy = str(tmp_path / "k.db")
        started = [
            cli.start("create", **env),
            cli.start("list", "--json", **env),
            cli.start("verify", backup_id, "--json", **env),
            cli.start("restore", backup_id, "--to", copy, "--json", **env),
            cli.start("restore", backup_id, **env),  # refused: the live database
            cli.start("restore", backup_id, "--to", copy + "2", BACKUP_ENCRYPTION_KEY=KEY_B),
        ]
        results = [created_json, *(running.result() for running in started)]
        results.append(cli.ok("prune", "--json", **env))

        assert [r.returncode for r in results] == [0, 0, 0, 0, 0, 1, 1, 0]
        assert created["encrypted"] is True
        assert created["location"].endswith(".db.zst.enc")
        assert results[2].json()[0]["encryption"]["algorithm"] == "AES-256-GCM"
        texts = [text for r in results for text in (r.stdout, r.stderr)]
        assert_key_absent(KEY_A, *texts)
        assert_key_absent(KEY_B, *texts)
        manifests = [p.read_text() for p in cli.backup_dir.glob("*.manifest.json")]
        assert manifests  # the same-day prune kept the newest
        assert_key_absent(KEY_A, *manifests)

    def test_an_invalid_key_is_a_configuration_error_that_does_not_echo_it(self, cli: Cli) -> None:
        short = base64.b64encode(b"sixteen byte key").decode()

        result = cli.run("list", BACKUP_ENCRYPTION_KEY=short)

        assert result.returncode == 2, result.describe()
        assert "error: invalid settings:" in result.stderr
        assert "BACKUP_ENCRYPTION_KEY must be base64 of exactly 32 bytes" in result.stderr
        assert short not in result.stderr + result.stdout

    def test_a_wrong_key_is_refused_and_the_target_is_untouched(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        created = cli.create(BACKUP_ENCRYPTION_KEY=KEY_A)
        backup_id = created["backup_id"]
        target = tmp_path / "copies" / "mine.db"
        before = _precious_file(target)

        wrong = cli.start("restore", backup_id, "--to", str(target), BACKUP_ENCRYPTION_KEY=KEY_B)
        wrong_at = cli.start(
            "restore", "--at", FAR_FUTURE, "--to", str(target), BACKUP_ENCRYPTION_KEY=KEY_B
        )
        missing = cli.start("restore", backup_id, "--to", str(target))

        for running in (wrong, wrong_at):
            result = running.result()
            assert result.returncode == 1, result.describe()
            error = result.error_line()
            assert error.startswith(f"error: BackupKeyMismatch: backup {backup_id} ")
            assert "wrong key" in error
        # A missing key is a configuration problem (exit 2), and names the variable.
        result = missing.result()
        assert result.returncode == 2, result.describe()
        assert "set BACKUP_ENCRYPTION_KEY to that key" in result.error_line()
        assert target.read_bytes() == before
        assert _siblings(target) == ["mine.db"]
        # The right key restores it.
        restored = cli.ok("restore", backup_id, "--to", str(target), BACKUP_ENCRYPTION_KEY=KEY_A)
        assert "the previous file is kept as" in restored.stdout
        assert _notes(target) == _notes(cli.db_path)


class TestTampering:
    def test_a_tampered_backup_is_refused_and_at_falls_back_to_a_verified_one(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        older = cli.create()
        newest = cli.create()
        flip_one_byte(Path(newest["location"]))
        target = tmp_path / "copies" / "mine.db"
        before = _precious_file(target)

        restore = cli.start("restore", newest["backup_id"], "--to", str(target))
        verify = cli.start("verify", newest["backup_id"])

        for running in (restore, verify):
            result = running.result()
            assert result.returncode == 1, result.describe()
            error = result.error_line()
            assert error.startswith(f"error: BackupCorrupted: backup {newest['backup_id']} ")
            assert "altered or damaged in storage" in error
        assert target.read_bytes() == before
        assert _siblings(target) == ["mine.db"]
        # The failed verification is recorded: the backup no longer counts as verified...
        listed = {m["id"]: m for m in cli.ok("list", "--json").json()}
        assert listed[newest["backup_id"]]["verified_at"] is None
        assert "altered or damaged" in listed[newest["backup_id"]]["verification_error"]
        assert listed[older["backup_id"]]["verified_at"] is not None
        # ...so a point-in-time restore takes the newest backup that still is.
        at = cli.ok("restore", "--at", FAR_FUTURE, "--to", str(target))
        assert at.stdout.startswith(f"backup {older['backup_id']}, taken at ")
        assert _notes(target) == _notes(cli.db_path)

    def test_a_manifest_from_before_signing_is_refused_until_adopted(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        created = cli.create(BACKUP_ENCRYPTION_KEY=KEY_A)
        backup_id = created["backup_id"]
        manifest = cli.backup_dir / f"{backup_id}.manifest.json"
        document = json.loads(manifest.read_text())
        del document["signature"]  # as versions before signing wrote it
        manifest.write_text(json.dumps(document))
        target = tmp_path / "copies" / "mine.db"

        refused = cli.run("restore", backup_id, "--to", str(target), BACKUP_ENCRYPTION_KEY=KEY_A)
        assert refused.returncode == 1, refused.describe()
        error = refused.error_line()
        assert error.startswith(f"error: ManifestRejected: the manifest of {backup_id} is not ")
        assert f"`autoforge backup adopt {backup_id}`" in error
        assert cli.ok("list", "--json", BACKUP_ENCRYPTION_KEY=KEY_A).json() == []

        adopted = cli.ok("adopt", backup_id, BACKUP_ENCRYPTION_KEY=KEY_A)
        assert adopted.stdout.startswith(f"adopted {backup_id} ")
        cli.ok("restore", backup_id, "--to", str(target), BACKUP_ENCRYPTION_KEY=KEY_A)
        assert _notes(target) == _notes(cli.db_path)

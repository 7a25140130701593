"""Every `meetup-*` command: a bad argument ends it in one line and exit status 2, never a traceback; its
--help gives each option a sentence and its default, and keeps the usage examples."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tomllib

import pytest

from common import cli
from common.settings import PROJECT_ROOT
from common.submit import script_index

SCRIPTS = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def command_main(name: str):
    module, function = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), function)


class Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def parser_of(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command builds, caught as it starts parsing (nothing after that runs)."""

    def catch(self, *args, **kwargs):
        raise Caught(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    with pytest.raises(Caught) as caught:
        command_main(name)(["pipelines/chain.py"] if name == "meetup-submit" else [])
    return caught.value.parser


def one_line_refusal(capsys, run) -> str:
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # no usage block, no traceback
    return lines[0]


VALID = {"meetup-stack": ["status"], "meetup-score": ["capture.jsonl"], "meetup-replay": ["--list"]}


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - {"meetup-submit"}))  # its unknown options are spark-submit's
def test_an_unknown_option_is_one_line_and_exit_status_2(name, capsys):
    line = one_line_refusal(capsys, lambda: command_main(name)(["--no-such-option", *VALID.get(name, [])]))
    assert line.startswith(f"{name}: error: ") and "--no-such-option" in line and f"{name} --help" in line


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_names_each_option_with_a_sentence_its_default_and_the_usage_examples(name, monkeypatch):
    parser = parser_of(name, monkeypatch)
    assert parser.prog == name
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    positionals = [a for a in parser._actions if not a.option_strings]
    for action in options + positionals:
        assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    text = parser.format_help()
    for action in options:
        if action.default not in (None, False):
            assert re.search(rf"{re.escape(action.option_strings[-1])}.*?\(default: ", text, re.S), action
    examples = [line.strip() for line in (parser.epilog or "").splitlines() if line.strip().startswith(name)]
    assert examples, f"{name} --help shows no usage example"
    assert all(example in text for example in examples)


def test_replay_refuses_offsets_that_are_not_json_in_one_line(capsys):
    from pipelines.replay import main

    line = one_line_refusal(capsys, lambda: main(["--to", "g2", "--from-offsets", '{"0": 12']))
    assert line.startswith("meetup-replay: error: argument --from-offsets: not per-partition offsets")
    line = one_line_refusal(capsys, lambda: main(["--to", "g2", "--from-offsets", '{"0": -1}']))
    assert "never negative" in line
    line = one_line_refusal(capsys, lambda: main(["--to", "g2", "--from-timestamp", "yesterday"]))
    assert line.startswith("meetup-replay: error: argument --from-timestamp: not a time: 'yesterday'")


def test_a_time_without_a_zone_is_utc_for_every_command():
    assert cli.time_ms("2026-11-29T06:00:00") == cli.time_ms("2026-11-29T06:00:00Z") == 1_795_932_000_000
    assert cli.time_ms("2026-11-29T07:00:00+01:00") == 1_795_932_000_000
    assert cli.time_ms("1795932000000") == 1_795_932_000_000
    assert cli.partition_offsets('{"0": 1200, "2": 0}') == {0: 1200, 2: 0}


def test_the_stack_command_with_a_malformed_setting_is_one_line_and_exit_status_2(tmp_path):
    env = {**os.environ, "MEETUP_STACK_DIR": str(tmp_path), "SPARK_SHUFFLE_PARTITIONS": "four"}
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", "status"], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )
    assert result.returncode == 2
    expected = "meetup-stack: SPARK_SHUFFLE_PARTITIONS must be an integer, got 'four'"
    assert result.stderr.strip().splitlines() == [expected]


def test_submit_finds_the_script_after_spark_submits_options_and_their_values():
    assert script_index(["--py-files", "deps.py", "--verbose", "job.py", "--x", "1"]) == 3
    assert script_index(["--master=local[2]", "--conf", "a=b.py", "pipelines/chain.py"]) == 3
    assert script_index(["--master", "local[1]"]) == 2  # no script


def test_submit_without_a_script_is_one_line_and_its_dry_run_prints_the_command(capsys):
    from common.submit import main

    line = one_line_refusal(capsys, lambda: main(["--master", "local[1]"]))
    assert line.startswith("meetup-submit: error: give the script to run")
    assert main(["--dry-run", "--master", "local[1]", "pipelines/chain.py", "--stages", "bronze"]) == 0
    printed = capsys.readouterr().out.split()
    script = printed.index("pipelines/chain.py")
    assert printed[script + 1 :] == ["--stages", "bronze"]
    assert "--dry-run" not in printed and printed[printed.index("--master") + 1] == "'local[1]'"
    assert printed.count("--master") == 1  # given, so our default is left out


def test_no_library_code_ends_the_process_itself():
    """SystemExit belongs to a command's main (argparse's, through cli.Parser); library code raises errors
    that `cli.command` turns into the line and the status."""
    found = []
    for package in ("common", "lakehouse", "pipelines", "ml", "ingest", "app", "demo", "stack"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"raise SystemExit|sys\.exit\(", line) and "__main__" not in line:
                    found.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    allowed = [f for f in found if f.endswith("sys.exit(main())")]
    assert found == allowed, "\n".join(sorted(set(found) - set(allowed)))


def test_only_the_settings_loader_and_process_launchers_read_the_environment():
    """Every project variable is a field of Settings (common/settings.py); the rest of the code reads the
    settings, never os.environ. The exceptions launch processes and read what those need."""
    launchers = {
        "common/settings.py",  # the loader
        "common/spark.py",  # PySpark's own: is spark-submit our parent, and the workers' interpreter
        "app/cli.py",  # MEETUP_APP_LOGIN for the Streamlit it runs in its own process
        "demo/run.py",  # DISPLAY: whether a browser can be opened
        "stack/procs.py",  # JAVA_HOME: which java starts the services
    }
    found = set()
    for package in ("common", "lakehouse", "pipelines", "ml", "ingest", "app", "demo", "stack"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            if re.search(r"os\.environ|os\.getenv|environ\.get\(", path.read_text()):
                found.add(str(path.relative_to(PROJECT_ROOT)))
    assert found <= launchers, f"reads the environment instead of the settings: {sorted(found - launchers)}"


def test_log_lines_carry_time_level_command_and_component_and_the_level_is_a_setting(capsys, monkeypatch):
    import logging

    from common import logs

    try:
        logs.setup("meetup-chain", "DEBUG")
        logging.getLogger("pipelines.silver.job").debug("silver-rsvps: batch %s", 3)
        logging.getLogger("py4j").debug("py4j speaks at DEBUG only when asked")
        monkeypatch.setenv("MEETUP_LOG_LEVEL", "warning")
        logs.setup("meetup-chain")
        logging.getLogger("pipelines.silver.job").info("not at WARNING")
        logging.getLogger("py4j").info("py4j's chatter is held back")
        logging.getLogger("pipelines.silver.mirror").warning("PostgreSQL unavailable")
    finally:
        logs.setup("pytest", "INFO")
    lines = capsys.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"{stamp} DEBUG meetup-chain pipelines\.silver\.job: silver-rsvps: batch 3", lines[0])
    assert re.fullmatch(rf"{stamp} DEBUG meetup-chain py4j: py4j speaks at DEBUG only when asked", lines[1])
    assert re.fullmatch(rf"{stamp} WARNING meetup-chain pipelines\.silver\.mirror: PostgreSQL unavailable", lines[2])


def test_a_malformed_log_level_is_one_line_and_exit_status_2(capsys, monkeypatch):
    from ingest.server import main

    monkeypatch.setenv("MEETUP_LOG_LEVEL", "chatty")
    assert main(["--generate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["meetup-replay-server: MEETUP_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'chatty'"]

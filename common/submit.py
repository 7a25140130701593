"""`meetup-submit [SPARK-SUBMIT OPTIONS] SCRIPT [ARGS]`: spark-submit with the resolved jars and the settings.

    meetup-submit pipelines/chain.py --available-now
    meetup-submit --master spark://host:7077 --conf spark.cores.max=2 pipelines/chain.py
    meetup-submit --dry-run pipelines/chain.py      # print the spark-submit command instead of running it

Options before the script go to spark-submit and win over ours: `--jars` (the jars `make jars` resolved),
`--py-files` (this project's packages, zipped), `--master`, `--driver-memory` and `--executor-memory` from
the settings. spark-submit runs with an environment built from the settings (`Settings.child_env`: the
environment over the local stack's `.stack/env`), so the driver it starts loads the same settings and hands
the S3 keys to S3A itself; on a real cluster, see docs/scaling-out.md, "Deploying on a managed cluster".
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from common import cli, health
from common.settings import PROJECT_ROOT, Settings
from common.spark import DRIVER_JAVA_OPTIONS, spark_jars

PACKAGES = ("common", "lakehouse", "pipelines", "ml", "ingest")  # what executors may import from this project
RESOURCES = ("sql",)  # files the jobs read beside their code: the mirror's DDL


def project_zip(build_dir: Path) -> Path:
    """The project's Python packages in one zip for `--py-files`: executors on other machines import
    `pipelines.*` from it (the local workers could import it from the virtualenv, a real cluster cannot)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    target = build_dir / "meetup_rsvps.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            for source in sorted((PROJECT_ROOT / package).rglob("*.py")):
                archive.write(source, source.relative_to(PROJECT_ROOT))
        for directory in RESOURCES:
            for resource in sorted((PROJECT_ROOT / directory).iterdir()):
                archive.write(resource, resource.relative_to(PROJECT_ROOT))
    partial.replace(target)  # atomic: a submission running beside this one keeps a whole zip
    return target


def _option(options: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` among spark-submit's options, if given."""
    for i, option in enumerate(options):
        if option == name and i + 1 < len(options):
            return options[i + 1]
        if option.startswith(name + "="):
            return option.split("=", 1)[1]
    return None


# spark-submit's options that take no value (every other `--option` takes the word after it, or `=value`)
FLAGS = frozenset({"--verbose", "-v", "--supervise", "--version", "--help", "-h", "--usage-error"})


def script_index(args: list[str]) -> int:
    """Where the script is in a spark-submit command line: the first word that is neither an option nor an
    option's value (len(args) when there is none). What follows it is the script's own."""
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("-"):
            return i
        i += 1 if word in FLAGS or "=" in word else 2
    return len(args)


def submit_command(submit: str, settings: Settings, args: list[str], py_files: Path) -> list[str]:
    """spark-submit's command line: our defaults first, each left out when `args` gives that option."""
    script = script_index(args)
    options = args[:script]  # what follows the script is the script's own arguments
    given = {arg.split("=", 1)[0] for arg in options if arg.startswith("--")}
    defaults: list[str] = []

    def default(option: str, value: str) -> None:
        if option not in given:
            defaults.extend([option, value])

    default("--master", settings.spark.master)
    default("--driver-memory", settings.spark.driver_memory)
    if not any(arg.startswith("spark.driver.extraJavaOptions") for arg in options):
        default("--driver-java-options", DRIVER_JAVA_OPTIONS)  # see common.spark
    master = _option(options, "--master") or settings.spark.master
    if not master.startswith("local"):
        default("--executor-memory", settings.spark.executor_memory)
    if urlparse(master).hostname in ("127.0.0.1", "localhost"):
        # executors on this machine reach the driver on loopback, whatever the hostname resolves to
        defaults += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]
    jars = ",".join(str(jar) for jar in spark_jars(settings.spark.jars_dir))
    return [submit, "--jars", jars, "--py-files", str(py_files), *defaults, *args]


def build_parser() -> cli.Parser:
    """Our own options; spark-submit's, before the script, pass through to it untouched."""
    parser = cli.parser("meetup-submit", __doc__)
    parser.allow_abbrev = False  # --dr must not be taken for --dry-run: it may be one of spark-submit's
    parser.usage = "meetup-submit [-h] [--dry-run] [SPARK-SUBMIT OPTIONS] SCRIPT [ARGS]"
    parser.add_argument("--dry-run", action="store_true", help="print the spark-submit command instead of running it")
    return parser


@cli.command("meetup-submit")
def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    script = script_index(args)
    parser = build_parser()
    ours, spark_options = parser.parse_known_args(args[:script])  # -h/--help anywhere before the script
    if script == len(args):
        parser.error("give the script to run (a .py or .jar file) after spark-submit's options")
    args = [*spark_options, *args[script:]]
    settings = health.settings_for()
    env = submit_env(settings)
    submit = shutil.which("spark-submit", path=env["PATH"])
    if submit is None:
        raise cli.CommandError("spark-submit not found (it comes with pyspark: run `make venv`)", status=cli.USAGE)
    command = submit_command(submit, settings, args, project_zip(settings.stack_dir / "build"))
    if ours.dry_run:
        print(" ".join(shlex.quote(word) for word in command))
        return 0
    os.execve(submit, command, env)
    return 0  # not reached


def submit_env(settings: Settings) -> dict[str, str]:
    """spark-submit's environment: the settings' variables (MEETUP_STACK_DIR among them, since the driver
    may import from the zip), and this interpreter first on PATH, since pyspark's spark-submit finds its
    Spark home through the `python3` it meets there."""
    env = settings.child_env()
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return env


if __name__ == "__main__":
    sys.exit(main())

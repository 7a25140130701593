"""`meetup-submit SCRIPT [ARGS]`: spark-submit with the pre-resolved jars and the local stack's settings.

    meetup-submit pipelines/chain.py --available-now
    meetup-submit --master spark://host:7077 pipelines/chain.py

Options before the script go to spark-submit. The local stack's `.stack/env` is exported first (an
exported variable wins), so the driver and executors find S3 and PostgreSQL credentials in their
environment, as the AWS provider chain expects; on a real cluster, set those variables yourself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from common import health
from common.spark import spark_jars


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    settings = health.settings_for("meetup-submit")  # exports .stack/env into os.environ
    submit = shutil.which(
        "spark-submit", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    if submit is None:
        print("meetup-submit: spark-submit not found (it comes with pyspark: run `make venv`)", file=sys.stderr)
        return 2
    jars = ",".join(str(jar) for jar in spark_jars(settings.spark.jars_dir))
    # pyspark's spark-submit finds its Spark home through the interpreter on PATH: make it this one.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    has_master = "--master" in args
    command = [submit, "--jars", jars, *([] if has_master else ["--master", settings.spark.master]), *args]
    os.execv(submit, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

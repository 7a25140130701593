"""meetup-submit: what it ships with a job and the spark-submit line it builds."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

from common.settings import Settings
from common.spark import DRIVER_JAVA_OPTIONS
from common.submit import project_zip, submit_command
from pipelines.silver import mirror


def test_the_shipped_zip_holds_the_packages_and_the_ddl_the_mirror_reads_from_it(tmp_path):
    archive = project_zip(tmp_path)
    names = zipfile.ZipFile(archive).namelist()
    assert {"pipelines/chain.py", "common/settings.py", "pipelines/silver/mirror.py", "ml/__init__.py"} <= set(names)
    assert mirror.ddl_files(archive / "sql") == mirror.ddl_files()  # a driver importing from the zip


def test_our_defaults_yield_to_spark_submit_options_given_before_the_script(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "delta-spark_2.13-4.3.1.jar").touch()
    settings = Settings()
    settings = replace(settings, spark=replace(settings.spark, jars_dir=jars, master="spark://127.0.0.1:7077"))
    args = ["--driver-memory", "1g", "pipelines/chain.py", "--master", "is-the-scripts-own"]
    command = submit_command("spark-submit", settings, args, Path("/x/meetup_rsvps.zip"))
    assert command[:5] == [
        "spark-submit",
        "--jars",
        str(jars / "delta-spark_2.13-4.3.1.jar"),
        "--py-files",
        "/x/meetup_rsvps.zip",
    ]
    options = command[5 : command.index("pipelines/chain.py")]
    assert options.count("--driver-memory") == 1 and "1g" in options  # given: ours left out
    assert options[options.index("--master") + 1] == "spark://127.0.0.1:7077"  # the script's --master is its own
    assert options[options.index("--executor-memory") + 1] == settings.spark.executor_memory
    assert "spark.driver.host=127.0.0.1" in options  # workers on this machine call the driver on loopback
    assert options[options.index("--driver-java-options") + 1] == DRIVER_JAVA_OPTIONS  # a stop stays a stop
    assert command[-2:] == ["--master", "is-the-scripts-own"]


def test_a_master_given_as_one_word_is_read_too(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "delta-spark_2.13-4.3.1.jar").touch()
    settings = replace(Settings(), spark=replace(Settings().spark, jars_dir=jars))
    command = submit_command("spark-submit", settings, ["--master=spark://127.0.0.1:7077", "job.py"], Path("/x.zip"))
    assert "local[*]" not in command and "spark.driver.host=127.0.0.1" in command


def test_java_options_given_as_a_conf_replace_ours(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "delta-spark_2.13-4.3.1.jar").touch()
    settings = replace(Settings(), spark=replace(Settings().spark, jars_dir=jars))
    args = ["--conf", "spark.driver.extraJavaOptions=-Dx=1", "job.py"]
    assert "--driver-java-options" not in submit_command("spark-submit", settings, args, Path("/x.zip"))

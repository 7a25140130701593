"""Resolve the JVM jars from Maven Central ahead of time, with the ordinary Maven client.

Each `stack/maven/<name>.pom.xml` lists one component's artifacts; `mvn dependency:copy-dependencies`
copies them with their runtime dependencies into `.stack/jars/<name>`. For Spark, jars that pyspark
already ships (Hadoop client, Jackson, Netty, Parquet, ...) are dropped so its own versions win.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pyspark

from common.settings import PROJECT_ROOT
from stack.procs import StackError

log = logging.getLogger(__name__)

POMS_DIR = PROJECT_ROOT / "stack" / "maven"
COMPONENTS = ("spark-jars", "kafka-broker", "s3proxy")
TARGET_DIRS = {"spark-jars": "spark", "kafka-broker": "kafka", "s3proxy": "s3proxy"}

_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[\w.]*(?:-\w+)*)\.jar$")


def artifact_name(jar_file: str) -> str:
    """'hadoop-aws-3.4.2.jar' -> 'hadoop-aws'; 'zstd-jni-1.5.7-3.jar' -> 'zstd-jni'."""
    match = _JAR_NAME.match(jar_file)
    return match.group("artifact") if match else jar_file.removesuffix(".jar")


def drop_provided_by_pyspark(jars_dir: Path, pyspark_jars: Path) -> list[str]:
    """Remove jars whose artifact pyspark already ships; returns the removed file names."""
    shipped = {artifact_name(jar.name) for jar in pyspark_jars.glob("*.jar")}
    removed = []
    for jar in sorted(jars_dir.glob("*.jar")):
        if artifact_name(jar.name) in shipped:
            jar.unlink()
            removed.append(jar.name)
    return removed


def resolve(stack_dir: Path, component: str) -> Path:
    pom = POMS_DIR / f"{component}.pom.xml"
    target = stack_dir / "jars" / TARGET_DIRS[component]
    stamp = target / ".pom.sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return target
    if shutil.which("mvn") is None:
        raise StackError("mvn not found; run `make system` (apt-get install maven)")
    if target.exists():
        shutil.rmtree(target)
    log.info("resolving %s from Maven Central into %s", component, target)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"jars: Maven could not resolve {component}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    if component == "spark-jars":
        drop_provided_by_pyspark(target, Path(pyspark.__file__).parent / "jars")
    stamp.write_text(digest)
    return target


def main(stack_dir: Path) -> None:
    for component in COMPONENTS:
        target = resolve(stack_dir, component)
        jars = list(target.glob("*.jar"))
        size = sum(jar.stat().st_size for jar in jars) / 1e6
        log.info("%-13s %3d jars %6.1f MB in %s", component, len(jars), size, target)

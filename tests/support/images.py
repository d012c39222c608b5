"""The Python environment each container image installs, built here in a fresh virtualenv.

The pip lines are read from the Dockerfiles themselves (``RUN ... pip install ...``, ARG
defaults substituted, ``/opt/rtmserve`` mapped to a copy of the build context that honours
``.dockerignore``), so a package an image lacks is missing here too. Installs are offline: the
wheels come from a wheelhouse that ``make install-test`` fills with the same lines
(``python -m tests.support.images WHEELHOUSE``), so no test downloads anything.

What cannot be the same here: the NGC Triton image's Python is 3.12 (Ubuntu 24.04 in 24.12);
the environment is built with this machine's Python (3.11), which rtmserve also supports.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.support.paths import REPO

IMAGES = {"gateway": REPO / "Dockerfile", "triton": REPO / "deploy" / "triton" / "Dockerfile"}
IN_IMAGE_SOURCE = "/opt/rtmserve"
# what setuptools needs to build rtmserve offline (pyproject.toml's build-system)
BUILD_REQUIREMENTS = ("setuptools>=68", "wheel")


@dataclass(frozen=True)
class PipStep:
    """The arguments after ``pip install`` in one RUN command, as the Dockerfile writes them."""

    args: tuple[str, ...]

    def local(self, context: Path) -> list[str]:
        return [a.replace(IN_IMAGE_SOURCE, str(context)) for a in self.args]


def pip_steps(dockerfile: Path) -> list[PipStep]:
    parser = DockerfileParser(path=str(dockerfile), cache_content=True)
    args = {}
    steps = []
    for step in parser.structure:
        if step["instruction"] == "ARG" and "=" in step["value"]:
            name, value = step["value"].split("=", 1)
            args[name.strip()] = value.strip()
        if step["instruction"] != "RUN":
            continue
        value = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]),
                       step["value"])  # fmt: skip
        for command in re.split(r"&&|\|\||;", value):
            words = shlex.split(command.strip().strip("()"))
            for i in range(len(words) - 1):
                if words[i].endswith("pip") or words[i : i + 2] == ["-m", "pip"]:
                    rest = words[i + 1 :] if words[i].endswith("pip") else words[i + 2 :]
                    if rest and rest[0] == "install":
                        steps.append(PipStep(tuple(rest[1:])))
                    break
    return steps


def copy_context(dest: Path) -> Path:
    """``COPY . /opt/rtmserve``: the repository minus what ``.dockerignore`` excludes."""
    from tests.support.deploy import dockerignore_excludes

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).relative_to(REPO)
        return [n for n in names if dockerignore_excludes(REPO, str(rel / n))]

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def pip(python: Path, *args: str, env: dict[str, str] | None = None) -> None:
    run = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True,
                         timeout=1800, env=env)  # fmt: skip
    if run.returncode != 0:
        output = run.stdout[-2000:] + run.stderr[-4000:]
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{output}")


def build_environment(image: str, where: Path, wheelhouse: Path) -> Path:
    """A fresh virtualenv holding what ``image`` installs; returns its python."""
    context = copy_context(where / "context")
    venv.EnvBuilder(with_pip=True, clear=True).create(where / "venv")
    python = where / "venv" / "bin" / "python"
    offline = ["--no-index", "--find-links", str(wheelhouse), "--quiet"]
    env = {
        **os.environ,
        "PIP_CONSTRAINT": "",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_CONFIG_FILE": os.devnull,
    }  # only the image's own lines, nothing of this machine's
    for step in pip_steps(IMAGES[image]):
        pip(python, "install", *offline, *step.local(context), env=env)
    return python


def download(wheelhouse: Path) -> None:
    """Fill ``wheelhouse`` with everything the images' pip lines install (run at install time,
    where the package index is reachable)."""
    context = copy_context(wheelhouse / ".context")
    try:
        pip(Path(sys.executable), "download", "--quiet", "-d", str(wheelhouse),
            *BUILD_REQUIREMENTS)  # fmt: skip
        for dockerfile in IMAGES.values():
            for step in pip_steps(dockerfile):
                args = [a for a in step.local(context) if a not in ("-e", "--no-deps")]
                pip(Path(sys.executable), "download", "--quiet", "-d", str(wheelhouse), *args)
    finally:
        shutil.rmtree(context, ignore_errors=True)


if __name__ == "__main__":
    download(Path(sys.argv[1]).resolve())

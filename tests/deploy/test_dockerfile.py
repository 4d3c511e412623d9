"""The Dockerfile: hadolint-clean, pins equal to pyproject's, layers in cache-friendly order,
a non-root runtime that ships the checkpoint, and a build context that holds what it copies.

No image is built here (no Docker engine); the wheel the image installs is, from exactly the
files the build context lets through.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def run_hadolint(hadolint: str, path: Path) -> subprocess.CompletedProcess[str]:
    # --failure-threshold style: every finding, down to style, fails; no config file can relax it.
    return subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_hadolint_passes(tool):
    result = run_hadolint(tool("hadolint"), DOCKERFILE)
    assert result.returncode == 0, f"hadolint findings in the Dockerfile:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tool, tmp_path):
    """The check above can fail: hadolint flags an unpinned base and an unpinned, cached pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nCMD ilcs serve\n")
    result = run_hadolint(tool("hadolint"), bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the latest tag


def test_hadolint_ignores_are_justified():
    """Any rule switched off inline carries its reason in the comment line above it."""
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and "hadolint" not in above, f"Dockerfile:{i + 1}: say why above the ignore"


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in deps if "==" in d)


def _args(dockerfile) -> dict[str, str]:
    args = {}
    for ins in dockerfile:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            args[name] = value
    return args


def test_base_is_a_pinned_python_311_slim_and_torch_pins_match_pyproject(dockerfile):
    args = _args(dockerfile)
    froms = [ins.args.split()[0] for ins in dockerfile if ins.keyword == "FROM"]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    # A patch release on a named Debian (or a digest), never the moving "3.11-slim".
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    pins = _pyproject_pins()
    assert args["TORCH_VERSION"] == pins["torch"], "Dockerfile TORCH_VERSION differs from pyproject.toml's torch pin"
    assert args["TORCHVISION_VERSION"] == pins["torchvision"], "TORCHVISION_VERSION differs from pyproject.toml's pin"


def test_torch_comes_from_the_index_the_build_argument_names(dockerfile):
    """CPU wheels by default (a ~1 GB image); docker-compose.gpu.yml passes PyPI's index for the CUDA build."""
    assert _args(dockerfile)["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    (install,) = (i for i in dockerfile if i.keyword == "RUN" and "torch==" in i.args)
    assert '--index-url "${TORCH_INDEX_URL}"' in install.args


def test_dependencies_come_from_the_lock_before_the_source(dockerfile):
    """A version bump (pyproject.toml) must not rebuild the dependency layers: the deps stage never sees it."""
    stages = [ins.stage for ins in dockerfile if ins.keyword == "FROM"]
    assert len(stages) >= 2, "a multi-stage build is expected"
    deps = [ins for ins in dockerfile if ins.stage == "deps"]
    torch_at = next(i for i, ins in enumerate(deps) if ins.keyword == "RUN" and "torch==" in ins.args)
    copies = [(i, ins) for i, ins in enumerate(deps) if ins.keyword in ("COPY", "ADD")]
    copied = [ins.args.split() for _, ins in copies]
    assert copied == [["requirements.lock", "./"]], "the deps stage copies the lock only"
    assert torch_at < copies[0][0], "torch must be installed before the lock is copied (its own cached layer)"
    install = next(ins for ins in deps if ins.keyword == "RUN" and "requirements.lock" in ins.args)
    assert "--no-deps" in install.args and "pip check" in install.args, "exactly the lock, checked for consistency"


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def test_the_lock_pins_every_runtime_dependency_of_pyproject():
    """deploy/lock.sh wrote it from pyproject.toml; a dependency added or re-ranged since then fails here."""
    lock = _lock()
    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        if name in ("torch", "torchvision"):
            assert name not in lock, "torch comes from TORCH_INDEX_URL, not from the lock"
            continue
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        assert name in lock, f"{name} is not in requirements.lock: run deploy/lock.sh"
        assert req.specifier.contains(lock[name], prereleases=True), f"{name}=={lock[name]} breaks {dep}: relock"
    cuda = [n for n in lock if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert not cuda, f"the CPU image would install CUDA libraries: {cuda}"


def test_runtime_is_non_root_exposes_8000_checks_health_and_serves(runtime_stage, dockerfile_cmd, dockerfile_env):
    users = [ins.args for ins in runtime_stage if ins.keyword == "USER"]
    assert users, "the runtime stage sets no USER, so the service would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root"), users[-1]
    keywords = [ins.keyword for ins in runtime_stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY")), (
        "USER comes after the last RUN/COPY, so nothing installed is writable by the service"
    )
    assert [ins.args for ins in runtime_stage if ins.keyword == "EXPOSE"] == ["8000"]
    health = [ins.args for ins in runtime_stage if ins.keyword == "HEALTHCHECK"]
    assert health and "/healthz" in health[-1] and "urllib" in health[-1] and "curl" not in health[-1]
    assert "127.0.0.1:%s" in health[-1] and "ILCS_PORT" in health[-1], "the probe follows the port setting"
    # The service binds where its settings say: the image sets them, the CMD does not override them.
    assert dockerfile_cmd == ["ilcs", "serve"]
    assert (dockerfile_env["ILCS_HOST"], dockerfile_env["ILCS_PORT"]) == ("0.0.0.0", "8000")
    # The shipped checkpoint is what ILCS_CHECKPOINT names, through the folder the build links and tests.
    assert dockerfile_env["ILCS_CHECKPOINT"] == "/opt/ilcs/checkpoints/ilcs_neu"
    run = " ".join(ins.args for ins in runtime_stage if ins.keyword == "RUN")
    assert "/opt/ilcs/checkpoints" in run and "test -f /opt/ilcs/checkpoints/ilcs_neu.safetensors" in run


# --- the build context -------------------------------------------------------------------


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) patterns as (is_exception, regex), in order; Docker's last match wins."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        out.append((negate, re.compile(regex + r"\Z")))
    return out


def in_context(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends ``rel`` to the build: a pattern excludes a path when it matches it or a parent."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return not excluded


def build_context(dest: Path) -> list[str]:
    """Copy the files Docker would send as the build context to ``dest``; return their paths."""
    patterns = _dockerignore()
    files = []
    for top in ROOT.iterdir():
        if not in_context(top.name, patterns):
            continue  # pruned whole: the allowlist re-includes only top-level names
        for path in [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()):
            rel = path.relative_to(ROOT).as_posix()
            if in_context(rel, patterns):
                files.append(rel)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)
    return files


def test_dockerignore_matcher_follows_docker_rules():
    patterns = _dockerignore()
    assert in_context("service/main.py", patterns)
    assert in_context("model_zoo/checkpoints/ilcs_neu.safetensors", patterns)
    for rel in (".git/HEAD", ".venv/bin/python", "reports/neu-ilcs.md", "tests/conftest.py",
                "service/__pycache__/main.cpython-311.pyc", "docker-compose.yml"):  # fmt: skip
        assert not in_context(rel, patterns), rel


def test_context_holds_every_copy_source(dockerfile):
    patterns = _dockerignore()
    for ins in dockerfile:
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        *sources, _dest = [a for a in ins.args.split() if not a.startswith("--")]
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
            assert in_context(src, patterns), f"COPY {src}: .dockerignore leaves it out of the build context"


def test_wheel_built_from_the_context_ships_the_code_and_the_checkpoint(dockerfile, tmp_path):
    """What the image installs: the wheel of the wheel stage's COPYs, from the build context only."""
    ctx = tmp_path / "context"
    build_context(ctx)
    src = tmp_path / "src"
    src.mkdir()
    for ins in dockerfile:
        if ins.stage == "wheel" and ins.keyword == "COPY":
            *sources, _dest = ins.args.split()
            for s in sources:
                (shutil.copytree if (ctx / s).is_dir() else shutil.copy2)(ctx / s, src / s)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for required in ("ilcs_cli.py", "service/__init__.py", "model_zoo/__init__.py",
                     "model_zoo/checkpoints/ilcs_neu.safetensors", "model_zoo/checkpoints/ilcs_neu.json"):  # fmt: skip
        assert required in names, f"the image's wheel lacks {required}; the image build needs it"
    assert re.search(r"^ilcs\s*=\s*ilcs_cli:main", entry_points, re.M), entry_points
    assert not [n for n in names if fnmatch.fnmatch(n, "*__pycache__*")]

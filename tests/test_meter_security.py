"""Meters on hostile input through the real command line: nothing outside the tree is read.

The ``rapl`` meter often runs as root (``energy_uj`` is root-only since Linux 5.10) on a
``root`` that someone else may have built. ``greenprec meters`` is what prints a probe's reason
and domains, as a table and as JSON; here it meets trees whose files link to secrets.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app

SECRET = "s3cr3t-TOKEN-0123456789-abcdef"
FRAGMENTS = ("s3cr3t", "TOKEN", "0123456789")  # a table may wrap the whole secret
INTEL_RANGE_UJ = 262_143_328_850


def build_tree(root: Path, link: str, target: Path) -> None:
    """One valid package zone under ``root`` whose ``link`` file is a symlink to ``target``."""
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    files = {"name": "package-0\n", "energy_uj": "1000\n", "max_energy_range_uj": "262143328850\n"}
    for file, text in files.items():
        (zone / file).write_text(text)
    (zone / link).unlink()
    (zone / link).symlink_to(target)


def rapl_row(stdout: str) -> dict[str, object]:
    rows = json.loads(stdout)["meters"]
    (row,) = [row for row in rows if row["name"] == "rapl"]
    assert isinstance(row, dict)
    return row


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for fragment in FRAGMENTS:
            assert fragment not in text


@pytest.mark.parametrize("link", ["energy_uj", "name"])
def test_meters_never_prints_a_file_outside_the_tree(tmp_path: Path, link: str) -> None:
    # Before: energy_uj -> secret printed the secret as "unexpected content"; name -> secret
    # listed the domain "rapl/s3cr3t-TOKEN-…" as available, in the table and in the JSON.
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    root = tmp_path / "powercap"
    build_tree(root, link, secret)
    runner = CliRunner()
    table = runner.invoke(app, ["meters", "-o", f"rapl.root={root}"], env={"COLUMNS": "400"})
    as_json = runner.invoke(app, ["meters", "--json", "-o", f"rapl.root={root}"])
    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    assert_no_secret(table.output, as_json.output)
    row = rapl_row(as_json.stdout)
    assert row["available"] is False and row["domains"] == []
    assert f"{root}/intel-rapl:0/{link} resolves to {secret}" in str(row["reason"])
    assert "outside the powercap tree" in str(row["reason"])
    assert "outside the powercap tree" in table.output


# -- a real non-root user --------------------------------------------------------------------
_TOOLS = ("useradd", "userdel", "runuser")

# Where the interpreter lives under a home only root may enter (pyenv in /root), the user
# cannot start it: this runs the same command line in an interpreter root started, which
# imports everything the command needs (running it once on a harmless tree), then drops to
# the user's uid and gid for good before the real run. Everything after the drop is the user.
_AS_USER = """
import contextlib, io, os, sys
uid, gid, forbidden, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
from greenprec.cli import main

def run(args):
    sys.argv = ["greenprec", *args]
    try:
        main()
    except SystemExit as done:
        return done.code
    return 0

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    run(["meters", "--json", "-o", "rapl.root=/nonexistent-greenprec-warm-up"])
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
try:
    open(forbidden).close()
except PermissionError:
    pass
else:
    sys.exit("still privileged after dropping to the test user")
sys.exit(run(argv))
"""


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux: it creates a throwaway system user")
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to run as a throwaway user")
    name = f"gp-sec-{secrets.token_hex(4)}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="greenprec-security-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as(
    user: pwd.struct_passwd, args: list[str], forbidden: Path
) -> subprocess.CompletedProcess[str]:
    """``greenprec ARGS`` as ``user``: through runuser when it can start this interpreter."""
    can_start = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", sys.executable, "-c", "import greenprec.cli"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if can_start.returncode == 0:
        command = ["runuser", "-u", user.pw_name, "--", sys.executable, "-m", "greenprec", *args]
    else:
        command = [sys.executable, "-c", _AS_USER, str(user.pw_uid), str(user.pw_gid)]
        command += [str(forbidden), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("link", ["energy_uj", "name"])
def test_a_non_root_user_cannot_read_outside_the_powercap_tree(
    throwaway_user: pwd.struct_passwd, shared_dir: Path, link: str
) -> None:
    # Two files outside the tree: one only root may read, one the user may read anyway. The
    # second is the leak: before, its text came back as "unexpected content" or a domain.
    outside = shared_dir / "outside"
    outside.mkdir(mode=0o755)
    root_only = outside / "root-only.txt"
    root_only.write_text(f"ROOT-ONLY-{SECRET}\n")
    root_only.chmod(0o600)
    readable = outside / "readable.txt"
    readable.write_text(f"READABLE-{SECRET}\n")
    readable.chmod(0o644)
    for target in (readable, root_only):
        tree = shared_dir / f"tree-{target.stem}"
        build_tree(tree, link, target)
        for path in (tree, *tree.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        assert stat.S_IMODE(root_only.stat().st_mode) == 0o600
        done = run_as(throwaway_user, ["meters", "--json", "-o", f"rapl.root={tree}"], root_only)
        assert done.returncode == 0, done.stderr[-2000:]
        assert_no_secret(done.stdout, done.stderr)
        row = rapl_row(done.stdout)
        assert row["available"] is False and row["domains"] == []
        assert f"{tree}/intel-rapl:0/{link} resolves to {target}" in str(row["reason"])
        assert "outside the powercap tree" in str(row["reason"])

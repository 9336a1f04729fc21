"""Command-line misuse: every script answers a stray argument or an
unknown flag with one line and exit status 2."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run", "sweep", "gallery", "benchmark",
                                    "portrait_eval"])
@pytest.mark.parametrize("argv", [["stray"], ["--no_such_flag=1"]])
def test_misuse_is_one_line_and_exit_2(tmp_path, script, argv):
    p = subprocess.run([sys.executable, str(ROOT / "scripts" /
                                            f"{script}.py"), *argv],
                       capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    err = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2, p.stderr
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not any(tmp_path.iterdir())  # Nothing written.

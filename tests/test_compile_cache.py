"""analysis.compile_cache: where the persistent cache lives, how it is turned off, and that a
second process loads what the first compiled (jax's own monitoring events, no timing)."""

import os
import subprocess
import sys

import pytest
from helpers import checkout_env

from analysis import compile_cache
from analysis.errors import InvalidArgument

# A fresh process compiles one adaptive sweep (a program without host callbacks, slow enough to
# be written) and prints how many compilations jax served from the persistent cache.
_CHILD = """
import jax, jax.monitoring
jax.config.update("jax_enable_x64", True)
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None
)
from analysis import compile_cache
import analysis
print("FOLDER", compile_cache.enable())
analysis.sweep("van_der_pol", "Tsit5", controller="PI34", rtol=[1e-4, 1e-6])
print("HITS", len(hits))
"""


def _child(env_value):
    env = checkout_env(**{compile_cache.ENV: env_value})
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    return lines["FOLDER"], int(lines["HITS"])


def test_a_second_process_loads_the_first_ones_programs(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    first = _child(str(folder))
    assert folder.stat().st_mode & 0o777 == 0o700  # made private: jax trusts its contents
    entries = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    second = _child(str(folder))
    assert first == (str(folder), 0)
    assert any(name.startswith("jit__solve_batch") for name in entries), entries
    assert second[1] >= 1  # the solve program came from disk


def test_off_writes_nothing(tmp_path):
    assert _child("off") == ("None", 0)


@pytest.mark.parametrize("word", ["off", "OFF", "0", "false", "no", ""])
def test_the_environment_turns_it_off(monkeypatch, word):
    monkeypatch.setenv(compile_cache.ENV, word)
    assert compile_cache.folder() is None
    assert compile_cache.enable() is None


def test_default_folder_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.folder() == tmp_path / "stepdep" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.folder() == compile_cache.Path.home() / ".cache" / "stepdep" / "jax"


def test_a_file_is_not_a_folder(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    with pytest.raises(InvalidArgument, match="compile cache folder .*a-file.* is invalid"):
        compile_cache.enable(path / "sub")


def test_runner_refuses_a_bad_folder_before_running(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "studies", "run", "demo", "--quick", "--out", str(tmp_path)]
        + ["--compile-cache", str(path / "sub")],
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "compile cache folder" in out.stderr and not (tmp_path / "results").exists()

import subprocess
import sys

import pytest

from api.cli import build_parser, main

COMMANDS = ["ingest", "demo", "features", "train", "graph", "build", "make-eval",
            "evaluate", "serve", "up"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: mixmatch " + command in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "api.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for c in COMMANDS:
        assert c in out


def test_bad_input_is_exit_2_with_the_value_named(tmp_path, capsys):
    rc = main(["build", "--source", "csv", "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "--mapping" in capsys.readouterr().err


def test_evaluate_without_a_target_is_refused(capsys):
    assert main(["evaluate"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err

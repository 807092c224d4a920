"""Bad input on user-reachable `kernelos` paths gets one clear line and exit 2, never a traceback."""

import pytest

from tools.cli import main


def test_empty_npy_input_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    assert main(["run", str(tmp_path / "x.kimg"), "--output-dir", str(tmp_path), "--input", f"a={empty}"]) == 2
    assert "cannot read input 'a'" in capsys.readouterr().err


def test_empty_npy_const_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("onnx")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.kimg"), "--const", f"a={empty}"]) == 2
    assert "--const" in capsys.readouterr().err

"""Bad input on user-reachable `kernelos` paths gets one clear line and exit 2, never a traceback."""

import socket

import pytest

from tools.cli import main


def _closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


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


def test_request_to_a_closed_tcp_port_is_a_clear_error(capsys):
    assert main(["request", f"tcp://127.0.0.1:{_closed_tcp_port()}", "--stats"]) == 2
    assert "is `kernelos boot` serving?" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "0", "-1"])
def test_shell_refuses_a_timeout_that_is_not_positive(value, capsys):
    assert main(["shell", "--device", "cpu", "--no-ipython", "--timeout-s", value]) == 2
    assert "--timeout-s must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("name,value", [("KERNELOS_CPU_MEMORY_B", "abc"), ("KERNELOS_CPU_MEMORY_B", "-1"),
                                        ("KERNELOS_CPU_SPIN_US", "-5"), ("KERNELOS_CPU_SPIN_US", "nan")])
def test_bad_cpu_knob_is_a_clear_error(name, value, monkeypatch, capsys):
    monkeypatch.setenv(name, value)
    assert main(["shell", "--device", "cpu", "--no-ipython"]) == 2
    assert name in capsys.readouterr().err


def test_request_to_a_server_that_never_replies_times_out_clearly(capsys):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert main(["request", f"tcp://127.0.0.1:{port}", "--stats", "--timeout", "0.2"]) == 2
    assert f"no reply from tcp://127.0.0.1:{port} within 0.2 s" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--width", "0"), ("--layers", "0"), ("--count", "-1")])
def test_demo_refuses_sizes_that_cannot_build_as_a_usage_error(flag, value, tmp_path, capsys):
    pytest.importorskip("onnx")
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--output", str(tmp_path / "d.kimg"), flag, value])
    assert exit_info.value.code == 2 and f"{flag}: must be" in capsys.readouterr().err

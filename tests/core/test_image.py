"""Device image v1: round trip, mapped read-only weights, writer checks, atomic writes."""

import json
import os

import numpy as np
import pytest

from hal.errors import GraphError, ImageError
from kernelos.image import SECTION_ALIGN_B, read_image, write_image
from kernelos.planner import plan_memory

from .models import CPU_TARGET, mlp_dag, mlp_inputs, mlp_reference, mlp_weights, placeholder_kernels, write_mlp_image


def test_round_trip(tmp_path):
    path = tmp_path / "mlp.kimg"
    weights = write_mlp_image(path, batch=4)
    with read_image(path, target=CPU_TARGET) as im:
        dag = mlp_dag(4, placeholder_kernels())
        assert im.targets == [CPU_TARGET] and im.name == "mlp2"
        assert im.dag.to_dict() == dag.to_dict()
        assert im.dag.kernels["dense"].binaries[CPU_TARGET] == dag.kernels["dense"].binaries[CPU_TARGET]
        assert im.plan(CPU_TARGET).to_dict() == plan_memory(dag, CPU_TARGET).to_dict()
        for name, w in weights.items():
            np.testing.assert_array_equal(im.weights[name], w)
            assert not im.weights[name].flags.writeable  # mapped read-only, not copied
        ref = mlp_reference(im.golden_inputs["x"], weights)
        np.testing.assert_allclose(im.golden_outputs["y"], ref["y"], rtol=1e-6, atol=1e-6)
        assert im.manifest["inputs"] == [{"name": "x", "shape": [4, 16], "dtype": "float32"}]
        assert im.manifest["model"]["info"] == {"source": "tests/core/models.py"}
        assert all(s.offset_B % SECTION_ALIGN_B == 0 for s in im.sections)
        assert im.golden_atol == 1e-4


def test_weights_are_memory_mapped_at_4096(tmp_path):
    path = tmp_path / "mlp.kimg"
    write_mlp_image(path)
    with read_image(path) as im:
        for w in im.weights.values():
            assert w.ctypes.data % 4096 == 0  # page-aligned inside the mapping


def test_wrong_target_is_refused(tmp_path):
    path = tmp_path / "mlp.kimg"
    write_mlp_image(path)
    with pytest.raises(ImageError, match=r"has kernels for \['cpu-x86_64'\]; the device runs \['sm_90'\]"):
        read_image(path, target="sm_90")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot open image"):
        read_image(tmp_path / "nope.kimg")


def _args(batch=4):
    dag = mlp_dag(batch, placeholder_kernels())
    w = mlp_weights()
    x = mlp_inputs(batch, np.random.default_rng(1))
    gold = {k: v.astype(np.float32) for k, v in mlp_reference(x["x"], w).items()}
    return dag, w, x, gold


@pytest.mark.parametrize("change, error, message", [
    (lambda a: a[1].pop("b2"), ImageError, r"weights have names \['b1', 'w1', 'w2'\]"),
    (lambda a: a[1].__setitem__("extra", np.zeros(3, np.float32)), ImageError, "weights have names"),
    (lambda a: a[1].__setitem__("w1", a[1]["w1"].astype(np.float64)), ImageError,
     r"weights 'w1' is float64\[16, 32\]; the DAG wants float32\[16, 32\]"),
    (lambda a: a[1].__setitem__("w1", a[1]["w1"].T), ImageError, r"weights 'w1' is float32\[32, 16\]"),
    (lambda a: a[2].__setitem__("x", [1, 2]), ImageError, "golden inputs 'x' is list"),
    (lambda a: a[3].pop("hidden"), ImageError, "golden outputs have names"),
    (lambda a: setattr(a[0].buffers["h"], "size_B", 8), GraphError, "buffer 'h' is 8 B"),
    (lambda a: setattr(a[0].kernels["dense"], "binaries", {}), ImageError, "no kernel has a binary"),
])
def test_writer_rejects_mismatches(tmp_path, change, error, message):
    args = list(_args())
    change(args)
    with pytest.raises(error, match=message):
        write_image(tmp_path / "bad.kimg", *args)
    assert os.listdir(tmp_path) == []


def test_writer_checks_every_target(tmp_path):
    dag, w, x, gold = _args()
    dag.kernels["dense"].binaries["sm_90"] = b"cubin"  # a second target, but no launch dims for it
    with pytest.raises(GraphError, match="node 'layer1' has no launch dims for target 'sm_90'"):
        write_image(tmp_path / "bad.kimg", dag, w, x, gold)


def test_model_info_must_be_json(tmp_path):
    with pytest.raises(ImageError, match="JSON-serialisable"):
        write_image(tmp_path / "bad.kimg", *_args(), model_info={"when": object()})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("tol", ["loose", -1.0, float("inf"), True])
def test_bad_golden_tolerance_is_refused_before_writing(tmp_path, tol):
    """The writer applies the reader's rule, so it never writes an image the reader would refuse."""
    with pytest.raises(ImageError, match="golden_atol"):
        write_image(tmp_path / "bad.kimg", *_args(), model_info={"golden_atol": tol})
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_old_image_intact_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "mlp.kimg"
    write_mlp_image(path, seed=0)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ImageError, match="cannot write image .*mlp.kimg: No space left"):
        write_mlp_image(path, seed=5)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["mlp.kimg"] and path.read_bytes() == before
    read_image(path).close()


def test_image_file_mode_follows_the_umask(tmp_path):
    """Not the 0600 of a tempfile.mkstemp file: whoever may read new files here may read the image."""
    umask = os.umask(0o022)
    try:
        write_image(tmp_path / "mlp.kimg", *_args())
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "mlp.kimg").st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["mlp.kimg"]


def test_unwritable_path_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot write image .*no-such-dir/mlp.kimg: No such file or directory"):
        write_image(tmp_path / "no-such-dir" / "mlp.kimg", *_args())


def test_inspectable_manifest_is_plain_json(tmp_path):
    path = tmp_path / "mlp.kimg"
    write_mlp_image(path)
    with read_image(path) as im:
        assert json.loads(json.dumps(im.manifest)) == im.manifest
        assert sorted(im.manifest["kernels"][CPU_TARGET]) == ["dense"]


def test_non_regular_files_are_refused(tmp_path):
    fifo = tmp_path / "fifo.kimg"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(ImageError, match="not a regular file"):
            read_image(path)

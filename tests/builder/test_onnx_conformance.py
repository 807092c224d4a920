"""ONNX's own backend node tests through build + run on the cpu device (tools/onnx_conformance.py).

In CI: the first 3 cases of every supported op (about 100 cases). The full set, which also writes
docs/onnx-conformance.md, is `python tools/onnx_conformance.py` (the slow test below runs it without
writing). A case either passes or is refused with UnsupportedModel (a documented limit); anything
else fails the test."""

import collections

import pytest

from tools import onnx_conformance as conf


@pytest.fixture(scope="module")
def cases():
    return conf.collect()


def _check(pairs, tmp_path):
    bad = []
    for op, case in pairs:
        status, detail = conf.run_case(case, str(tmp_path))
        if status not in ("pass", "unsupported"):
            bad.append(f"{case.name}: {status}: {detail}")
    assert not bad, "\n".join(bad)


def test_every_supported_op_has_node_tests(cases):
    from kernelos.builder.ops import REGISTRY
    assert {op for op, _ in cases} == set(REGISTRY)
    assert len(cases) > 300


def test_first_cases_of_each_op_pass_on_cpu(cases, tmp_path):
    per_op, picked = collections.Counter(), []
    for op, case in cases:
        if per_op[op] < 3:
            per_op[op] += 1
            picked.append((op, case))
    _check(picked, tmp_path)


@pytest.mark.slow
def test_all_node_tests_pass_or_are_documented_limits(cases, tmp_path):
    _check(cases, tmp_path)

"""Helpers shared by the subcommands that take tensors on the command line."""

import os

import numpy as np

from hal.errors import InvalidArgument


def parse_inputs(pairs) -> dict:
    """["NAME=FILE.npy", ...] -> name -> array (np.load without pickle); InvalidArgument on a bad pair."""
    out = {}
    for pair in pairs or []:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InvalidArgument(f"--input takes NAME=FILE.npy, got {pair!r}")
        if name in out:
            raise InvalidArgument(f"input {name!r} is given twice")
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
            raise InvalidArgument(f"cannot read input {name!r} from {path}: {e}") from None
    return out


def write_outputs(outputs: dict, directory: str) -> list:
    """Each output as DIR/NAME.npy (the directory is created); returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, arr in outputs.items():
        if os.sep in name or name in (".", ".."):
            raise InvalidArgument(f"output name {name!r} cannot be a file name")
        path = os.path.join(directory, f"{name}.npy")
        np.save(path, arr, allow_pickle=False)
        paths.append(path)
    return paths


def describe(outputs: dict) -> str:
    lines = []
    for name, arr in outputs.items():
        flat = np.asarray(arr).ravel()
        lines.append(f"{name}: {arr.dtype}{list(arr.shape)} first {np.array2string(flat[:6], precision=5)}")
    return "\n".join(lines)

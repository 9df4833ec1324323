"""Derive `celegans_connectomes.npz` from the `cect` wheel (C. elegans Connectome Toolbox,
MIT licence, see LICENSE_cect.txt), without installing or importing cect.

    pip download --no-deps cect==0.3.5 -d /tmp/cect
    python neuro/connectome/data/derive_celegans.py /tmp/cect/cect-0.3.5-py3-none-any.whl

Reads the cached JSON connectomes (`cect/cache/<Reader>.json`: "nodes", and
"connections" -> "Generic_CS" (chemical synapses) / "Generic_GJ" (gap junctions), square
matrices indexed [presynaptic, postsynaptic] in "nodes" order) and the neuron-class lists of
`cect/Cells.py` (read with `ast`, only literal lists and their concatenations are evaluated).
Writes, per dataset D: `D/names` (str), `D/chemical` and `D/gap_junction` (uint16, exact
integer counts), plus `class/<name>` lists and `source` (the wheel file name).
"""
from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

DATASETS = {
    "witvliet_1": "WitvlietDataReader1", "witvliet_2": "WitvlietDataReader2",
    "witvliet_3": "WitvlietDataReader3", "witvliet_4": "WitvlietDataReader4",
    "witvliet_5": "WitvlietDataReader5", "witvliet_6": "WitvlietDataReader6",
    "witvliet_7": "WitvlietDataReader7", "witvliet_8": "WitvlietDataReader8",
    "cook_2019_hermaphrodite": "Cook2019HermReader",
    "varshney_2011": "VarshneyDataReader",
    "white_1986_whole": "White_whole",
}
CLASSES = {
    "sensory": "SENSORY_NEURONS_COOK",
    "interneuron": "INTERNEURONS_COOK",
    "motor": "MOTORNEURONS_COOK",
    "pharyngeal_polymodal": "PHARYNGEAL_POLYMODAL_NEURONS",
    "unknown_function": "UNKNOWN_FUNCTION_NEURONS",
}


def literal_lists(source: str) -> dict[str, list[str]]:
    """Top-level NAME = <list/tuple literal or + of known names> assignments of a module."""
    known: dict[str, list[str]] = {}

    def evaluate(node):
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ast.literal_eval(element) for element in node.elts]
        if isinstance(node, ast.Name) and node.id in known:
            return list(known[node.id])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return evaluate(node.left) + evaluate(node.right)
        raise ValueError("not a literal list")

    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(
                statement.targets[0], ast.Name):
            try:
                value = evaluate(statement.value)
            except (ValueError, KeyError, TypeError):
                continue
            if all(isinstance(item, str) for item in value):
                known[statement.targets[0].id] = value
    return known


def main(wheel: str, output: str | None = None) -> None:
    output = Path(output) if output else Path(__file__).with_name("celegans_connectomes.npz")
    arrays: dict[str, np.ndarray] = {"source": np.array(Path(wheel).name)}
    with zipfile.ZipFile(wheel) as archive:
        for key, reader in DATASETS.items():
            data = json.loads(archive.read(f"cect/cache/{reader}.json"))
            names = [str(name) for name in data["nodes"]]
            arrays[f"{key}/names"] = np.array(names)
            for kind, field in (("chemical", "Generic_CS"), ("gap_junction", "Generic_GJ")):
                matrix = np.asarray(data["connections"][field], dtype=np.float64)
                assert matrix.shape == (len(names), len(names)), (reader, field, matrix.shape)
                assert (matrix >= 0).all() and (matrix == np.round(matrix)).all()
                assert matrix.max() < 2**16
                arrays[f"{key}/{kind}"] = matrix.astype(np.uint16)
        lists = literal_lists(archive.read("cect/Cells.py").decode("utf-8"))
    for key, variable in CLASSES.items():
        arrays[f"class/{key}"] = np.array(sorted(set(lists[variable])))
    np.savez_compressed(output, **arrays)
    print(f"wrote {output} ({output.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:])

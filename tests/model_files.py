"""Model files built in code, for tests that need a file other tools would refuse to write."""

import h5py
import numpy as np


def write_nir_tree(path, node: dict) -> None:
    """Write a hand-made NIR tree (nested dicts) as a NIR file; ``edges`` given as a list of pairs of
    names are written as NIR writes them, as an array as it is."""
    def put(group, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                put(group.create_group(key), value)
            elif key == "edges" and isinstance(value, list):
                group[key] = np.array(value, dtype=h5py.string_dtype()).reshape(-1, 2)
            else:
                group[key] = value

    with h5py.File(path, "w") as file:
        put(file.create_group("node"), node)


def set_at(path, value):
    """An edit of a parsed document (JSON, a manifest) that sets the item at ``path`` (keys and
    indices) to ``value`` and returns the document."""
    def edit(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return document
    return edit

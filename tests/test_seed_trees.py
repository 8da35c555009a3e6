"""Context / constraint trees: the shipped files, validation errors, seeded draws."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from looptool.seed.trees import (
    DIMENSIONS,
    TreeError,
    load_constraint_tree,
    load_context_tree,
    load_trees,
)

CTX = Path("data/trees/context_tree.yaml")
CONS = Path("data/trees/constraint_tree.yaml")


def test_shipped_trees_cover_the_required_breadth():
    trees = load_trees(CTX, CONS)
    assert len(trees.context.domains) >= 10
    assert len(trees.context_leaves) >= 60
    for _path, cons in trees.constraint_leaves:
        assert set(cons) == set(DIMENSIONS)
    namings = {c["naming"] for _, c in trees.constraint_leaves}
    features = {t for _, c in trees.constraint_leaves for t in c["types"]}
    assert namings == {"snake_case", "camelCase", "dotted"}
    assert {"enum", "array", "object", "date", "datetime"} <= features
    assert {c["output"] for _, c in trees.constraint_leaves} == {"record", "list", "envelope"}


def test_draws_are_seeded_and_recorded_as_paths():
    trees = load_trees(CTX, CONS)
    r1, r2 = random.Random(7), random.Random(7)
    a = [trees.draw(r1)[::2] for _ in range(5)]
    b = [trees.draw(r2)[::2] for _ in range(5)]
    assert a == b and len(set(a)) > 1
    cpath, leaf, kpath, _ = trees.draw(random.Random(3))
    assert trees.leaf(cpath) is leaf and cpath.count("/") == 2 and kpath.count("/") == 4


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def _ctx_with_leaf(leaf: dict) -> dict:
    return {
        "domains": [
            {
                "name": "travel",
                "description": "d",
                "categories": [{"name": "lodging", "description": "c", "leaves": [leaf]}],
            }
        ]
    }


GOOD_LEAF = {
    "name": "hotel_search",
    "description": "x",
    "object": "hotels",
    "verbs": ["find"],
    "ask": ["find a hotel"],
    "fields": [{"name": "city", "type": "string", "description": "c", "examples": ["A", "B"]}],
    "returns": [{"name": "hotel_id", "type": "id", "prefix": "HTL"}],
}


def test_context_errors_name_file_and_node(tmp_path):
    bad = dict(GOOD_LEAF, fields=[{"name": "guests", "type": "integer", "min": 9, "max": 2}])
    p = _write(tmp_path, "ctx.yaml", _ctx_with_leaf(bad))
    with pytest.raises(TreeError) as ei:
        load_context_tree(p)
    msg = str(ei.value)
    assert (
        str(p) in msg and "travel/lodging/hotel_search" in msg and "guests" in msg and "min" in msg
    )


def test_context_error_for_unknown_type_and_missing_examples(tmp_path):
    bad = dict(
        GOOD_LEAF, fields=[{"name": "city", "type": "text"}, {"name": "note", "type": "string"}]
    )
    p = _write(tmp_path, "ctx.yaml", _ctx_with_leaf(bad))
    with pytest.raises(TreeError) as ei:
        load_context_tree(p)
    msg = str(ei.value)
    assert "fields[0](city).type" in msg and "note" in msg and "2 examples" in msg


def test_duplicate_leaf_names_are_reported_at_the_category(tmp_path):
    data = _ctx_with_leaf(GOOD_LEAF)
    data["domains"][0]["categories"][0]["leaves"].append(GOOD_LEAF)
    p = _write(tmp_path, "ctx.yaml", data)
    with pytest.raises(
        TreeError, match=r"node travel/lodging: .*duplicate leaf name 'hotel_search'"
    ):
        load_context_tree(p)


def test_constraint_path_missing_a_dimension_names_the_node(tmp_path):
    data = {
        "children": [
            {
                "name": "snake",
                "constraints": {"naming": "snake_case"},
                "children": [
                    {
                        "name": "small",
                        "constraints": {"params": [1, 2], "required": "all", "types": []},
                    }
                ],
            }
        ]
    }
    p = _write(tmp_path, "cons.yaml", data)
    with pytest.raises(TreeError) as ei:
        load_trees(CTX, p)
    assert str(p) in str(ei.value) and "snake/small" in str(ei.value) and "output" in str(ei.value)


def test_constraint_value_errors_and_unreadable_files(tmp_path):
    data = {"children": [{"name": "snake", "constraints": {"naming": "kebab"}}]}
    p = _write(tmp_path, "cons.yaml", data)
    with pytest.raises(TreeError, match=r"node snake: constraints.naming"):
        load_constraint_tree(p)
    broken = _write(tmp_path, "broken.yaml", "domains: [unclosed\n")
    with pytest.raises(TreeError, match=r"broken.yaml: invalid YAML"):
        load_context_tree(broken)
    with pytest.raises(TreeError, match="file not found"):
        load_context_tree(tmp_path / "missing.yaml")

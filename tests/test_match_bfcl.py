"""BFCL-mode ToolMatch: every rule of DESIGN §4 on small hand-made cases."""

import pytest

from looptool.core.match_bfcl import (
    BfclDataError,
    BfclResult,
    check_bfcl,
    compile_answer,
    contains_call,
)
from looptool.core.match_bfcl_values import standardize_string


def doc(name, required=(), **props):
    """A BFCL-dialect function doc; props map name -> type string or full schema."""
    return {
        "name": name,
        "description": "",
        "parameters": {
            "type": "dict",
            "properties": {p: ({"type": t} if isinstance(t, str) else t) for p, t in props.items()},
            "required": list(required),
        },
    }


def one(param_type, acceptable, value, category="simple_python", required=True):
    """Check a single-param call f(p=value) against acceptable values."""
    d = doc("f", required=["p"] if required else [], p=param_type)
    return check_bfcl([d], [{"f": {"p": value}}], [{"f": {"p": acceptable}}], category)


def ok(r: BfclResult) -> bool:
    assert isinstance(r, BfclResult)
    assert r.valid == (r.error_type == "")
    return r.valid


# ---------------------------------------------------------------- types


@pytest.mark.parametrize(
    "ptype,acceptable,value,valid,error",
    [
        ("integer", [5], 5, True, ""),
        ("integer", [1], True, False, "type_error:simple"),  # bool is not an int
        ("integer", [5], 5.0, False, "type_error:simple"),  # 5.0 is not an int
        ("integer", [5], "5", False, "type_error:simple"),
        ("float", [5.0], 5, True, ""),  # int accepted and coerced
        ("float", [5.0], 5.0, True, ""),
        ("float", [5.0], 5.5, False, "value_error:others"),
        ("float", [1.0], True, False, "type_error:simple"),
        ("float", [5.0], "5.0", False, "type_error:simple"),
        ("boolean", [True], True, True, ""),
        ("boolean", [True], 1, False, "type_error:simple"),
        ("boolean", [False], True, False, "value_error:others"),
        ("string", ["x"], 1, False, "type_error:simple"),
        ("any", ["x"], "X", True, ""),  # any is checked as a string
        ("any", ["x"], 1, False, "type_error:simple"),
        ("array", [[1]], {"a": 1}, False, "type_error:simple"),
        ("tuple", [[1, 2]], [1, 2], True, ""),
        ("dict", [{"a": [1]}], [1], False, "type_error:simple"),
    ],
)
def test_type_rules(ptype, acceptable, value, valid, error):
    r = one(ptype, acceptable, value)
    assert ok(r) is valid
    assert r.error_type == error
    if not valid:
        assert r.detail["param"] == "p" and r.detail["call"] == 0 and r.detail["func"] == "f"


def test_variable_rule_accepts_the_answers_type():
    # the answer holds a variable name where the doc says dict / integer / array
    assert ok(one("dict", ["my_config"], "my_config"))
    assert ok(one("integer", ["n"], "n"))
    assert ok(one("array", ["items"], "items"))
    # a variable is compared exactly: no string normalization
    assert one("dict", ["my_config"], "My_Config").error_type == "value_error:others"
    # a value of the doc's type is still type-valid, but must be among the answers
    assert one("dict", ["my_config"], {"a": 1}).error_type == "value_error:others"
    # "any" whose answers are ints: an int is accepted by the variable rule
    assert ok(one("any", [50], 50))
    assert one("any", [50], "50").error_type == "value_error:others"
    # the type is taken from the first non-"" answer
    assert ok(one("string", ["", 7], 7))
    r = one("string", ["", 7], True)
    assert r.error_type == "type_error:simple"


# ---------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "value,acceptable,valid",
    [
        ("April 1, 2024", ["april 1 2024"], True),
        ("New-York", ["new york"], True),
        ("a/b.c_d*e^f", ["ABCDEF"], True),
        ("It's", ['it"s'], True),
        ("NYC", ["New York", "NY"], False),
        ("new\tyork", ["new york"], False),  # only the space character is removed
        ("", ["", "x"], True),
    ],
)
def test_string_normalization(value, acceptable, valid):
    r = one("string", acceptable, value)
    assert ok(r) is valid
    if not valid:
        assert r.error_type == "value_error:string"
        assert r.detail["param"] == "p"


def test_standardize_string():
    assert standardize_string(" A,B.C/D-E_F*G^H 'i' ") == 'abcdefgh"i"'


# ---------------------------------------------------------------- lists


def test_list_order_matters_and_strings_inside_are_normalized():
    arr = {"type": "array", "items": {"type": "string"}}
    assert ok(one(arr, [["New York", "LA"]], ["new-york", "la"]))
    r = one(arr, [["New York", "LA"]], ["LA", "New York"])
    assert r.error_type == "value_error:list"
    assert ok(one(arr, [["a"], ["b", "c"]], ["B", "C"]))  # any alternative
    assert one(arr, [["a", "b"]], ["a"]).error_type == "value_error:list"


def test_list_items_type_checked_one_level():
    ints = {"type": "array", "items": {"type": "integer"}}
    assert ok(one(ints, [[1, 2]], [1, 2]))
    assert one(ints, [[1, 2]], [1, "2"]).error_type == "type_error:nested"
    assert one(ints, [[1, 1]], [1, True]).error_type == "type_error:nested"
    floats = {"type": "array", "items": {"type": "float"}}
    assert ok(one(floats, [[1.0, 2.5]], [1, 2.5]))  # ints inside a float list are coerced
    nested = {"type": "array", "items": {"type": "array"}}
    assert ok(one(nested, [[[1, 2], [3]]], [[1, 2], [3]]))
    assert one(nested, [[[1, 2], [3]]], [[1, 2], 3]).error_type == "type_error:nested"


def test_empty_alternative_means_empty_list_is_fine():
    arr = {"type": "array", "items": {"type": "integer"}}
    assert ok(one(arr, ["", [1]], [], required=False))
    assert one(arr, [[1]], [], required=False).error_type == "value_error:list"


# ---------------------------------------------------------------- optional / required / unexpected


def test_optional_params_and_required_params():
    d = doc("f", required=["a"], a="integer", b="string", c="string")
    answers = [{"f": {"a": [1], "b": ["", "x"], "c": ["y"]}}]
    assert ok(check_bfcl([d], [{"f": {"a": 1, "c": "y"}}], answers, "simple_python"))
    assert ok(check_bfcl([d], [{"f": {"a": 1, "b": "x", "c": "y"}}], answers, "simple_python"))
    r = check_bfcl([d], [{"f": {"a": 1, "b": "x"}}], answers, "simple_python")
    assert (r.error_type, r.detail["param"]) == ("missing_optional", "c")
    r = check_bfcl([d], [{"f": {"c": "y"}}], answers, "simple_python")
    assert (r.error_type, r.detail["param"]) == ("missing_required", "a")


def test_required_check_runs_even_when_answer_allows_empty():
    d = doc("f", required=["a"], a="string")
    r = check_bfcl([d], [{"f": {}}], [{"f": {"a": [""]}}], "live_simple")
    assert (r.error_type, r.detail["param"]) == ("missing_required", "a")


def test_unexpected_params_name_the_reason():
    d = doc("f", a="integer", b="integer")
    answers = [{"f": {"a": [1], "z": [""]}}]
    r = check_bfcl([d], [{"f": {"a": 1, "b": 2}}], answers, "simple_python")
    assert (r.error_type, r.detail["param"]) == ("unexpected_param", "b")
    assert "possible answer" in r.detail["message"]
    r = check_bfcl([d], [{"f": {"a": 1, "z": 2}}], answers, "simple_python")
    assert (r.error_type, r.detail["param"]) == ("unexpected_param", "z")
    assert "function doc" in r.detail["message"]


# ---------------------------------------------------------------- dicts


def test_dict_values():
    alt = {"city": ["Paris", "paris, fr"], "days": [3, ""]}
    assert ok(one("dict", [alt], {"city": "PARIS", "days": 3}))
    assert ok(one("dict", [alt], {"city": "Paris, FR"}))  # days optional
    assert one("dict", [alt], {"city": "Paris", "extra": 1}).error_type == "value_error:dict_key"
    assert one("dict", [alt], {"city": "Rome"}).error_type == "value_error:dict_value"
    assert one("dict", [alt], {"days": 3}).error_type == "value_error:dict_key"  # city missing
    assert one("dict", [alt], {"city": "Paris", "days": 4}).error_type == "value_error:dict_value"
    # several alternative dicts: any one may fit
    alt2 = {"zip": ["75001"]}
    assert ok(one("dict", [alt, alt2], {"zip": "75001"}))
    # an answer of only "" accepts no dict (the param should be left out)
    assert not ok(one("dict", [""], {"a": 1}, required=False))
    assert ok(check_bfcl([doc("f", p="dict")], [{"f": {}}], [{"f": {"p": [""]}}], "simple_python"))


def test_lists_of_dicts_are_position_wise():
    ptype = {"type": "array", "items": {"type": "dict"}}
    acc = [[{"k": ["a"]}, {"k": ["b"], "n": [1, ""]}]]
    assert ok(one(ptype, acc, [{"k": "A"}, {"k": "b", "n": 1}]))
    r = one(ptype, acc, [{"k": "b"}, {"k": "a"}])
    assert r.error_type == "value_error:dict_value"
    assert "item 0" in r.detail["message"]
    assert one(ptype, acc, [{"k": "a"}]).error_type == "value_error:list_dict_count"
    assert one(ptype, acc, [{"k": "a"}, {"x": "b"}]).error_type == "value_error:dict_key"
    assert ok(one(ptype, ["", [{"k": ["a"]}]], [], required=False))


# ---------------------------------------------------------------- names and dispatch


def test_function_name_and_dot_to_underscore():
    d = doc("math.factorial", required=["n"], n="integer")
    ans = [{"math.factorial": {"n": [5]}}]
    assert ok(check_bfcl([d], [{"math.factorial": {"n": 5}}], ans, "simple_python"))
    r = check_bfcl([d], [{"math_factorial": {"n": 5}}], ans, "simple_python")
    assert r.error_type == "wrong_func_name"
    assert (r.detail["func"], r.detail["got"]) == ("math.factorial", "math_factorial")
    assert ok(
        check_bfcl(
            [d], [{"math_factorial": {"n": 5}}], ans, "simple_python", dot_to_underscore=True
        )
    )
    r = check_bfcl(
        [d], [{"math.factorial": {"n": 5}}], ans, "simple_python", dot_to_underscore=True
    )
    assert r.error_type == "wrong_func_name"


def test_simple_dispatch_uses_first_doc_and_exactly_one_call():
    f, g = doc("f", x="integer"), doc("g", x="integer")
    ans = [{"f": {"x": [1]}}]
    assert ok(check_bfcl([f, g], [{"f": {"x": 1}}], ans, "live_simple"))
    assert check_bfcl([f, g], [{"g": {"x": 1}}], ans, "live_simple").error_type == "wrong_func_name"
    r = check_bfcl([f, g], [{"f": {"x": 1}}, {"f": {"x": 1}}], ans, "simple_python")
    assert (r.error_type, r.detail["expected"], r.detail["got"]) == ("wrong_count", 1, 2)
    assert check_bfcl([f], [], ans, "simple_python").error_type == "wrong_count"


def test_multiple_dispatch_finds_doc_by_answer_name():
    f, g = doc("f", x="integer"), doc("g", y="string")
    ans = [{"g": {"y": ["hi"]}}]
    assert ok(check_bfcl([f, g], [{"g": {"y": "Hi"}}], ans, "multiple"))
    assert (
        check_bfcl([f, g], [{"f": {"x": 1}}], ans, "live_multiple").error_type == "wrong_func_name"
    )
    assert check_bfcl([f, g], [{"g": {"y": "hi"}}] * 2, ans, "multiple").error_type == "wrong_count"
    r = check_bfcl([f], [{"g": {"y": "hi"}}], ans, "multiple")
    assert (r.error_type, r.detail["func"]) == ("doc_not_found", "g")


# ---------------------------------------------------------------- parallel


def test_parallel_is_order_free():
    f = doc("f", x="integer")
    ans = [{"f": {"x": [1]}}, {"f": {"x": [2]}}]
    assert ok(check_bfcl([f], [{"f": {"x": 2}}, {"f": {"x": 1}}], ans, "parallel"))
    assert ok(check_bfcl([f], [{"f": {"x": 1}}, {"f": {"x": 2}}], ans, "live_parallel"))
    r = check_bfcl([f], [{"f": {"x": 1}}, {"f": {"x": 1}}], ans, "parallel")
    assert (r.error_type, r.detail["answer"]) == ("parallel:no_match", 1)
    assert {c["output"] for c in r.detail["candidates"]} == {0, 1}
    assert check_bfcl([f], [{"f": {"x": 1}}], ans, "parallel").error_type == "wrong_count"


def test_parallel_one_to_one_where_greedy_fails():
    # answer 0 accepts x in {1, 2}, answer 1 only x == 1. Greedy first-fit gives output 0
    # (x=1) to answer 0 and then finds nothing for answer 1; a real matching succeeds.
    f = doc("f", x="integer")
    ans = [{"f": {"x": [1, 2]}}, {"f": {"x": [1]}}]
    assert ok(check_bfcl([f], [{"f": {"x": 1}}, {"f": {"x": 2}}], ans, "parallel"))
    assert ok(check_bfcl([f], [{"f": {"x": 2}}, {"f": {"x": 1}}], ans, "parallel"))
    # duplicates are counted: two x=2 cannot serve the answer that needs x == 1
    r = check_bfcl([f], [{"f": {"x": 2}}, {"f": {"x": 2}}], ans, "parallel")
    assert (r.error_type, r.detail["answer"]) == ("parallel:no_match", 1)


def test_parallel_multiple_mixed_functions():
    f, g = doc("f", x="integer"), doc("g", s="string")
    ans = [{"f": {"x": [1]}}, {"g": {"s": ["a"]}}, {"f": {"x": [3]}}]
    out = [{"g": {"s": "A"}}, {"f": {"x": 3}}, {"f": {"x": 1}}]
    assert ok(check_bfcl([f, g], out, ans, "parallel_multiple"))
    assert ok(check_bfcl([f, g], out, ans, "live_parallel_multiple"))
    out_bad = [{"g": {"s": "b"}}, {"f": {"x": 3}}, {"f": {"x": 1}}]
    r = check_bfcl([f, g], out_bad, ans, "parallel_multiple")
    assert (r.error_type, r.detail["func"]) == ("parallel:no_match", "g")
    r = check_bfcl([f], out, ans, "parallel_multiple")
    assert (r.error_type, r.detail["func"]) == ("doc_not_found", "g")


# ---------------------------------------------------------------- (ir)relevance and malformed output


@pytest.mark.parametrize(
    "output,has_call",
    [([], False), ([{}], False), ("text", False), ([{"f": {}}], True), ([{"f": {"a": 1}}, {"g": {}}], True),
     ([{"f": 1}], False), ([{"f": {}, "g": {}}], False), (None, False)],
)  # fmt: skip
def test_irrelevance_and_relevance(output, has_call):
    assert contains_call(output) is has_call
    for cat in ("irrelevance", "live_irrelevance"):
        r = check_bfcl([doc("f")], output, None, cat)
        assert ok(r) is (not has_call)
        if has_call:
            assert r.error_type == "irrelevance:called"
    r = check_bfcl([doc("f")], output, None, "live_relevance")
    assert ok(r) is has_call
    if not has_call:
        assert r.error_type == "relevance:no_call"


def test_malformed_outputs_are_invalid_not_exceptions():
    f = doc("f", x="integer")
    ans = [{"f": {"x": [1]}}]
    assert check_bfcl([f], {"f": {"x": 1}}, ans, "simple_python").error_type == "malformed_output"
    assert (
        check_bfcl([f], [{"f": {"x": 1}, "g": {}}], ans, "simple_python").error_type
        == "malformed_call"
    )
    assert check_bfcl([f], [{"f": [1]}], ans, "simple_python").error_type == "malformed_call"
    assert check_bfcl([f], ["f(x=1)"], ans, "simple_python").error_type == "malformed_call"
    assert (
        check_bfcl([f], [{"f": {"x": 1}}, "junk"], ans * 2, "parallel").error_type
        == "parallel:no_match"
    )


def test_bad_answers_raise_data_error():
    f = doc("f", x="integer")
    with pytest.raises(BfclDataError):
        compile_answer([f], [], "simple_python")
    with pytest.raises(BfclDataError):
        compile_answer([f], [{"f": {"x": [1]}, "g": {}}], "multiple")
    with pytest.raises(BfclDataError):
        compile_answer(
            [{"name": "f", "parameters": {"properties": "x"}}], [{"f": {}}], "simple_python"
        )
    with pytest.raises(BfclDataError):
        compile_answer([], [{"f": {}}], "simple_python")


def test_empty_acceptable_list_accepts_nothing():
    # live_simple_106-63-0-style quirk: a required param with no acceptable value
    assert one("string", [], "x").error_type == "value_error:string"


def test_compiled_answer_is_reusable():
    f = doc("f", x="integer")
    compiled = compile_answer([f], [{"f": {"x": [1]}}, {"f": {"x": [2]}}], "parallel")
    assert ok(compiled.check([{"f": {"x": 2}}, {"f": {"x": 1}}]))
    assert not ok(compiled.check([{"f": {"x": 3}}, {"f": {"x": 1}}]))
    assert ok(compiled.check([{"f": {"x": 1}}, {"f": {"x": 2}}]))


def test_untyped_doc_param_compares_by_value():
    d = doc("f", p={"description": "no type"})
    ans = [{"f": {"p": ["Hello World", 3]}}]
    assert ok(check_bfcl([d], [{"f": {"p": "hello-world"}}], ans, "simple_python"))
    assert ok(check_bfcl([d], [{"f": {"p": 3}}], ans, "simple_python"))
    assert not ok(check_bfcl([d], [{"f": {"p": 4}}], ans, "simple_python"))


# ---------------------------------------------------------------- Java / JavaScript docs


def test_java_and_javascript_types():
    assert ok(one("long", [123], 123, "simple_java"))
    assert ok(one("long", [123], "123L", "simple_java"))  # Java source text for a scalar
    assert ok(one("double", [2.5], "2.5", "simple_java"))
    assert ok(one("float", [2.5], "2.5f", "simple_java"))
    assert ok(one("boolean", [True], "true", "simple_java"))
    assert one("boolean", [True], "yes", "simple_java").error_type == "type_error:simple"
    assert ok(one("String", ["Customers"], "customers", "simple_java"))
    assert ok(one("HashMap", [{"limit": [50]}], {"limit": 50}, "simple_java"))
    arr = {"type": "ArrayList", "items": {"type": "String"}}
    assert ok(one(arr, [["a", "b"]], ["a", "b"], "simple_java"))
    assert ok(one("Bigint", [7], "7n", "simple_javascript"))
    assert ok(one("Boolean", [False], False, "simple_javascript"))
    assert ok(one("any", ["fooVar"], "fooVar", "simple_javascript"))
    # Python docs do not convert source text
    assert one("integer", [123], "123", "simple_python").error_type == "type_error:simple"


def test_untyped_doc_param_lists_are_normalized_inside():
    d = doc("f", p={"description": "no type"})
    ans = [{"f": {"p": [["New York", 2]]}}]
    assert ok(check_bfcl([d], [{"f": {"p": ["new york", 2]}}], ans, "simple_python"))
    assert not ok(check_bfcl([d], [{"f": {"p": [2, "new york"]}}], ans, "simple_python"))

"""load_config: files, YAML syntax, checks across files, and several bad files at once."""

from __future__ import annotations

import copy
import shutil

from sync_pipeline.config.loader import UNRESOLVED_URL, load_config
from sync_pipeline.errors import ConfigErrors

from .conftest import CONNECTORS, ENV, FLOW


def test_a_flow_naming_an_unknown_connector_is_told_where_connectors_live(tree) -> None:
    tree.flow("x", target={"connector": "wecomm", "stream": "messages"})

    error = tree.error()

    assert error.problems == [
        (
            "target.connector",
            f"expected a connector defined in {tree.root / 'connectors.yaml'} (oa, wecom)",
        )
    ]


def test_a_user_mapped_to_another_system_than_the_target_is_an_error(tree) -> None:
    flow = copy.deepcopy(FLOW)
    flow["mapping"]["fields"]["applicant"]["user"]["to_system"] = "dingtalk"
    tree.flow("x", flow)

    assert tree.error().problems == [
        ("mapping.fields.applicant.user.to_system", "expected wecom, the target connector's system")
    ]


def test_a_yaml_syntax_error_names_the_file_line_and_column(tree) -> None:
    path = tree.write(
        "flows/x.yaml", "source:\n  connector: oa\n  stream: [approvals\ntarget: {}\n"
    )

    error = tree.error()

    assert error.file == str(path)
    [(key, expected)] = error.problems
    assert key == "line 4, column 7"
    assert expected.startswith("expected valid YAML:")


def test_given_a_byte_that_is_not_utf8_in_a_comment_the_problem_names_its_line(tree) -> None:
    path = tree.root / "flows/x.yaml"
    path.write_bytes(b"# caf\xe9 menu\nsource: {connector: oa, stream: approvals}\n")

    error = tree.error()

    assert error.file == str(path)
    assert error.problems == [
        ("line 1, column 6", "expected UTF-8 text; byte 0xe9 is not (save it as UTF-8)")
    ]


def test_given_a_control_character_the_problem_names_its_line_and_column(tree) -> None:
    tree.write("flows/x.yaml", "source: {connector: oa}\ntitle: a\x07b\n")

    [(key, expected)] = tree.error().problems

    assert key == "line 2, column 9"
    assert expected.startswith("expected valid YAML: unacceptable character #x0007")


def test_a_duplicate_key_names_its_line_instead_of_keeping_the_last(tree) -> None:
    text = "source: {connector: oa, stream: approvals}\ntarget: {connector: oa, stream: x}\n"
    tree.write("flows/x.yaml", text + "target: {connector: wecom, stream: messages}\n")

    [(key, expected)] = tree.error().problems

    assert key == "line 3, column 1"
    assert "found duplicate key 'target'" in expected


def test_a_file_that_is_not_a_mapping_says_so(tree) -> None:
    tree.write("flows/x.yaml", "- source\n- target\n")

    assert tree.error().problems == [("(top)", "expected a mapping of keys to values")]


def test_an_empty_flow_file_lists_what_it_needs(tree) -> None:
    tree.write("flows/x.yaml", "")

    keys = sorted(key for key, _ in tree.error().problems)

    assert keys == ["cursor_field", "mapping", "source", "target", "trigger"]


def test_a_missing_connectors_file_is_named(tree) -> None:
    (tree.root / "connectors.yaml").unlink()

    error = tree.error()

    assert error.file == str(tree.root / "connectors.yaml")
    assert error.problems[0][0] == "(top)"
    assert error.problems[0][1].startswith("expected a readable file")


def test_problems_in_several_files_are_all_reported_each_with_its_file(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["oa"]["vendor"] = "sap"
    tree.connectors(connectors)
    tree.flow("a", source={"connector": "oa"})
    tree.flow("b", page_size=0)

    error = tree.error()

    assert isinstance(error, ConfigErrors)
    assert [(e.file, e.problems) for e in error.errors] == [
        (
            str(tree.root / "connectors.yaml"),
            [
                (
                    "oa.vendor",
                    "Must be one of: oa, wecom, dingtalk, feishu, agora, rest, matrix, slack.",
                )
            ],
        ),
        (str(tree.root / "flows/a.yaml"), [("source.stream", "Missing data for required field.")]),
        (
            str(tree.root / "flows/b.yaml"),
            [("page_size", "Must be greater than or equal to 1 and less than or equal to 1000.")],
        ),
    ]
    assert (
        str(error).splitlines()[1]
        == f"{tree.root / 'flows/a.yaml'}: source.stream: Missing data for required field."
    )


def test_several_file_errors_rebuild_from_their_args_as_celery_does(tree) -> None:
    tree.flow("a", page_size=0)
    tree.flow("b", page_size=0)
    error = tree.error()

    rebuilt = type(error)(*error.args)

    assert str(rebuilt) == str(error)


def test_two_flows_with_one_name_are_an_error_in_the_second(tree) -> None:
    tree.flow("a")
    tree.flow("b", name="a")

    error = tree.error()

    assert error.file == str(tree.root / "flows/b.yaml")
    assert error.problems == [
        ("name", f"expected a unique name; {tree.root / 'flows/a.yaml'} has it")
    ]


def test_disabled_flows_load_but_are_not_enabled(tree) -> None:
    tree.flow("on")
    tree.flow("off", enabled=False)

    config = tree.load()

    assert sorted(config.flows) == ["off", "on"]
    assert [f.name for f in config.enabled_flows()] == ["on"]


def test_given_no_environment_the_flows_load_without_any_secret(tree) -> None:
    tree.flow("x")

    config = load_config(tree.root, {}, environment=False)

    assert list(config.flows) == ["x"]
    assert {c.resolved for c in config.connectors.values()} == {False}
    assert all(c.credentials == {} for c in config.connectors.values())


def test_given_no_environment_a_base_url_variable_without_default_is_not_a_problem(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["oa"]["base_url"] = "${OA_URL}/api"
    tree.connectors(connectors)
    tree.flow("x")

    config = load_config(tree.root, {}, environment=False)

    assert config.connectors["oa"].base_url == UNRESOLVED_URL


def test_given_the_same_files_elsewhere_the_digest_is_the_same(tree, tmp_path) -> None:
    tree.flow("x")
    copied = tmp_path / "elsewhere"
    shutil.copytree(tree.root, copied)

    assert tree.load().digest == load_config(copied, ENV).digest


def test_given_a_comment_added_to_a_flow_file_the_digest_changes(tree) -> None:
    path = tree.flow("x")
    before = tree.load().digest

    path.write_text(path.read_text("utf-8") + "# a note\n", "utf-8")

    assert tree.load().digest != before

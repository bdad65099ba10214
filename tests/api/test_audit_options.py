"""The audit options are defined once (auditor/auditing/options.py: AuditOptions and the AuditSettings
the REST request inherits), and the three surfaces decide alike: the same values are accepted or
refused by `auditor audit` (exit 2 naming the option), by `auditor.audit()` (a ValidationError
naming the keyword) and by POST /v1/audits, as JSON and as multipart (422 naming the field). No
model loads: the command and the function are stopped where they would plan the audit, after
their options were validated; the service is the in-process one without models."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import ValidationError
from typer.main import get_command
from typer.testing import CliRunner

from auditor.auditing.options import COLUMN_ROLES, AuditColumns, AuditOptions, AuditSettings, column_field
from auditor.cli import app
from auditor.gate.judge import GatePolicy
from auditor.python_api import audit

runner = CliRunner()
ROWS = [{"answer": f"answer number {i} about the weather", "vendor": "acme" if i % 2 else "beta"} for i in range(6)]
COLUMNS = {"text_col": "answer", "vendor_col": "vendor"}

# (option, value, accepted): the bounds of AuditOptions' fields, at and around them.
CASES = [
    ("level", 0.5, True),
    ("level", 0.3, False),
    ("level", 0.9, True),
    ("level", 0.9999, True),
    ("level", 1.0, False),
    ("tolerance", -0.1, False),
    ("tolerance", 0.0, True),
    ("tolerance", 0.05, True),
    ("tolerance", 1.0, True),
    ("tolerance", 1.5, False),
    ("top_items", 0, True),
    ("top_items", 5, True),
    ("top_items", -1, False),
    ("task", "medical-qa", True),
    ("task", "bad name!", False),
    ("task", "tenant-1", False),
]


class PlannedError(Exception):
    """Raised where the audit would be planned: the options were accepted."""


@pytest.fixture
def stop_before_planning(monkeypatch):
    def planned(*args, **kwargs):
        raise PlannedError

    # both surfaces import plan from the package when called
    monkeypatch.setattr("auditor.auditing.plan", planned)


def cli_accepts(option: str, value, tmp_path) -> bool:
    flag = "--" + option.replace("_", "-")
    args = ["--text-col", "answer", "--vendor-col", "vendor", flag, str(value), "--out", str(tmp_path / "out")]
    if option == "text_col":
        args = ["--text-col", str(value), "--vendor-col", "vendor", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, ["audit", str(tmp_path / "delivery.csv"), *args])
    if isinstance(result.exception, PlannedError):
        return True
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert f"'{flag}'" in result.output, result.output  # "Invalid value for '--level': ..."
    return False


def python_accepts(option: str, value, tmp_path) -> bool:
    try:
        audit(tmp_path / "delivery.csv", **(COLUMNS | {option: value}))
    except PlannedError:
        return True
    except ValidationError as exc:
        assert option in str(exc), str(exc)
        return False
    raise AssertionError("the audit ran past its planning")


def rest_accepts(client, option: str, value, multipart: bool) -> bool:
    if multipart:
        csv = "answer,vendor\n" + "".join(f"{r['answer']},{r['vendor']}\n" for r in ROWS)
        data = COLUMNS | {option: str(value)}
        response = client.post("/v1/audits", files={"file": ("delivery.csv", csv.encode())}, data=data)
    else:
        response = client.post("/v1/audits", json={"rows": ROWS, **COLUMNS, option: value})
    if response.status_code == 422:
        assert option in response.json()["detail"], response.text
        return False
    # a task that passes validation is still one the tenant must have stored: 404, not 422
    assert response.status_code == (404 if option == "task" else 202), response.text
    return True


@pytest.mark.parametrize(("option", "value", "accepted"), CASES, ids=[f"{o}={v}" for o, v, _ in CASES])
def test_every_surface_decides_alike(option, value, accepted, client, tmp_path, stop_before_planning):
    (tmp_path / "delivery.csv").write_text("answer,vendor\nhello there,acme\n")
    try:
        AuditOptions(columns=AuditColumns(text="answer", vendor="vendor"), **{option: value})
        model = True
    except ValidationError:
        model = False
    decisions = {
        "model": model,
        "cli": cli_accepts(option, value, tmp_path),
        "python": python_accepts(option, value, tmp_path),
        "rest-json": rest_accepts(client, option, value, multipart=False),
        "rest-multipart": rest_accepts(client, option, value, multipart=True),
    }
    assert decisions == dict.fromkeys(decisions, accepted)


def test_an_empty_column_name_is_refused_everywhere(client, tmp_path, stop_before_planning):
    (tmp_path / "delivery.csv").write_text("answer,vendor\nhello there,acme\n")
    assert not cli_accepts("text_col", "", tmp_path)
    assert not python_accepts("text_col", "", tmp_path)
    assert not rest_accepts(client, "text_col", "", multipart=False)
    assert not rest_accepts(client, "text_col", "", multipart=True)


def _audit_command_options() -> dict[str, Any]:
    command = get_command(app).commands["audit"]  # type: ignore[attr-defined]
    return {param.name: param for param in command.params}


def test_the_command_line_takes_its_options_from_the_model():
    """Each option of `auditor audit` that is an AuditOptions field has the field's default and
    the field's description (with its bounds) as its help; the columns are AuditColumns'."""
    params = _audit_command_options()
    for name, field in AuditOptions.model_fields.items():
        if name == "columns":
            continue
        param = params[name]
        assert param.default == field.default, name
        assert field.description and param.help.startswith(field.description), name
    for role in COLUMN_ROLES:
        param, field = params[column_field(role)], AuditColumns.model_fields[role]
        assert param.opts == [f"--{role}-col"] and param.help == field.description
        assert param.required == field.is_required() and (param.required or param.default is None)
    assert params["tolerance"].opts == ["--tolerance", "--fail-above"]
    assert "[0.5<=x<1]" in params["level"].help and "[0<=x<=1]" in params["tolerance"].help


def test_the_python_keywords_are_the_models_options_with_its_defaults():
    signature = inspect.signature(audit).parameters
    for name, field in AuditOptions.model_fields.items():
        if name != "columns":
            assert signature[name].default == field.default, name
    for role in COLUMN_ROLES:
        field, parameter = AuditColumns.model_fields[role], signature[column_field(role)]
        assert parameter.default is (inspect.Parameter.empty if field.is_required() else field.default), role


def test_the_rest_request_inherits_the_models_options(client):
    from api.schemas import AuditRowsRequest

    assert issubclass(AuditRowsRequest, AuditSettings)
    for name, field in AuditSettings.model_fields.items():  # inherited: the same type, bounds, default, help
        assert repr(AuditRowsRequest.model_fields[name]) == repr(field), name
    body = client.get("/openapi.json").json()["paths"]["/v1/audits"]["post"]["requestBody"]["content"]
    for content in ("application/json", "multipart/form-data"):
        properties = body[content]["schema"]["properties"]
        for name, schema in AuditSettings.model_json_schema()["properties"].items():
            if schema.get("default", ...) is None:  # the served document leaves out null defaults
                schema.pop("default")
            assert properties[name] == schema, (content, name)
    assert body["multipart/form-data"]["schema"]["properties"]["level"]["exclusiveMaximum"] == 1


@pytest.mark.parametrize(("level", "accepted"), [("0.5", False), ("0.9999", True), ("1", False)])
def test_the_gates_level_is_its_policys(level, accepted, tmp_path):
    """`auditor gate --level` is bounded as GatePolicy.confidence is (0.5 < level < 1): 0.5 is a
    usage error naming the option, not a traceback from the policy, and 0.9999 is accepted (the
    command then stops at the unknown --scorer)."""
    assert "[0.5<x<1]" in _gate_command_options()["level"].help
    args = ["gate", str(tmp_path / "shard.jsonl"), "--max-synthetic", "0.1", "--manifest", str(tmp_path / "m.json")]
    result = runner.invoke(app, [*args, "--level", level, "--scorer", "nonexistent"])
    assert result.exit_code == 2, result.output
    assert ("'--level'" not in result.output) == accepted, result.output
    assert ("--scorer must be one of" in result.output) == accepted, result.output


def test_the_gates_options_are_its_policys():
    params = _gate_command_options()
    for option, field in (("level", "confidence"), ("max_scored", "max_scored"), ("max_benchmark_hits", None)):
        policy = GatePolicy.model_fields[field or option]
        assert params[option].default == policy.default and policy.description, option
        assert params[option].help.startswith(policy.description), option
    assert params["max_synthetic"].opts == ["--max-synthetic", "--tolerance"] and params["max_synthetic"].required


def _gate_command_options() -> dict[str, Any]:
    command = get_command(app).commands["gate"]  # type: ignore[attr-defined]
    return {param.name: param for param in command.params}

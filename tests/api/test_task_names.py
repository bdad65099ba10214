"""Task names cannot leave the tenant's directory, nor reach another tenant's task references:
path traversal (``../x``, ``..%2Fx``, absolute paths), NUL and newlines, unicode lookalikes of
dots and slashes, and the ``tenant-`` prefix are refused (400/404/422) on every route that takes
a task name, and leave every file under the task stores as it was; another tenant's task is 404.

In-process on an app without models (storing task references needs none)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

HUMAN = ["It rained all day, so we stayed in.", "Paris is the capital of France.", "We took the early train."]

# Names no task can have. Each is sent as one percent-encoded path segment (dots too, so that no
# client folds "../" away before the server sees it).
BAD_NAMES = [
    "..",
    ".",
    "../x",
    "..%2Fx",  # the literal text, as a client that encodes twice would send it
    "..\\x",
    "x/../../y",
    "/etc/passwd",
    "C:\\Windows",
    "x\x00y",
    "x\x00",
    "x\n",
    "x\r\ny",
    " x",
    ".hidden",
    "tenant-{other}",
    "tenant-{other}/shared",
    "../tenant-{other}/shared",
    "\uff0e\uff0e\uff0fx",  # fullwidth full stops and solidus
    "\u2024\u2024",  # one dot leaders
    "x\u2215y",  # division slash
    "x\u2044y",  # fraction slash
    "\u0445",  # Cyrillic small letter ha, a lookalike of x
    "caf\u00e9",
    "a" * 65,
]


def segment(name: str) -> str:
    return quote(name, safe="").replace(".", "%2E")


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: its path and a digest of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from api.main import create_app
    from api.settings import ServiceSettings

    tmp = tmp_path_factory.mktemp("task-names")
    return create_app(ServiceSettings(cache_dir=tmp, database_url=f"sqlite:///{tmp / 'auditor.db'}"), load_models=False)


@pytest.fixture(scope="module")
def tenants(app):
    """Two tenants' clients and ids; the other tenant has a task named ``shared``."""
    from api.db import ApiKey
    from api.keys import create_key

    with app.state.sessions() as session:
        made = {name: create_key(session, name) for name in ("names-a", "names-b")}
        ids = {name: session.get(ApiKey, record.id).tenant_id for name, (_, record) in made.items()}
    with TestClient(app, raise_server_exceptions=False) as client:
        clients = {name: _Tenant(client, key, ids[name]) for name, (key, _) in made.items()}
        added = clients["names-b"].post("/v1/tasks/shared/references", json={"human": HUMAN})
        assert added.status_code == 201, added.text
        yield clients


class _Tenant:
    def __init__(self, client: TestClient, key: str, tenant_id: str):
        self.client, self.id, self.headers = client, tenant_id, {"X-API-Key": key}

    def __getattr__(self, method: str):
        call = getattr(self.client, method)
        return lambda url, **kwargs: call(url, headers=self.headers, **kwargs)


def tasks_root(app) -> Path:
    return app.state.settings.task_store_dir


@pytest.mark.parametrize("template", BAD_NAMES, ids=lambda n: repr(n)[1:-1][:40])
def test_a_name_no_task_can_have_is_refused_everywhere_and_touches_no_file(app, tenants, template):
    a, b = tenants["names-a"], tenants["names-b"]
    name = template.format(other=b.id)
    before = tree(tasks_root(app))
    path = f"/v1/tasks/{segment(name)}"
    answers = {
        "add": a.post(f"{path}/references", json={"human": HUMAN}),
        "add files": a.post(
            f"{path}/references", files={"human": ("human.csv", ("text\n" + "\n".join(HUMAN)).encode())}
        ),
        "get": a.get(path),
        "delete": a.delete(path),
        "audit": a.post(
            "/v1/audits", json={"rows": [{"t": "x", "v": "y"}], "text_col": "t", "vendor_col": "v", "task": name}
        ),
    }
    for what, answer in answers.items():
        assert answer.status_code in (400, 404, 422), (what, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), what
        if answer.status_code == 422 and what != "audit":
            assert answer.json()["task"] == name  # the server judged exactly this name
    assert tree(tasks_root(app)) == before  # nothing written, moved or deleted, in any tenant's store
    assert b.get("/v1/tasks/shared").status_code == 200
    assert [t["task"] for t in a.get("/v1/tasks").json()] == []


def test_another_tenant_s_task_is_not_found(app, tenants):
    a, b = tenants["names-a"], tenants["names-b"]
    theirs = tree(tasks_root(app) / f"tenant-{b.id}")
    assert a.get("/v1/tasks/shared").status_code == 404
    assert a.delete("/v1/tasks/shared").status_code == 404
    audit = a.post(
        "/v1/audits", json={"rows": [{"t": "x", "v": "y"}], "text_col": "t", "vendor_col": "v", "task": "shared"}
    )
    assert audit.status_code == 404 and "no task 'shared'" in audit.json()["detail"]
    assert "shared" not in [t["task"] for t in a.get("/v1/tasks").json()]
    # the same name is a task of the tenant's own, apart from the other's
    mine = a.post("/v1/tasks/shared/references", json={"human": HUMAN[:2]})
    assert mine.status_code == 201 and mine.json()["human"] == 2
    assert (tasks_root(app) / f"tenant-{a.id}" / "shared" / "task.json").is_file()
    assert tree(tasks_root(app) / f"tenant-{b.id}") == theirs
    assert b.get("/v1/tasks/shared").json()["human"]["n_texts"] == 3
    assert a.delete("/v1/tasks/shared").status_code == 204
    assert tree(tasks_root(app) / f"tenant-{b.id}") == theirs


@pytest.mark.parametrize("template", [*BAD_NAMES, ""], ids=lambda n: repr(n)[1:-1][:40] or "empty")
def test_the_task_store_refuses_the_names_itself(tmp_path, template):
    """The store checks every name it is given (the command line's `auditor references` too)."""
    from auditor.tasks.store import TaskError, TaskStore

    store = TaskStore(tmp_path / "tenant-x")
    name = template.format(other="y")
    for use in (
        lambda: store.add(name, "human", HUMAN, None, "", "test"),
        lambda: store.info(name),
        lambda: store.texts(name, "human"),
        lambda: store.remove(name),
        lambda: store.work_dir(name),
    ):
        with pytest.raises(TaskError):
            use()
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("name", ["a", "x.y", "A-b_c.1", "9" * 64, "a..b", "medical-qa"])
def test_an_allowed_name_is_one_folder_inside_the_store(tmp_path, name):
    from auditor.tasks.store import TaskStore

    store = TaskStore(tmp_path / "tenant-x")
    store.add(name, "human", HUMAN, None, "", "test")
    assert [p.parent for p in tmp_path.rglob("task.json")] == [tmp_path / "tenant-x" / name]
    assert (tmp_path / "tenant-x" / name).resolve().parent == (tmp_path / "tenant-x").resolve()

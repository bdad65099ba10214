"""The web process restarted (SIGTERM: graceful; SIGKILL: a crash) while a client uploads a
delivery: no half-stored job, and the client's retry with its Idempotency-Key after the restart
creates exactly one job, which runs once with every row. While the process is down there is
no one to answer 503: the client sees refused connections and retries."""

from __future__ import annotations

import io
import signal
import socket
import time
import uuid

import pandas as pd
import pytest
from faults import AUDIT_FIELDS, assert_finished_once_with_every_row, delivery

pytestmark = pytest.mark.reliability


def _multipart(csv: bytes, boundary: str) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in AUDIT_FIELDS.items()
    ]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="delivery.csv"\r\n'
    parts.append(head.encode() + b"Content-Type: text/csv\r\n\r\n" + csv + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _interrupted_upload(deployment, key: str, idempotency_key: str, body: bytes, boundary: str, sig: int) -> int | None:
    """Send half the upload, signal the web process, send the rest; the status answered, if any."""
    head = (
        f"POST /v1/audits HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nIdempotency-Key: {idempotency_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=30) as connection:
        connection.sendall(head + body[:half])
        time.sleep(0.3)
        deployment.web.send_signal(sig)
        time.sleep(0.3)
        try:
            connection.sendall(body[half:])
            answer = connection.recv(200)
        except OSError:  # reset by the dying process
            return None
    deployment.stop_web()  # waits for the process to end
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else None


def test_a_web_restart_during_an_upload_stores_it_once_on_retry(deployment, texts):
    key = deployment.new_key("upload")
    uploads = []
    for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
        rows = delivery(texts[n * 100 :], 64, f"upload{n}")
        buffer = io.StringIO()
        pd.DataFrame(rows).to_csv(buffer, index=False)
        boundary, idempotency_key = uuid.uuid4().hex, f"upload-{uuid.uuid4().hex}"
        body = _multipart(buffer.getvalue().encode(), boundary)
        answered = _interrupted_upload(deployment, key, idempotency_key, body, boundary, sig)
        # SIGTERM: the graceful shutdown finishes the request in flight; SIGKILL: it is cut off.
        assert answered == (202 if sig == signal.SIGTERM else None), answered

        deployment.start_web()
        with deployment.client(key) as client:
            stored = client.get("/v1/audits").json()
            assert len(stored) == len(uploads) + (answered == 202), stored  # nothing half-stored
            files = {"file": ("delivery.csv", buffer.getvalue().encode())}
            headers = {"Idempotency-Key": idempotency_key}
            retry = client.post("/v1/audits", files=files, data=AUDIT_FIELDS, headers=headers)
            assert retry.status_code == (200 if answered == 202 else 202), retry.text
            again = client.post("/v1/audits", files=files, data=AUDIT_FIELDS, headers=headers)
            assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
            assert again.json()["id"] == retry.json()["id"]
            assert len(client.get("/v1/audits").json()) == len(uploads) + 1
        uploads.append((retry.json()["id"], rows))
    deployment.start_worker()
    with deployment.client(key) as client:
        for audit_id, rows in uploads:
            assert_finished_once_with_every_row(deployment, client, audit_id, rows)

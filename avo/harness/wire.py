"""Messages between the judge and the candidate's runner: length-prefixed JSON on a Unix socket.

JSON only, in both directions: the judge never unpickles anything the runner
sends, and a message can carry file descriptors (the CPU shared-memory arena)
through SCM_RIGHTS. A message over MAX_BYTES or one that is not a JSON object
is a protocol error: the runner is untrusted and may send anything.
"""
from __future__ import annotations

import json
import socket
import struct

MAX_BYTES = 1 << 22  # 4 MiB: the largest honest message (a kernel list) is a few KB
_HEADER = struct.Struct("!I")


class WireError(Exception):
    """The peer closed the connection or sent something that is not a message."""


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv(sock: socket.socket, with_fds: bool = False):
    """One message (a dict); with_fds=True returns (message, fds)."""
    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 8)
        head = head + _read_exact(sock, _HEADER.size - len(head)) if head else b""
    else:
        head = _read_exact(sock, _HEADER.size)
    if len(head) < _HEADER.size:
        raise WireError("connection closed")
    (n,) = _HEADER.unpack(head)
    if n > MAX_BYTES:
        raise WireError(f"message of {n} bytes exceeds {MAX_BYTES}")
    body = _read_exact(sock, n)
    if len(body) < n:
        raise WireError("connection closed mid-message")
    try:
        message = json.loads(body)
    except ValueError as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return (message, fds) if with_fds else message


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = sock.recv(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)

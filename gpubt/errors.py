"""One error type for every rejected input (spec §8): a message a user can act on, and where."""

from __future__ import annotations

from typing import Any


class GpubtError(Exception):
    """A refusal of bad input. `path` is the JSON path (``payload.children.then[0].window``) or a
    file/row location; `status` is the HTTP status the API answers with (400, or 413 for limits)."""

    def __init__(self, message: str, path: str = "", status: int = 400) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "path": self.path}}


def json_path(*parts: str | int) -> str:
    """Join path parts the way the spec writes them: names with dots, list indices in brackets."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "":
            out += f".{part}" if out else str(part)
    return out

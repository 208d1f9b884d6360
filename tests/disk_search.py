"""Looking for a secret on disk in every form it could take there (the privacy tests' one tool)."""

from __future__ import annotations

import base64
from pathlib import Path


def forms(text: str) -> list[bytes]:
    """The ways a text could show in a file: raw, base64 (both alphabets, three alignments), hex."""
    raw = text.encode()
    out = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):  # the characters that depend on the text alone, wherever it starts
        shifted = b"\0" * shift + raw
        core = base64.b64encode(shifted[: len(shifted) // 3 * 3])[4 if shift else 0:]
        out += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def files_holding(data_dir: Path, text: str) -> list[str]:
    """Every file under data_dir holding `text` in any of its forms, relative and sorted."""
    needles = forms(text)
    return sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*") if path.is_file()
                  and any(needle in path.read_bytes() for needle in needles))

"""This machine's apt sources, read the way apt reads them (one-line and deb822 formats).

Both the base image build (which mirrors the sources for this machine's release) and the
lab proxy (whose allow-list names the hosts apt uses) read them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """One apt source entry."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)  # lower-case keys, e.g. signed-by

    def deb822(self, suites: tuple[str, ...] | None = None) -> str:
        """The entry as a deb822 stanza (optionally with only some of its suites)."""
        text = (f"Types: {' '.join(self.types)}\nURIs: {' '.join(self.uris)}\n"
                f"Suites: {' '.join(suites or self.suites)}\nComponents: {' '.join(self.components)}\n")
        if "signed-by" in self.options:
            text += f"Signed-By: {self.options['signed-by']}\n"
        return text


def source_files(root: Path = Path("/")) -> list[Path]:
    """The files apt reads: sources.list and sources.list.d/*.list|*.sources (renamed ones are off)."""
    files = [root / "etc/apt/sources.list"]
    d = root / "etc/apt/sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return [p for p in files if p.is_file()]


def _parse_deb822(text: str) -> list[Source]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:  # continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if not fields.get("uris") or fields.get("enabled", "yes").lower() == "no":
            continue
        out.append(Source(
            types=tuple(fields.get("types", "").split()), uris=tuple(fields["uris"].split()),
            suites=tuple(fields.get("suites", "").split()), components=tuple(fields.get("components", "").split()),
            options={k: v for k, v in fields.items() if k not in ("types", "uris", "suites", "components")},
        ))
    return out


def _parse_one_line(text: str) -> list[Source]:
    out = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if parts[:1] not in (["deb"], ["deb-src"]):
            continue
        kind, rest = parts[0], parts[1:]
        options: dict[str, str] = {}
        if rest and rest[0].startswith("["):
            end = next((i for i, p in enumerate(rest) if p.endswith("]")), len(rest) - 1)
            for opt in " ".join(rest[: end + 1])[1:-1].split():
                k, _, v = opt.partition("=")
                options[k.lower()] = v
            rest = rest[end + 1 :]
        if len(rest) >= 2:
            out.append(Source(types=(kind,), uris=(rest[0],), suites=(rest[1],), components=tuple(rest[2:]),
                              options=options))
    return out


def read_sources(root: Path = Path("/")) -> list[Source]:
    """Every enabled apt source entry on this machine (or under `root`)."""
    out: list[Source] = []
    for f in source_files(root):
        text = f.read_text()
        out += _parse_deb822(text) if f.suffix == ".sources" else _parse_one_line(text)
    return out

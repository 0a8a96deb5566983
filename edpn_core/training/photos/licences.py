"""Which licence covers one installed file, read from the package's machine-readable debian/copyright (DEP-5)."""
from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath


def parse_copyright(text: str) -> tuple[str | None, list[tuple[list[str], str]]]:
    """Parse a machine-readable debian/copyright (DEP-5) into (main licence, [(file patterns, licence)]).

    The main licence is the header's License field, else that of ``Files: *``, else the first stanza's.
    """
    header_license = None
    stanzas: list[tuple[list[str], str]] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None:
                    fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        licence = fields.get("license", "").split("\n", 1)[0].strip()
        if "files" in fields and licence:
            stanzas.append((fields["files"].split(), licence))
        elif "format" in fields and licence:
            header_license = licence
    main = header_license
    if main is None:
        main = next((lic for pats, lic in stanzas if "*" in pats), stanzas[0][1] if stanzas else None)
    return main, stanzas


def _pattern_matches(pattern: str, path: PurePosixPath) -> bool:
    """DEP-5 patterns are relative to the upstream tree, not the installed one: match any path suffix,
    and a pattern naming one exact file also by its file name (packages flatten upstream folders)."""
    parts = path.parts
    for i in range(len(parts)):
        if fnmatch.fnmatchcase("/".join(parts[i:]), pattern):
            return True
    name = PurePosixPath(pattern).name
    return not any(c in name for c in "*?[") and name == path.name


def license_for_file(copyright_text: str, installed_path: str) -> str:
    """Licence short name covering one installed file: the last matching stanza wins, as DEP-5 says."""
    main, stanzas = parse_copyright(copyright_text)
    path = PurePosixPath(installed_path.lstrip("/"))
    found = None
    for patterns, licence in stanzas:
        if any(_pattern_matches(p, path) for p in patterns):
            found = licence
    return found or main or "unknown (see the package's copyright file)"

"""Which licence covers one file, read from a machine-readable debian/copyright (DEP-5) or from an
upstream README written in the same fields (GCompris: unindented file lists, "CC-BY-SA 4.0")."""
from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

Stanza = tuple[list[str], dict[str, str]]  # (file patterns, the stanza's fields by lower-case name)


def _short_name(licence: str) -> str:
    """DEP-5 short names from the spellings upstream READMEs use: "CC-BY-SA 4.0" -> "CC-BY-SA-4.0",
    "Public Domain" -> "public-domain"."""
    licence = licence.split("\n", 1)[0].strip()
    if licence.lower() == "public domain":
        return "public-domain"
    return re.sub(r"^(CC[-A-Za-z]*) (\d)", r"\1-\2", licence)


def _stanzas(text: str) -> tuple[str | None, list[Stanza]]:
    """(the header's licence, the Files stanzas); a line without a colon continues the field above it,
    indented (DEP-5) or not (upstream READMEs)."""
    header_license = None
    stanzas: list[Stanza] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or (":" not in line and line.strip()):
                if key is not None:
                    fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "license" in fields:
            fields["license"] = _short_name(fields["license"])
        if "files" in fields and fields.get("license"):
            stanzas.append((fields["files"].split(), fields))
        elif "format" in fields and fields.get("license"):
            header_license = fields["license"]
    return header_license, stanzas


def parse_copyright(text: str) -> tuple[str | None, list[tuple[list[str], str]]]:
    """Parse a machine-readable debian/copyright (DEP-5) into (main licence, [(file patterns, licence)]).

    The main licence is the header's License field, else that of ``Files: *``, else the first stanza's.
    """
    header_license, stanzas = _stanzas(text)
    licences = [(patterns, fields["license"]) for patterns, fields in stanzas]
    main = header_license
    if main is None:
        main = next((lic for pats, lic in licences if "*" in pats), licences[0][1] if licences else None)
    return main, licences


def _pattern_matches(pattern: str, path: PurePosixPath) -> bool:
    """DEP-5 patterns are relative to the upstream tree, not the installed one: match any path suffix,
    and a pattern naming one exact file also by its file name (packages flatten upstream folders)."""
    parts = path.parts
    for i in range(len(parts)):
        if fnmatch.fnmatchcase("/".join(parts[i:]), pattern):
            return True
    name = PurePosixPath(pattern).name
    return not any(c in name for c in "*?[") and name == path.name


def stanza_for_file(copyright_text: str, path: str) -> dict[str, str] | None:
    """The fields (license, copyright, source, ...) of the last stanza whose Files match, as DEP-5 says;
    None when no stanza names the file."""
    found = None
    for patterns, fields in _stanzas(copyright_text)[1]:
        if any(_pattern_matches(p, PurePosixPath(path.lstrip("/"))) for p in patterns):
            found = fields
    return found


def license_for_file(copyright_text: str, installed_path: str) -> str:
    """Licence short name covering one installed file, else the package's main licence."""
    stanza = stanza_for_file(copyright_text, installed_path)
    if stanza is not None:
        return stanza["license"]
    return parse_copyright(copyright_text)[0] or "unknown (see the package's copyright file)"

"""Write terraform-docs style tables (requirements, inputs, outputs) into each module's README.

The tables go between ``<!-- BEGIN_TF_DOCS -->`` and ``<!-- END_TF_DOCS -->``,
in terraform-docs' markdown table format, so that running terraform-docs later
produces the same layout. ``--check`` fails when a README is out of date.
Reads files formatted by ``terraform fmt``: top-level attributes of a block are
indented by two spaces.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TERRAFORM = REPO / "terraform"
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"
BLOCK = re.compile(r'^(variable|output) "([^"]+)" \{\n(.*?)^\}', re.M | re.S)
ATTRIBUTE = re.compile(r"^  ([a-z_]+)\s*=\s*", re.M)


@dataclass
class Entry:
    name: str
    description: str
    type: str = ""
    default: str | None = None


def attributes(body: str) -> dict[str, str]:
    """Top-level attributes of a block body as raw text (nested blocks left out)."""
    found: dict[str, str] = {}
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        match = ATTRIBUTE.match(line)
        if not match:
            index += 1
            continue
        value = [line[match.end() :]]
        index += 1
        # A value continues while lines are indented deeper than the attribute, or close it at its indent.
        while index < len(lines) and (lines[index].startswith("   ") or lines[index].strip() in (")", "}", "]", "})", "}))", "EOT")):
            value.append(lines[index])
            index += 1
        found[match.group(1)] = "\n".join(value).strip()
    return found


def description_text(raw: str) -> str:
    if raw.startswith("<<-EOT"):
        lines = raw.splitlines()[1:-1]
        return " ".join(line.strip() for line in lines)
    return raw.strip().strip('"').replace('\\"', '"')


def entries(module: Path, kind: str) -> list[Entry]:
    found = []
    for path in sorted(module.glob("*.tf")):
        for block_kind, name, body in BLOCK.findall(path.read_text()):
            if block_kind != kind:
                continue
            attrs = attributes(body)
            found.append(
                Entry(
                    name=name,
                    description=description_text(attrs.get("description", '""')),
                    type=attrs.get("type", "any"),
                    default=attrs.get("default"),
                )
            )
    return sorted(found, key=lambda entry: entry.name)


def code(value: str) -> str:
    if "\n" in value:
        escaped = value.replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br/>")
        return f"<pre>{escaped}</pre>"
    return f"`{value}`"


def requirements(module: Path) -> list[str]:
    versions = (module / "versions.tf").read_text()
    terraform = re.search(r'required_version\s*=\s*"([^"]+)"', versions)
    aws = re.search(r'source\s*=\s*"hashicorp/aws"\s*\n\s*version\s*=\s*"([^"]+)"', versions)
    rows = ["| Name | Version |", "|------|---------|"]
    if terraform:
        rows.append(f'| <a name="requirement_terraform"></a> [terraform](#requirement\\_terraform) | {terraform.group(1)} |')
    if aws:
        rows.append(f'| <a name="requirement_aws"></a> [aws](#requirement\\_aws) | {aws.group(1)} |')
    return rows


def render(module: Path) -> str:
    lines = ["## Requirements", "", *requirements(module), "", "## Inputs", ""]
    inputs = entries(module, "variable")
    if inputs:
        lines += ["| Name | Description | Type | Default | Required |", "|------|-------------|------|---------|:--------:|"]
        for entry in inputs:
            anchor = entry.name.replace("_", "\\_")
            default = "n/a" if entry.default is None else code(entry.default)
            required = "yes" if entry.default is None else "no"
            lines.append(
                f'| <a name="input_{entry.name}"></a> [{entry.name}](#input\\_{anchor}) | {entry.description} '
                f"| {code(entry.type)} | {default} | {required} |"
            )
    else:
        lines.append("No inputs.")
    lines += ["", "## Outputs", ""]
    outputs = entries(module, "output")
    if outputs:
        lines += ["| Name | Description |", "|------|-------------|"]
        for entry in outputs:
            anchor = entry.name.replace("_", "\\_")
            lines.append(f'| <a name="output_{entry.name}"></a> [{entry.name}](#output\\_{anchor}) | {entry.description} |')
    else:
        lines.append("No outputs.")
    return "\n".join(lines)


def modules() -> list[Path]:
    return [TERRAFORM, *sorted((TERRAFORM / "modules").iterdir()), *sorted((TERRAFORM / "examples").iterdir())]


def update(module: Path, check: bool) -> bool:
    """Rewrite the tables in ``module``'s README; True when it was already up to date."""
    readme = module / "README.md"
    text = readme.read_text() if readme.exists() else f"# {module.name}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(module)}\n{END}{tail}"
    if new == text:
        return True
    if not check:
        readme.write_text(new)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a README is out of date")
    args = parser.parse_args()
    stale = [str(module.relative_to(REPO)) for module in modules() if not update(module, args.check)]
    if stale and args.check:
        print(f"out of date, run `make docs`: {', '.join(stale)}", file=sys.stderr)
        return 1
    for module in stale:
        print(f"updated {module}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

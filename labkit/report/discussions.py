"""What a student wrote in REPORT.md, and what a rebuild must keep: the Discussions between their markers, read back;
the report being replaced, read and checked (a deleted marker or text outside the Discussions is refused, naming the
line; text just under a Discussion's questions is moved inside its markers)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .parts import PARTS, PLACEHOLDER, backup_path


def discussion_markers(key: str) -> tuple[str, str]:
    return f"<!-- discussion:{key}:start -->", f"<!-- discussion:{key}:end -->"


MARKER = re.compile(r"<!-- discussion:([^\s:>]+):(start|end) -->")


@dataclass(frozen=True)
class _Body:
    """Where the student's text of one Discussion lies in a report: ``text[start:end]``, between
    the end of its start marker and the beginning of its end marker (on their lines or not)."""

    key: str
    start: int
    end: int


def part_title(key: str) -> str:
    return next((f'"{part.title}"' for part in PARTS if part.key == key), f"`{key}`")


def line_number(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def discussion_bodies(text: str) -> tuple[list[_Body], list[str]]:
    """The Discussion bodies of a report's text, in order, and what is wrong with its markers: a
    marker missing, doubled or out of order, where the end of a student's text cannot be known."""
    bodies, problems, seen = [], [], set()
    opened = None  # (key, offset after its start marker, line)

    def unclosed(key: str, line: int) -> str:
        return (
            f"line {line}: the Discussion of {part_title(key)} starts here but its end marker "
            f"{discussion_markers(key)[1]} is missing: put it back on a line of its own after your text"
        )

    for match in MARKER.finditer(text):
        key, kind = match.groups()
        line = line_number(text, match.start())
        if kind == "start":
            if opened:
                problems.append(unclosed(opened[0], opened[2]))
            if key in seen:
                problems.append(
                    f"line {line}: a second Discussion of {part_title(key)} starts here: keep one pair of its "
                    "markers, with all your text for it between them"
                )
            seen.add(key)
            opened = (key, match.end(), line)
        elif opened and opened[0] == key:
            bodies.append(_Body(key, opened[1], match.start()))
            opened = None
        else:
            if opened:
                problems.append(unclosed(opened[0], opened[2]))
                opened = None
            problems.append(
                f"line {line}: the end marker of the Discussion of {part_title(key)} has no start marker "
                f"{discussion_markers(key)[0]} before it: put that back on a line of its own before your text"
            )
    if opened:
        problems.append(unclosed(opened[0], opened[2]))
    return bodies, problems


def read_discussions(report_path: Path) -> dict[str, str]:
    """The student's text of each Discussion section of an existing report (empty if none). A
    Discussion whose markers are missing or out of order is left out here; ``build_report``
    refuses to rebuild over such a report, naming the line."""
    if not report_path.is_file():
        return {}
    text = report_path.read_text(encoding="utf-8", errors="replace")
    found = {}
    bodies, _ = discussion_bodies(text)
    keys = {part.key for part in PARTS}
    for body in bodies:
        if body.key in keys:
            found.setdefault(body.key, text[body.start : body.end].strip())
    return found


def _words(line: str) -> str:
    """A line as compared with the report's own text: spaces do not count (an editor may realign a table)."""
    return " ".join(line.split())


def _outside_lines(text: str, bodies: list[_Body]) -> tuple[list[tuple[int, str]], list[int]]:
    """The lines of a report outside its Discussion bodies, each with its line number, and the index
    of each body's start-marker line among them (its end-marker line follows): with every body
    taken out, a report the student wrote only inside the markers reads as the report's own text."""
    lines, starts, position = [], [], 0
    for body in bodies + [None]:
        stop = body.start if body else len(text)
        first = line_number(text, position)
        lines += [(first + i, line) for i, line in enumerate(text[position:stop].split("\n"))]
        if body:
            starts.append(len(lines) - 1)
            position = body.end
    return lines, starts


def is_figure_name(rel: str) -> bool:
    """Whether ``rel`` has the shape of a figure the report writes: ``<run>/<file>``, nothing else."""
    parts = PurePosixPath(rel).parts
    return len(parts) == 2 and "\\" not in rel and not any(p in ("", ".", "..") for p in parts)


@dataclass
class PreviousReport:
    """The report a rebuild replaces: its bytes (kept as ``REPORT.md.bak``), the student's text of
    each Discussion (with any text moved inside its markers), the figures its own lines link to,
    and the notes to print about text that was moved."""

    raw: bytes
    discussions: dict[str, str] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def refusal(out: Path, problems: list[str], advice: str, why: str = "nothing written in it is lost") -> ValueError:
    shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
    return ValueError(
        f"{out} was not rebuilt, so that {why} (nothing was changed):\n"
        + "\n".join(f"  {out.name} {p}" if p.startswith("line") else f"  {p}" for p in shown)
        + f"\n{advice}"
    )


def read_previous(out: Path, manifest: dict, figures_name: str) -> PreviousReport | None:
    """Read the report at ``out`` before a rebuild replaces it; ``ValueError`` naming each line whose
    text the rebuild would drop.

    The report's own text is known from the figures folder's manifest, which keeps the lines it
    wrote outside the Discussions: any other line there is the student's. Without a manifest (a
    report built by an older labkit), only the lines under each "### Discussion" are checked."""
    if not out.is_file():
        return None
    raw = out.read_bytes()
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{out} is not UTF-8 text ({e}): save it as UTF-8 and build the report again, or choose another "
            "--out; nothing was changed"
        ) from None
    previous = PreviousReport(raw)
    if not text.strip():
        return previous
    bodies, problems = discussion_bodies(text)
    if not bodies and not problems:
        raise ValueError(
            f"{out} exists and is not a report that `labkit report` built (it has none of the Discussion markers "
            f"such as {discussion_markers(PARTS[0].key)[0]}): a rebuild would replace it. Choose another --out, "
            "or move it away; nothing was changed"
        )
    outside, starts = _outside_lines(text, bodies)
    marked = {match.group(1) for match in MARKER.finditer(text)}
    for part in PARTS:
        start, end = discussion_markers(part.key)
        heading = next((i for i, (_, line) in enumerate(outside) if _words(line) == _words(f"## {part.title}")), None)
        if part.key not in marked and heading is not None:
            below = next((i for i in range(heading + 1, len(outside)) if outside[i][1].startswith("## ")), len(outside))
            where = next((i for i in range(heading, below) if _words(outside[i][1]) == "### Discussion"), heading)
            problems.append(
                f"line {outside[where][0]}: the markers of the Discussion of {part_title(part.key)} are missing: put "
                f'{start} and {end} back, each on a line of its own, around your text under its "### Discussion"'
            )
    keys = {part.key for part in PARTS}
    for body in bodies:
        written = text[body.start : body.end].strip()
        if body.key not in keys and written not in ("", PLACEHOLDER):
            problems.append(
                f"line {line_number(text, body.start)}: the Discussion {part_title(body.key)} is not one of this "
                "report's: move its text into one of the Discussions"
            )
    if problems:
        raise refusal(out, problems, "Fix the markers, then build the report again.")

    foreign = _foreign_lines(outside, starts, bodies, manifest)
    kept = {}  # body index -> [the student's text above its start marker, and below its end marker]
    moved = set()
    for k, body in enumerate(bodies):
        if body.key not in keys:  # no Discussion to move it into: refused below, with the line
            continue
        before, after = _discussion_region(outside, starts[k])
        pieces = []
        for region in (before, after):
            chosen = [i for i in region if i in foreign]
            moved.update(chosen)
            pieces.append(
                "\n".join(foreign.get(i, outside[i][1]) for i in range(chosen[0], chosen[-1] + 1)).strip()
                if chosen
                else ""
            )
            if chosen:
                previous.notes.append(
                    f"{out.name} {_lines(outside[chosen[0]][0], outside[chosen[-1]][0])}: text written under the "
                    f"Discussion of {part_title(body.key)} but outside its markers is now inside them (check that it "
                    f"reads as you meant; the report before this rebuild is {backup_path(out).name})"
                )
        kept[k] = pieces
    stray = [i for i in sorted(foreign) if i not in moved]
    if stray:
        raise refusal(
            out,
            [f"line {outside[i][0]} (in {_section(outside, i)}): {foreign[i][:70]!r}" for i in stray],
            "These lines are not text the report wrote, and lie outside the Discussion markers: a rebuild would "
            "drop them. Move each between the markers of a Discussion (or delete it), then build the report again.",
        )
    for k, body in enumerate(bodies):
        if body.key not in keys:
            continue
        written = text[body.start : body.end].strip()
        pieces = [kept[k][0], "" if written == PLACEHOLDER else written, kept[k][1]]
        previous.discussions.setdefault(body.key, "\n\n".join(p for p in pieces if p))
    for i, (_, line) in enumerate(outside):
        link = re.fullmatch(r"!\[[^\]]*\]\((.+)\)", line.strip())
        if i not in foreign and link and link.group(1).startswith(f"{figures_name}/"):
            rel = link.group(1)[len(figures_name) + 1 :]
            if is_figure_name(rel):
                previous.linked.add(rel)
    return previous


def _foreign_lines(outside: list[tuple[int, str]], starts: list[int], bodies: list[_Body], manifest: dict) -> dict:
    """Index (among ``outside``) -> text, of each line outside the Discussions that the report did
    not write; on a marker's line, the text beside the marker."""
    foreign = {}
    present = {_words(line) for _, line in outside}
    generated = manifest.get("generated") if _words(manifest.get("built", "\0")) in present else None
    if generated is not None:  # the manifest belongs to this report: every line it did not write is foreign
        ours = [_words(line) for line in generated]
        theirs = [_words(line) for _, line in outside]
        matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
        for tag, _, _, j1, j2 in matcher.get_opcodes():
            if tag in ("insert", "replace"):
                foreign.update({j: outside[j][1] for j in range(j1, j2) if theirs[j]})
    else:  # only the lines under each "### Discussion" are known
        for k, s in enumerate(starts):
            questions = next((part.questions for part in PARTS if part.key == bodies[k].key), ())
            allowed = {"", "### Discussion", "Guiding questions:"} | {_words(f"- {q}") for q in questions}
            before, after = _discussion_region(outside, s)
            for i in before[:-1]:
                if _words(outside[i][1]) not in allowed:
                    foreign[i] = outside[i][1]
            for i in after[1:]:
                if _words(outside[i][1]):
                    foreign[i] = outside[i][1]
    for k, s in enumerate(starts):  # on a marker's line, only the text beside the marker is the student's
        for i, marker in zip((s, s + 1), discussion_markers(bodies[k].key)):
            beside = outside[i][1].replace(marker, "", 1).strip()
            if beside:
                foreign[i] = beside
            else:
                foreign.pop(i, None)
    return foreign


def _discussion_region(outside: list[tuple[int, str]], start: int) -> tuple[list[int], list[int]]:
    """The lines (indices among ``outside``) under a Discussion's "### Discussion" heading up to its
    start marker (included), and from its end marker (included) to the next part's "## " heading."""
    i = start - 1
    while i >= 0 and not outside[i][1].startswith(("## ", "### ")):
        i -= 1
    first = i + 1 if i >= 0 and _words(outside[i][1]) == "### Discussion" else start
    j = start + 2
    while j < len(outside) and not outside[j][1].startswith("## "):
        j += 1
    return list(range(first, start + 1)), list(range(start + 1, j))


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _section(outside: list[tuple[int, str]], index: int) -> str:
    """The "## " heading a line of the report lies under, to name where it is."""
    for _, line in reversed(outside[: index + 1]):
        if line.startswith("## "):
            return f'"{line[3:].strip()}"'
    return "the top of the report"

"""The README says what the box does now: the default session's spoken timeline is what the
headless simulator prints, "How it is built" names every module, and every spoken line is in
the project's own words (no sentence lifted from the reference article)."""

from __future__ import annotations

import re
from pathlib import Path

from device.apps.cli import main
from tests.tools import need

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ARTICLE = ROOT.parent / "shared" / "reference" / "hamstring-stretch-article.txt"  # beside the clone


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def test_the_readme_timeline_is_what_sim_headless_prints_now(capsys) -> None:
    section = _section("A session")
    lead = "The default session as the headless simulator prints it"
    block = section[section.index(lead):]
    timeline = block.split("```\n")[1].splitlines()
    assert main(["sim", "--headless", "--no-history"]) == 0
    printed = capsys.readouterr().out.splitlines()
    # the README leaves the 3-2-1 countdown beeps out, and says so
    assert "countdown beeps left out" in " ".join(block.split("```")[0].split())
    shown = [line for line in printed if "buzzer: count" not in line]
    assert timeline == shown, "regenerate the README timeline: sim --headless --no-history"


def _named_in_how_it_is_built() -> str:
    return _section("How it is built")


def test_how_it_is_built_names_every_module() -> None:
    """A new engineer finds any behaviour: each module (or its package folder) is named."""
    text = _named_in_how_it_is_built()
    missing = []
    for path in sorted([*ROOT.glob("device/**/*.py"), *ROOT.glob("drivers/**/*.py")]):
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and rel.parent.name in ("device", "drivers", "routines",
                                                             "store"):
            continue
        # the full path; a sub-package's folder (`device/addons/web/`); or, in a row that starts
        # with a sibling's full path, the bare file name (`device/store/sqlite.py`, `safe.py`)
        names = {str(rel), f"`{rel.name}`" if len(rel.parts) > 2 else str(rel)}
        if len(rel.parts) > 2:
            names.add(f"`{rel.parent}/`")
        if not any(n in text for n in names):
            missing.append(str(rel))
    assert not missing, f"not in README 'How it is built': {missing}"


def test_how_it_is_built_says_a_new_output_is_one_module_and_one_builder_line() -> None:
    text = " ".join(_named_in_how_it_is_built().split())
    assert "one new module" in text
    assert "one line in `build_box` in `device/apps/builder.py`" in text
    assert "one dataclass in `device/box/events.py`" in text


LEG_WORDS = {"right", "left", "opposite", "other"}
RUN = 8  # words in a row shared with the article that make a copied sentence


def _words(text: str) -> list[str]:
    """The words of ``text``, any word naming a leg (right, left, opposite) made the same."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))
    return ["LEG" if w in LEG_WORDS else w for w in words]


def test_no_spoken_line_copies_a_sentence_of_the_article() -> None:
    """No spoken line shares a run of eight words with the article (short anatomical phrases
    such as "the ball of your right foot" are six at most); the legs' names do not count as
    a difference, so "your opposite leg" reworded to "your left leg" is still a copy."""
    need(ARTICLE.exists(), f"the reference article {ARTICLE}", "a checkout beside shared/")
    article = " " + " ".join(_words(ARTICLE.read_text())) + " "
    routine = (ROOT / "device" / "core" / "routines" / "hamstring.toml").read_text()
    routine = routine.replace("{leg}", "right").replace("{other}", "left")
    copied = []
    for line in re.findall(r'"([^"\n]{8,})"', routine):
        w = _words(line)
        for i in range(len(w) - RUN + 1):
            if " " + " ".join(w[i:i + RUN]) + " " in article:
                copied.append(line)
                break
    assert not copied, copied


def test_every_event_kind_and_field_is_in_the_readme_schema() -> None:
    """The transcript schema in the README names every kind in the catalogue and each of
    its fields (a new event without its row fails here)."""
    from device.box.events import CATALOGUE

    rows = {}
    for line in _section("Event transcript (JSON lines)").splitlines():
        m = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    assert set(rows) == set(CATALOGUE)
    # every key the golden transcripts hold (the hold's strap figures included)
    import gzip
    import json

    for golden in sorted((ROOT / "tests" / "golden").glob("*.jsonl.gz")):
        for line in gzip.decompress(golden.read_bytes()).splitlines():
            event = json.loads(line)
            for key in set(event) - {"t", "kind"}:
                assert f"`{key}`" in rows[event["kind"]], (golden.name, event["kind"], key)

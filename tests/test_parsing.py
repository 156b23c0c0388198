"""rST and Markdown read as documents: passages from a real Sphinx docs sample read like prose."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.chunking import chunk_document
from bot.loaders import LoadedDocument, Skipped, load, walk
from bot.parsing import role_text
from bot.parsing.markdown import parse_markdown
from bot.parsing.rst import parse_rst

SAMPLE = Path(__file__).parent / "data" / "sphinx_sample"

# Markup that must never reach a passage read as prose (code blocks may show it on purpose).
MARKUP = {
    "directive": re.compile(r"^\s*\.\. [\w:.+-]+::", re.M),
    "role": re.compile(r":[\w:+.-]+:`"),
    "grid border": re.compile(r"^\s*\+[-=+]{3,}|^\s*={3,}(\s+={3,})*\s*$", re.M),
    "rst link": re.compile(r"`[^`]*<[^>]+>`__?"),
    "myst fence": re.compile(r"```\{|:::\{"),
    "template tag": re.compile(r"\{%|\{\{"),
    "markdown table": re.compile(r"^\s*\|.*\|\s*$", re.M),
}


@pytest.fixture(scope="module")
def sample(embedder):
    """Every sample file loaded as the indexer loads it, with its chunks and its code blocks."""
    out = {}
    for source in walk(SAMPLE).files:
        if source.rel == "PROVENANCE.md":  # about the sample, not part of it
            continue
        doc = load(source, source.path.read_bytes())
        if isinstance(doc, Skipped):
            out[source.rel] = doc
            continue
        chunks = chunk_document(doc.blocks, title=doc.title, count_tokens=embedder.count_tokens_many,
                                max_tokens=embedder.max_tokens, target_tokens=256, overlap_tokens=32)
        out[source.rel] = (doc, chunks)
    return out


def prose(doc: LoadedDocument, text: str) -> str:
    for block in doc.blocks:
        if block.code:
            text = text.replace(block.text, "")
    return text


def test_no_markup_survives_in_any_sample_passage(sample):
    checked = 0
    for rel, loaded in sample.items():
        if isinstance(loaded, Skipped):
            continue
        doc, chunks = loaded
        assert chunks, rel
        for chunk in chunks:
            assert re.search(r"[^\W_]", chunk.text), (rel, chunk.text)
            for name, pattern in MARKUP.items():
                found = pattern.search(prose(doc, chunk.text))
                assert not found, f"{name} {found.group(0)!r} in {rel}:{chunk.start_line}"
            checked += 1
    assert checked > 200


def test_templates_are_skipped_and_the_rest_indexed(sample):
    skipped = {rel: r.reason for rel, r in sample.items() if isinstance(r, Skipped)}
    assert set(skipped) == {"rtd/_templates/layout.html", "rtd/_templates/breadcrumbs.html"}
    assert all("template" in reason for reason in skipped.values())


def chunk_texts(sample, rel: str) -> list[str]:
    return [c.text for c in sample[rel][1]]


def test_table_cells_keep_their_header(sample):
    operators = "\n".join(chunk_texts(sample, "pip/topics/dependency-resolution.md"))
    assert "Operator: ==; Description: Exactly the specified version.; Example: ==3.1: only version 3.1." in operators
    badges = "\n".join(chunk_texts(sample, "rtd/badges.rst"))  # a grid table
    assert "Style: flat-square" in badges and "+---" not in badges


def test_links_and_roles_keep_their_readable_text(sample):
    badges = "\n".join(chunk_texts(sample, "rtd/badges.rst"))
    assert "You can see a badge in action in the Read the Docs README." in badges  # `Read the Docs README`_
    installation = "\n".join(chunk_texts(sample, "pip/installation.md"))
    assert "working in a virtual environment" in installation  # {ref}`virtual environment <pypug:...>`
    assert "from python.org" in installation  # [python.org](https://www.python.org)


def test_tabs_keep_their_label_and_content(sample):
    doc, chunks = sample["pip/topics/configuration.md"]
    unix = [c for c in chunks if "Unix: Global: In a \"pip\" subdirectory" in c.text]
    assert unix and unix[0].heading == "Configuration > Configuration Files > Location"


def test_include_inside_the_folder_is_read_and_outside_is_not(sample):
    organizations = chunk_texts(sample, "rtd/commercial/organizations.rst")
    assert "Note: This feature is only available on Read the Docs Business." in organizations[0]
    doc, chunks = sample["rtd/changelog.rst"]  # includes ../../CHANGELOG.rst, outside the folder
    assert doc.title == "Changelog" and chunks[0].heading == "Changelog > Previous releases"


def test_line_ranges_point_at_the_source(sample):
    for rel in ("rtd/builds.rst", "pip/installation.md", "rtd/glossary.rst"):
        doc, chunks = sample[rel]
        lines = (SAMPLE / rel).read_text().split("\n")
        for chunk in chunks:
            assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
            source = " ".join(lines[chunk.start_line - 1 : chunk.end_line]).lower()
            first = re.findall(r"[a-z]{5,}", prose(doc, chunk.text).lower().split(": ")[-1])[:1]
            assert not first or first[0] in source, (rel, chunk.start_line, first)


def rst(text: str, tmp_path: Path, name: str = "doc.rst"):
    path = tmp_path / name
    path.write_text(text)
    return parse_rst(text, path, tmp_path)


def test_unknown_rst_directives_and_roles_keep_content_drop_options_and_stay_quiet(tmp_path, capfd):
    parsed = rst(
        "Settings\n========\n\n"
        ".. config:setting:: build.os\n   :type: string\n   :required:\n\n"
        "   The operating system image, see :fancy-role:`the images <images-page>`.\n\n"
        "Use :kbd:`Ctrl+C` or :mystery:`quick-start-guide` and :doc:`Install <install>`.\n\n"
        ".. generated-option-list:: --no-cache-dir\n",
        tmp_path,
    )
    texts = [b.text for b in parsed.blocks]
    assert texts == [
        "build.os: The operating system image, see the images.",
        "Use Ctrl+C or quick-start-guide and Install.",
        "--no-cache-dir",
    ]
    assert parsed.blocks[0].trail == ("Settings",)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_short_underline_is_still_a_heading(tmp_path):
    parsed = rst("Install on Linux\n===\n\nRun the script.\n\nBehind a proxy\n--\n\nSet HTTPS_PROXY.\n", tmp_path)
    assert parsed.title == "Install on Linux"
    assert [b.trail for b in parsed.blocks] == [("Install on Linux",), ("Install on Linux", "Behind a proxy")]


def test_include_is_confined_to_the_knowledge_folder(tmp_path):
    folder = tmp_path / "kb"
    (folder / "shared").mkdir(parents=True)
    (folder / "shared" / "notice.rst").write_text("Only for business customers.\n")
    (tmp_path / "secret.rst").write_text("The root password is hunter2.\n")
    text = ("Page\n====\n\n.. include:: /shared/notice.rst\n\n.. include:: ../secret.rst\n\n"
            ".. include:: /etc/passwd\n\n.. literalinclude:: ../secret.rst\n\n.. include:: doc.rst\n\n"
            ".. csv-table:: Leak\n   :file: ../secret.rst\n\n.. raw:: html\n   :file: ../secret.rst\n\nEnd.\n")
    parsed = rst(text, folder)
    joined = "\n".join(b.text for b in parsed.blocks)
    assert "Only for business customers." in joined
    assert "hunter2" not in joined and "root:" not in joined
    assert joined.count("End.") <= 51  # a file including itself stops, it does not loop


def test_include_of_a_huge_file_or_a_fifo_is_left_out(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    with open(folder / "huge.rst", "wb") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 * 1024**3)
    os.mkfifo(folder / "pipe.rst")  # reading it would block forever
    parsed = rst("Page\n====\n\n.. include:: huge.rst\n\n.. include:: pipe.rst\n\nEnd.\n", folder)
    assert [b.text for b in parsed.blocks] == ["End."]


def test_myst_headings_inside_tab_fences_are_found():
    text = ("---\ntitle: Setup guide\nowner: docs-team\n---\n\n# Setup\n\n"
            "````{tab} Linux\n## Proxy settings\n\nExport `HTTPS_PROXY` first.\n\n"
            "```bash\nexport HTTPS_PROXY=x\n```\n````\n\n"
            ":::{note}\nRestart the shell.\n:::\n")
    parsed = parse_markdown(text)
    assert parsed.title == "Setup guide"
    assert all("docs-team" not in b.text for b in parsed.blocks)
    proxy = [b for b in parsed.blocks if b.trail == ("Setup", "Proxy settings")]
    assert [b.text for b in proxy] == ["Export HTTPS_PROXY first.", "export HTTPS_PROXY=x", "Note: Restart the shell."]
    assert proxy[0].start_line == 11 and proxy[1].code


def test_tab_labels_and_undefined_substitutions_read_as_words(tmp_path):
    parsed = rst(".. tabs::\n\n   .. tab:: |com_brand|\n\n      Builds run for 30 minutes on |com_brand|.\n", tmp_path)
    assert [b.text for b in parsed.blocks] == ["com brand: Builds run for 30 minutes on com brand."]


def test_roles_read_as_their_label_or_a_readable_target():
    assert role_text("doc", "Install <install>") == "Install"
    assert role_text("doc", "/guides/private-python-packages") == "private python packages"
    assert role_text("doc", "/config-file/index") == "config file"
    assert role_text("ref", "pypug:Creating and using Virtual Environments") == "Creating and using Virtual Environments"
    assert role_text("envvar", "READTHEDOCS_VERSION") == "READTHEDOCS_VERSION"  # code-like roles keep their text
    assert role_text("meth", "~requests.Session.get") == "get"
    assert role_text("guilabel", "&Save") == "Save"
    assert role_text("menuselection", "Admin --> Settings") == "Admin > Settings"

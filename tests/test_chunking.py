"""Chunking with the real tokenizer: limits, headings, line ranges, full coverage."""

from __future__ import annotations

import re

from bot.chunking import chunk_document, embedding_text
from bot.parsing import text_blocks
from bot.parsing.markdown import parse_markdown
from tests.conftest import KNOWLEDGE


def chunks_of(text: str, embedder, *, markdown: bool = True, title: str | None = "Doc", target: int = 256):
    return chunk_document(
        parse_markdown(text).blocks if markdown else text_blocks(text),
        title=title,
        count_tokens=embedder.count_tokens_many,
        max_tokens=embedder.max_tokens,
        target_tokens=target,
        overlap_tokens=32,
    )


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def test_every_chunk_fits_the_model_and_carries_heading_trail(embedder):
    text = (KNOWLEDGE / "hr" / "expenses.md").read_text()
    title = parse_markdown(text).title
    chunks = chunks_of(text, embedder, title=title)
    assert len(chunks) > 10
    for chunk in chunks:
        assert embedder.count_tokens(embedding_text(title, chunk.heading, chunk.text)) <= embedder.max_tokens
    taxi = [c for c in chunks if "taxi" in (c.heading or "").lower()]
    assert taxi and all(" > " in c.heading for c in taxi)


def test_line_ranges_point_at_the_text(embedder):
    text = (KNOWLEDGE / "engineering" / "on-call.md").read_text()
    lines = text.split("\n")
    for chunk in chunks_of(text, embedder):
        source = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        assert set(words(chunk.text)) <= set(words(source)), (chunk.start_line, chunk.end_line)


def test_very_long_document_is_fully_covered(embedder):
    sentences = [f"Fact number {i} says the shelf {i} holds {i * 7} blue folders." for i in range(3000)]
    text = "# Inventory\n\n" + "\n\n".join(" ".join(sentences[i : i + 10]) for i in range(0, 3000, 10))
    chunks = chunks_of(text, embedder)
    covered = set()
    for chunk in chunks:
        assert embedder.count_tokens(embedding_text("Doc", chunk.heading, chunk.text)) <= embedder.max_tokens
        covered.update(int(n) for n in re.findall(r"Fact number (\d+)", chunk.text))
    assert covered == set(range(3000))
    assert chunks[-1].end_line == len(text.split("\n"))


def test_giant_unbroken_token_run_is_split_not_dropped(embedder):
    blob = "x9" * 20_000  # one 40k-character "word", like base64 in a runbook
    chunks = chunks_of(f"# Key\n\n{blob}", embedder)
    assert "".join(c.text for c in chunks).replace("\n", "").replace(" ", "") == blob
    assert all(embedder.count_tokens(embedding_text("Doc", c.heading, c.text)) <= 256 for c in chunks)


def test_consecutive_chunks_of_a_section_overlap(embedder):
    paragraph = " ".join(f"Sentence {i} explains step {i} of the rollback in plain words." for i in range(60))
    chunks = chunks_of(f"# Rollback\n\n{paragraph}", embedder)
    assert len(chunks) >= 3
    for first, second in zip(chunks, chunks[1:]):
        assert set(re.split(r"(?<=\.)\s+", first.text)) & set(re.split(r"(?<=\.)\s+", second.text))


def test_plain_text_packs_paragraphs(embedder):
    text = "Title line\n\nFirst paragraph here.\n\nSecond paragraph here.\n"
    chunks = chunks_of(text, embedder, markdown=False, title="Title line")
    assert len(chunks) == 1
    assert chunks[0].heading is None
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 5) or chunks[0].start_line == 1


def test_code_fence_headings_are_not_headings(embedder):
    text = "# Real\n\n```bash\n# not a heading\necho hi\n```\n\n## Next\n\nMore."
    chunks = chunks_of(text, embedder, title=None)
    assert [c.heading for c in chunks] == ["Real", "Real > Next"]
    assert "# not a heading" in chunks[0].text


def test_embedding_text_does_not_repeat_the_title():
    assert embedding_text("Expenses", "Expenses > Taxis", "Body") == "Expenses > Taxis\nBody"
    assert embedding_text("Guide", "Taxis", "Body") == "Guide > Taxis\nBody"
    assert embedding_text(None, None, "Body") == "Body"


def test_markdown_table_split_across_chunks_keeps_its_header_in_every_row(embedder):
    rows = "\n".join(f"| Region {i} | {i * 3} days | Office manager number {i} |" for i in range(60))
    text = f"# Leave\n\n## Allowance\n\n| Region | Annual leave | Contact |\n|---|---|---|\n{rows}\n"
    chunks = chunks_of(text, embedder, target=128)
    assert len(chunks) >= 3
    lines = text.split("\n")
    seen = set()
    for chunk in chunks:
        assert chunk.heading == "Leave > Allowance"
        for row in chunk.text.split("\n"):
            match = re.fullmatch(r"Region: Region (\d+); Annual leave: (\d+) days; Contact: Office manager number (\d+)",
                                 row)
            assert match, row  # whole rows only, each naming its columns
            assert int(match.group(2)) == int(match.group(1)) * 3
            seen.add(int(match.group(1)))
        source = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        assert "| Region" in source
    assert seen == set(range(60))


def test_chunks_without_a_word_are_dropped(embedder):
    text = "# Borders\n\n+-------+\n\n----\n\n***\n\n| --- |\n\nReal words here.\n"
    chunks = chunks_of(text, embedder)
    assert [c.text for c in chunks] == ["Real words here."]

"""Loading files: every supported type, and bad files skipped with a reason, never a crash."""

from __future__ import annotations

import io
import os

from pypdf import PdfReader, PdfWriter

from bot.indexer import index_folder
from bot.loaders import LoadedDocument, Skipped, SourceFile, html_to_markdown, load, walk
from bot.search import search
from bot.store import open_store
from tests.conftest import make_settings


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a text layer, offsets computed so any reader accepts it."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def source(tmp_path, name: str, data: bytes) -> tuple[SourceFile, bytes]:
    path = tmp_path / name
    path.write_bytes(data)
    return SourceFile(path, name, len(data), path.stat().st_mtime), data


def test_pdf_text_layer_is_read(tmp_path):
    doc = load(*source(tmp_path, "policy.pdf", minimal_pdf("Badges are collected at the front desk.")))
    assert isinstance(doc, LoadedDocument)
    assert "Badges are collected" in doc.text


def test_corrupt_pdf_is_skipped_with_reason(tmp_path):
    damaged = minimal_pdf("hello")[:60] + b"\x00garbage" * 20
    result = load(*source(tmp_path, "broken.pdf", damaged))
    assert isinstance(result, Skipped)
    assert "PDF" in result.reason


def test_latin1_text_is_decoded_with_a_note(tmp_path):
    text = "Le café du bureau ouvre à 8 h. Les crêpes sont servies le vendredi, près de la fenêtre."
    doc = load(*source(tmp_path, "cafe.txt", text.encode("latin-1")))
    assert isinstance(doc, LoadedDocument)
    assert "café" in doc.text and "crêpes" in doc.text
    assert doc.note and "decoded as" in doc.note


def test_binary_named_markdown_is_skipped(tmp_path):
    result = load(*source(tmp_path, "image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(512)))
    assert isinstance(result, Skipped) and "binary" in result.reason


def test_empty_and_whitespace_files_are_skipped(tmp_path):
    assert load(*source(tmp_path, "empty.md", b"")) == Skipped("empty file")
    assert load(*source(tmp_path, "blank.txt", b"  \n\n\t ")) == Skipped("empty file")


def test_html_keeps_visible_text_and_headings_only():
    html = """<html><head><title>Office guide</title><style>body{color:red}</style>
    <script>var secret = "do not index";</script></head>
    <body><h1>Getting in</h1><p>The door code is 4471 &amp; changes monthly.</p>
    <ul><li>Visitors sign in</li><li>Badges at reception</li></ul><noscript>enable js</noscript></body></html>"""
    text, title = html_to_markdown(html)
    assert title == "Office guide"
    assert "# Getting in" in text
    assert "door code is 4471 & changes" in text
    assert "- Visitors sign in" in text
    assert "secret" not in text and "color:red" not in text and "enable js" not in text


def test_rst_titles_become_heading_trails_with_source_lines(tmp_path):
    rst = "Failover\n========\n\nIntro text.\n\nSteps\n-----\n\nDo this.\n"
    doc = load(*source(tmp_path, "failover.rst", rst.encode()))
    assert isinstance(doc, LoadedDocument) and doc.title == "Failover"
    assert [(b.text, b.trail, b.start_line) for b in doc.blocks] == [
        ("Intro text.", ("Failover",), 4),
        ("Do this.", ("Failover", "Steps"), 9),
    ]


def test_html_templates_are_skipped_with_a_reason(tmp_path):
    jinja = b"{% extends 'base.html' %}\n{% block body %}<p>Hello {{ user.name }}</p>{% endblock %}"
    result = load(*source(tmp_path, "layout.html", jinja))
    assert isinstance(result, Skipped) and "template" in result.reason
    (tmp_path / "_templates").mkdir()
    plain = b"<html><body><p>No tags but lives in _templates.</p></body></html>"
    result = load(*source(tmp_path, "_templates/page.html", plain))
    assert isinstance(result, Skipped) and "template" in result.reason
    page = load(*source(tmp_path, "page.html", plain))
    assert isinstance(page, LoadedDocument) and "No tags" in page.text


def test_walk_ignores_hidden_unsupported_and_escaping_symlinks(tmp_path):
    folder = tmp_path / "kb"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "config.md").write_text("# hidden")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "notes.md").write_text("# Notes\n\nReal content.")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    outside = tmp_path / "outside.md"
    outside.write_text("# Secret\n\nOutside the knowledge folder.")
    (folder / "link.md").symlink_to(outside)
    (folder / "linkdir").symlink_to(tmp_path)
    scan = walk(folder)
    assert [f.rel for f in scan.files] == ["notes.md"]
    assert scan.unsupported == {".jpg": 1}
    assert scan.skipped == {
        "link.md": "symlink to outside the knowledge folder (not followed)",
        "linkdir": "symlink to outside the knowledge folder (not followed)",
    }


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path, embedder):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "good.md").write_text("# Parking\n\nStaff park on level -2 of the Harbour garage; spaces 40 to 80.")
    (folder / "empty.md").write_text("")
    (folder / "spaces.txt").write_text("   \n\n  ")
    (folder / "binary.md").write_bytes(b"\x00\x01\x02\x03" * 100)
    (folder / "latin.txt").write_bytes("Réunion générale le lundi à 9 h, salle Épicéa.".encode("latin-1"))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ntrailer garbage")
    (folder / "doc.pdf").write_bytes(minimal_pdf("The printer on floor 3 is called Kestrel."))
    (folder / "data.xlsx").write_bytes(b"PK\x03\x04")
    settings = make_settings(tmp_path, knowledge_dir=folder)
    with open_store(settings.db_path) as store:
        report = index_folder(store, embedder, settings)
        assert sorted(report.added) == ["doc.pdf", "good.md", "latin.txt"]
        assert set(report.skipped) == {"empty.md", "spaces.txt", "binary.md", "broken.pdf"}
        assert all(reason for reason in report.skipped.values())
        assert report.unsupported == {".xlsx": 1}
        assert "latin.txt" in report.notes
        assert search(store, embedder, "where do staff park", k=1).hits[0].path == "good.md"
        assert search(store, embedder, "name of the third floor printer", k=1).hits[0].path == "doc.pdf"


def encrypted_pdf(text: str, *, user_password: str, algorithm: str) -> bytes:
    """A real encrypted PDF, as pypdf writes it (an empty user password: anyone may open it)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(minimal_pdf(text))))
    writer.encrypt(user_password=user_password, owner_password="owner-only-secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdfs_locked_with_only_an_owner_password_are_read(tmp_path, embedder):
    folder = tmp_path / "kb"
    folder.mkdir()
    facts = {
        "rc4.pdf": ("RC4-128", "The fire assembly point is the fountain in Quay Square."),
        "aes128.pdf": ("AES-128", "Visitor wifi is called Lighthouse-Guest and changes each Monday."),
        "aes256.pdf": ("AES-256", "The server room door code is rotated by facilities every quarter."),
    }
    for name, (algorithm, text) in facts.items():
        (folder / name).write_bytes(encrypted_pdf(text, user_password="", algorithm=algorithm))
    (folder / "locked.pdf").write_bytes(
        encrypted_pdf("Salaries are reviewed in March.", user_password="s3cret", algorithm="AES-128")
    )
    settings = make_settings(tmp_path, knowledge_dir=folder)
    with open_store(settings.db_path) as store:
        report = index_folder(store, embedder, settings)
        assert sorted(report.added) == sorted(facts)
        assert report.skipped == {"locked.pdf": "encrypted PDF (needs a password)"}
        assert search(store, embedder, "where do we gather in a fire alarm", k=1).hits[0].path == "rc4.pdf"
        assert search(store, embedder, "guest wifi network name", k=1).hits[0].path == "aes128.pdf"
        assert search(store, embedder, "server room door code", k=1).hits[0].path == "aes256.pdf"

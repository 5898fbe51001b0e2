"""Our SWORD zText reader (data/sword.py): a module written here with the documented layout — block
index, verse index with module/testament/book/chapter heading slots, zlib blocks — reads back verse
by verse; truncated or corrupt files are one-line DataErrors naming the file; and (when Debian's
sword-text-kjv / sword-text-sparv are installed) the KJV's known verses and counts."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data.sword import (
    KJV_BOOKS,
    OLD_TESTAMENT_BOOKS,
    bible_verses,
    chapter_verses,
    find_module,
    osis_to_text,
    read_conf,
    read_ztext,
    verse_index_layout,
)

INSTALLED = Path("/usr/share/sword/mods.d/engKJV2006eb.conf").exists()


def verse_markup(book: str, chapter: int, verse: int) -> str:
    # every verse distinct, wrapped in the markup the reader must strip
    return (f'<w lemma="strong:H{verse:04d}">{book}</w> {chapter}:{verse} <transChange type="added">says'
            f'</transChange>.<note placement="foot">a note {verse}</note>')


def write_module(root: Path, *, block_per_chapter: bool = False, testaments=("ot", "nt"), conf_extra: str = "",
                 text=verse_markup) -> Path:
    """A zText module under root/mods.d + root/modules/… in the layout SWORD documents (KJV versification)."""
    data = root / "modules" / "texts" / "ztext" / "test"
    data.mkdir(parents=True)
    (root / "mods.d").mkdir()
    (root / "mods.d" / "test.conf").write_text(
        f"[Test]\nDataPath=./modules/texts/ztext/test/\nModDrv=zText\nEncoding=UTF-8\nCompressType=ZIP\n"
        f"SourceType=OSIS\nBlockType={'CHAPTER' if block_per_chapter else 'BOOK'}\n{conf_extra}")
    for testament in testaments:
        blocks, current, index = [], bytearray(), bytearray()

        def close_block():
            nonlocal current
            if current:
                blocks.append(bytes(current))
                current = bytearray()

        layout = verse_index_layout(testament)
        for slot, reference in enumerate(layout):
            if reference is None:     # headings: some with markup, the module heading empty
                content = b"" if slot == 0 else b'<milestone type="x-heading"/>'
                if block_per_chapter or slot > 1 and layout[slot + 1] is None:   # a book's heading
                    close_block()
            else:
                content = text(*reference).encode()
            index += struct.pack("<IIH", len(blocks), len(current), len(content))
            current += content
        close_block()
        compressed = [zlib.compress(block) for block in blocks]
        offsets = [sum(len(c) for c in compressed[:i]) for i in range(len(compressed))]
        (data / f"{testament}.bzs").write_bytes(b"".join(
            struct.pack("<III", offset, len(c), len(b)) for offset, c, b in zip(offsets, compressed, blocks)))
        (data / f"{testament}.bzv").write_bytes(bytes(index))
        (data / f"{testament}.bzz").write_bytes(b"".join(compressed))
    return data


def test_canon_counts_are_the_kjv_versification():
    assert len(KJV_BOOKS) == 66 and OLD_TESTAMENT_BOOKS == 39
    chapters = [len(chapter_verses(book)) for book, _, _ in KJV_BOOKS]
    verses = [sum(chapter_verses(book)) for book, _, _ in KJV_BOOKS]
    assert sum(chapters[:39]) == 929 and sum(chapters[39:]) == 260 and sum(chapters) == 1189
    assert sum(verses[:39]) == 23145 and sum(verses[39:]) == 7957
    assert chapter_verses("Ps")[118] == 176 and chapter_verses("John")[10] == 57 and chapter_verses("Rev")[-1] == 21
    # the verse index's size follows: headings for module, testament, every book and chapter
    assert len(verse_index_layout("ot")) == 2 + 39 + 929 + 23145
    assert len(verse_index_layout("nt")) == 2 + 27 + 260 + 7957
    assert verse_index_layout("ot")[:5] == [None, None, None, None, ("Gen", 1, 1)]


@pytest.mark.parametrize("block_per_chapter", [False, True])
def test_a_written_module_reads_back_every_verse(tmp_path, block_per_chapter):
    write_module(tmp_path, block_per_chapter=block_per_chapter)
    directory, conf = find_module("test", data_dir=tmp_path)
    verses = list(read_ztext(directory, conf))
    assert len(verses) == 31102
    assert verses[0] == ("Gen", 1, 1, "Gen 1:1 says.")
    assert verses[-1] == ("Rev", 22, 21, "Rev 22:21 says.")
    assert all(text == f"{book} {chapter}:{verse} says." for book, chapter, verse, text in verses)


def test_bible_verses_maps_references_and_a_testament_may_be_missing(tmp_path):
    write_module(tmp_path, testaments=("nt",))
    verses = bible_verses("TEST", data_dir=tmp_path)      # names are case-insensitive
    assert len(verses) == 7957 and verses["John", 11, 35] == "John 11:35 says."
    assert ("Gen", 1, 1) not in verses


def test_empty_verses_are_left_out(tmp_path):
    write_module(tmp_path, testaments=("ot",), text=lambda b, c, v: "" if (b, c, v) == ("Gen", 1, 2) else f"{b}{c}.{v}")
    verses = bible_verses("test", data_dir=tmp_path)
    assert ("Gen", 1, 2) not in verses and verses["Gen", 1, 3] == "Gen1.3" and len(verses) == 23144


def test_osis_markup_to_plain_text():
    assert osis_to_text('In the <w lemma="strong:H7225">beginning</w> God.<note placement="foot">'
                        '<reference>1.1</reference>Heb. x</note> ') == "In the beginning God."
    assert osis_to_text('<title canonical="true" type="psalm">A Psalm of David.</title> <l sID="x"/>'
                        "<divineName>LORD</divineName>, how") == "A Psalm of David. LORD, how"
    assert osis_to_text("<title><foreign>א ALEPH.</foreign></title> Blessed ¶ are") == "Blessed are"
    assert osis_to_text(r"Because the \nd LORD</divineName> hath &amp; sworn") == "Because the LORD hath & sworn"


def test_conf_sections_and_continued_values(tmp_path):
    path = tmp_path / "x.conf"
    path.write_text("# comment\n[Mod]\nDataPath=./a/\nAbout=one\\\ntwo\nAbout=ignored\n")
    conf = read_conf(path)
    assert conf["Name"] == "Mod" and conf["DataPath"] == "./a/" and conf["About"] == "one\ntwo"
    path.write_text("DataPath=./a/\n")
    with pytest.raises(DataError, match="x.conf"):
        read_conf(path)


@pytest.mark.parametrize("damage, file", [
    (lambda d: (d / "ot.bzz").write_bytes((d / "ot.bzz").read_bytes()[:-40]), "ot.bzz"),
    (lambda d: (d / "ot.bzv").write_bytes((d / "ot.bzv").read_bytes()[:-3]), "ot.bzv"),
    (lambda d: (d / "ot.bzv").write_bytes((d / "ot.bzv").read_bytes()[:-10]), "ot.bzv"),
    (lambda d: (d / "ot.bzs").write_bytes((d / "ot.bzs").read_bytes()[:-1]), "ot.bzs"),
    (lambda d: (d / "ot.bzz").write_bytes(b"\0" * 10 + (d / "ot.bzz").read_bytes()[10:]), "ot.bzz"),
    (lambda d: (d / "ot.bzv").write_bytes(struct.pack("<IIH", 0, 10**6, 5) + (d / "ot.bzv").read_bytes()[10:]),
     "ot.bzv"),
    (lambda d: (d / "ot.bzv").write_bytes(struct.pack("<IIH", 999, 0, 5) + (d / "ot.bzv").read_bytes()[10:]),
     "ot.bzv"),
])
def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path, damage, file):
    directory = write_module(tmp_path, testaments=("ot",))
    damage(directory)
    with pytest.raises(DataError, match=file) as caught:
        bible_verses("test", data_dir=tmp_path)
    assert "\n" not in str(caught.value)


def test_unsupported_modules_and_missing_ones_are_refused(tmp_path):
    write_module(tmp_path, testaments=("ot",), conf_extra="Versification=Catholic\n")
    with pytest.raises(DataError, match="Versification=Catholic"):
        bible_verses("test", data_dir=tmp_path)
    with pytest.raises(UsageError, match="nonexistent is not installed"):
        find_module("nonexistent", data_dir=tmp_path)


@pytest.mark.skipif(not INSTALLED, reason="Debian's sword-text-kjv is not installed")
def test_the_installed_kjv():
    verses = bible_verses("engKJV2006eb")
    assert len(verses) == 31102
    assert verses["Gen", 1, 1] == "In the beginning God created the heaven and the earth."
    assert verses["John", 11, 35] == "Jesus wept."
    assert verses["Rev", 22, 21] == "The grace of our Lord Jesus Christ be with you all. Amen."
    assert list(verses)[-1] == ("Rev", 22, 21)
    assert not any("<" in text or "lemma" in text or "strong:H" in text for text in verses.values())


@pytest.mark.skipif(not Path("/usr/share/sword/mods.d/spaRV1909eb.conf").exists(),
                    reason="Debian's sword-text-sparv is not installed")
def test_the_installed_reina_valera_aligns_with_the_kjv():
    verses = bible_verses("spaRV1909eb")
    assert verses["John", 11, 35] == "Y lloró Jesús."
    assert len(verses) > 31000 and set(verses) <= set(bible_verses("engKJV2006eb"))


def test_a_module_without_an_encoding_line_is_latin_1(tmp_path):
    """SWORD's default Encoding is Latin-1: without an Encoding line a verse's bytes are read as Latin-1."""
    write_module(tmp_path, testaments=("nt",), text=lambda b, c, v: f"Señor {b}{c}.{v}")
    conf = tmp_path / "mods.d" / "test.conf"
    conf.write_text(conf.read_text().replace("Encoding=UTF-8\n", ""))
    verses = bible_verses("test", data_dir=tmp_path)
    assert verses["John", 11, 35] == "Señor John11.35".encode("utf-8").decode("latin-1")


def test_a_module_under_the_data_directory_shadows_an_installed_one(tmp_path, monkeypatch):
    """Modules are looked for in --data-dir before SWORD_PATH, ~/.sword and the system's directory: the first
    module of a name found wins."""
    import visionzoo.data.sword as sword
    for root, testament in ((tmp_path / "mine", "nt"), (tmp_path / "path", "ot"), (tmp_path / "system", "ot")):
        write_module(root, testaments=(testament,))
    monkeypatch.setattr(sword, "SYSTEM_SWORD_DIRS", (str(tmp_path / "system"),))
    monkeypatch.setenv("SWORD_PATH", str(tmp_path / "path"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))      # no ~/.sword of the user's
    assert find_module("test", data_dir=tmp_path / "mine")[0] == (tmp_path / "mine" / "modules" / "texts" / "ztext"
                                                                 / "test").resolve()
    assert find_module("test", data_dir=tmp_path / "elsewhere")[0].is_relative_to(tmp_path / "path")
    monkeypatch.delenv("SWORD_PATH")
    assert find_module("test", data_dir=tmp_path / "elsewhere")[0].is_relative_to(tmp_path / "system")

"""Our own reader of SWORD's compressed Bible modules (the zText driver), such as Debian's
`sword-text-kjv` (King James Version, 1769 text) and `sword-text-sparv` (Reina-Valera 1909).

The CrossWire SWORD Project's module format ("Module Development", wiki.crosswire.org): a module
is a `.conf` file in `mods.d/` (its `[Name]` section, `DataPath`, `ModDrv=zText`, `CompressType`,
`Encoding`, `SourceType=OSIS`, `Versification`) and, for each testament present, three files in
its data directory:

- `ot.bzs`/`nt.bzs`, the block index: per compressed block three little-endian u32 — its offset
  in the `.bzz` file, its compressed size and its uncompressed size;
- `ot.bzv`/`nt.bzv`, the verse index: per entry a u32 block number, a u32 offset into the
  uncompressed block and a u16 length (10 bytes);
- `ot.bzz`/`nt.bzz`, the blocks, compressed as `CompressType` says (ZIP = zlib; BlockType says how
  much text one block holds, BOOK or CHAPTER, which a reader need not know).

The verse index of a testament follows the versification (here KJV's, `KJV_BOOKS`): entry 0 is the
module heading, entry 1 the testament heading, then for every book its heading followed, for every
chapter, by the chapter heading and one entry per verse. With KJV's 23 145 Old Testament verses in
929 chapters of 39 books this gives 2 + 39 + 929 + 23 145 = 24 115 entries, the size of Debian's
`ot.bzv` / 10; the New Testament's 7 957 verses give 8 246. Headings hold markup only (book titles,
`<chapter osisID="Gen.1"/>` milestones) and are skipped.

Verse text is OSIS XML; `osis_to_text` keeps the words of the verse and drops the rest: tags,
Strong's numbers (attributes of `<w>`), notes with their content, non-canonical titles (Psalm
119's "ALEPH." section heads) and the paragraph sign ¶; canonical titles (the Psalms'
superscriptions) are text of the verse and stay. A few verses of the KJV module carry USFM
character markers the importer left (`\\nd LORD`), which are dropped too.
"""
from __future__ import annotations

import bz2
import html
import lzma
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import DataError, UsageError

# The KJV versification: (OSIS name, English name, verses of each chapter), in canonical order.
# 39 Old Testament books (929 chapters, 23 145 verses), 27 New Testament (260, 7 957).
KJV_BOOKS = (
    ("Gen", "Genesis",
     "31 25 24 26 32 22 24 22 29 32 32 20 18 24 21 16 27 33 38 18 34 24 20 67 34 35 46 22 35 43 55 32 20 "
     "31 29 43 36 30 23 23 57 38 34 34 28 34 31 22 33 26"),
    ("Exod", "Exodus",
     "22 25 22 31 23 30 25 32 35 29 10 51 22 31 27 36 16 27 25 26 36 31 33 18 40 37 21 43 46 38 18 35 23 "
     "35 35 38 29 31 43 38"),
    ("Lev", "Leviticus", "17 16 17 35 19 30 38 36 24 20 47 8 59 57 33 34 16 30 37 27 24 33 44 23 55 46 34"),
    ("Num", "Numbers",
     "54 34 51 49 31 27 89 26 23 36 35 16 33 45 41 50 13 32 22 29 35 41 30 25 18 65 23 31 40 16 54 42 56 "
     "29 34 13"),
    ("Deut", "Deuteronomy",
     "46 37 29 49 33 25 26 20 29 22 32 32 18 29 23 22 20 22 21 20 23 30 25 22 19 19 26 68 29 20 30 52 29 "
     "12"),
    ("Josh", "Joshua", "18 24 17 24 15 27 26 35 27 43 23 24 33 15 63 10 18 28 51 9 45 34 16 33"),
    ("Judg", "Judges", "36 23 31 24 31 40 25 35 57 18 40 15 25 20 20 31 13 31 30 48 25"),
    ("Ruth", "Ruth", "22 23 18 22"),
    ("1Sam", "1 Samuel",
     "28 36 21 22 12 21 17 22 27 27 15 25 23 52 35 23 58 30 24 42 15 23 29 22 44 25 12 25 11 31 13"),
    ("2Sam", "2 Samuel", "27 32 39 12 25 23 29 18 13 19 27 31 39 33 37 23 29 33 43 26 22 51 39 25"),
    ("1Kgs", "1 Kings", "53 46 28 34 18 38 51 66 28 29 43 33 34 31 34 34 24 46 21 43 29 53"),
    ("2Kgs", "2 Kings", "18 25 27 44 27 33 20 29 37 36 21 21 25 29 38 20 41 37 37 21 26 20 37 20 30"),
    ("1Chr", "1 Chronicles", "54 55 24 43 26 81 40 40 44 14 47 40 14 17 29 43 27 17 19 8 30 19 32 31 31 32 34 21 30"),
    ("2Chr", "2 Chronicles",
     "17 18 17 22 14 42 22 18 31 19 23 16 22 15 19 14 19 34 11 37 20 12 21 27 28 23 9 27 36 27 21 33 25 33 "
     "27 23"),
    ("Ezra", "Ezra", "11 70 13 24 17 22 28 36 15 44"),
    ("Neh", "Nehemiah", "11 20 32 23 19 19 73 18 38 39 36 47 31"),
    ("Esth", "Esther", "22 23 15 17 14 14 10 17 32 3"),
    ("Job", "Job",
     "22 13 26 21 27 30 21 22 35 22 20 25 28 22 35 22 16 21 29 29 34 30 17 25 6 14 23 28 25 31 40 22 33 37 "
     "16 33 24 41 30 24 34 17"),
    ("Ps", "Psalms",
     "6 12 8 8 12 10 17 9 20 18 7 8 6 7 5 11 15 50 14 9 13 31 6 10 22 12 14 9 11 12 24 11 22 22 28 12 40 "
     "22 13 17 13 11 5 26 17 11 9 14 20 23 19 9 6 7 23 13 11 11 17 12 8 12 11 10 13 20 7 35 36 5 24 20 28 "
     "23 10 12 20 72 13 19 16 8 18 12 13 17 7 18 52 17 16 15 5 23 11 13 12 9 9 5 8 28 22 35 45 48 43 13 31 "
     "7 10 10 9 8 18 19 2 29 176 7 8 9 4 8 5 6 5 6 8 8 3 18 3 3 21 26 9 8 24 13 10 7 12 15 21 10 20 14 9 6"),
    ("Prov", "Proverbs",
     "33 22 35 27 23 35 27 36 18 32 31 28 25 35 33 33 28 24 29 30 31 29 35 34 28 28 27 28 27 33 31"),
    ("Eccl", "Ecclesiastes", "18 26 22 16 20 12 29 17 18 20 10 14"),
    ("Song", "Song of Solomon", "17 17 11 16 16 13 13 14"),
    ("Isa", "Isaiah",
     "31 22 26 6 30 13 25 22 21 34 16 6 22 32 9 14 14 7 25 6 17 25 18 23 12 21 13 29 24 33 9 20 24 17 10 "
     "22 38 22 8 31 29 25 28 28 25 13 15 22 26 11 23 15 12 17 13 12 21 14 21 22 11 12 19 12 25 24"),
    ("Jer", "Jeremiah",
     "19 37 25 31 31 30 34 22 26 25 23 17 27 22 21 21 27 23 15 18 14 30 40 10 38 24 22 17 32 24 40 44 26 "
     "22 19 32 21 28 18 16 18 22 13 30 5 28 7 47 39 46 64 34"),
    ("Lam", "Lamentations", "22 22 66 22 22"),
    ("Ezek", "Ezekiel",
     "28 10 27 17 17 14 27 18 11 22 25 28 23 23 8 63 24 32 14 49 32 31 49 27 17 21 36 26 21 26 18 32 33 31 "
     "15 38 28 23 29 49 26 20 27 31 25 24 23 35"),
    ("Dan", "Daniel", "21 49 30 37 31 28 28 27 27 21 45 13"),
    ("Hos", "Hosea", "11 23 5 19 15 11 16 14 17 15 12 14 16 9"),
    ("Joel", "Joel", "20 32 21"),
    ("Amos", "Amos", "15 16 15 13 27 14 17 14 15"),
    ("Obad", "Obadiah", "21"),
    ("Jonah", "Jonah", "17 10 10 11"),
    ("Mic", "Micah", "16 13 12 13 15 16 20"),
    ("Nah", "Nahum", "15 13 19"),
    ("Hab", "Habakkuk", "17 20 19"),
    ("Zeph", "Zephaniah", "18 15 20"),
    ("Hag", "Haggai", "15 23"),
    ("Zech", "Zechariah", "21 13 10 14 11 15 14 23 17 12 17 14 9 21"),
    ("Mal", "Malachi", "14 17 18 6"),
    ("Matt", "Matthew", "25 23 17 25 48 34 29 34 38 42 30 50 58 36 39 28 27 35 30 34 46 46 39 51 46 75 66 20"),
    ("Mark", "Mark", "45 28 35 41 43 56 37 38 50 52 33 44 37 72 47 20"),
    ("Luke", "Luke", "80 52 38 44 39 49 50 56 62 42 54 59 35 35 32 31 37 43 48 47 38 71 56 53"),
    ("John", "John", "51 25 36 54 47 71 53 59 41 42 57 50 38 31 27 33 26 40 42 31 25"),
    ("Acts", "Acts", "26 47 26 37 42 15 60 40 43 48 30 25 52 28 41 40 34 28 41 38 40 30 35 27 27 32 44 31"),
    ("Rom", "Romans", "32 29 31 25 21 23 25 39 33 21 36 21 14 23 33 27"),
    ("1Cor", "1 Corinthians", "31 16 23 21 13 20 40 13 27 33 34 31 13 40 58 24"),
    ("2Cor", "2 Corinthians", "24 17 18 18 21 18 16 24 15 18 33 21 14"),
    ("Gal", "Galatians", "24 21 29 31 26 18"),
    ("Eph", "Ephesians", "23 22 21 32 33 24"),
    ("Phil", "Philippians", "30 30 21 23"),
    ("Col", "Colossians", "29 23 25 18"),
    ("1Thess", "1 Thessalonians", "10 20 13 18 28"),
    ("2Thess", "2 Thessalonians", "12 17 18"),
    ("1Tim", "1 Timothy", "20 15 16 16 25 21"),
    ("2Tim", "2 Timothy", "18 26 17 22"),
    ("Titus", "Titus", "16 15 15"),
    ("Phlm", "Philemon", "25"),
    ("Heb", "Hebrews", "14 18 19 16 14 20 28 13 28 39 40 29 25"),
    ("Jas", "James", "27 26 18 17 20"),
    ("1Pet", "1 Peter", "25 25 22 19 14"),
    ("2Pet", "2 Peter", "21 22 18"),
    ("1John", "1 John", "10 29 24 21 21"),
    ("2John", "2 John", "13"),
    ("3John", "3 John", "14"),
    ("Jude", "Jude", "25"),
    ("Rev", "Revelation", "20 29 22 11 14 17 17 13 21 11 19 17 18 20 8 21 18 24 21 15 27 21"),
)
OLD_TESTAMENT_BOOKS = 39
BOOK_NAMES = {osis: name for osis, name, _ in KJV_BOOKS}

BLOCK_ENTRY, VERSE_ENTRY = struct.Struct("<III"), struct.Struct("<IIH")
DECOMPRESSORS = {"ZIP": zlib.decompress, "BZIP2": bz2.decompress, "XZ": lzma.decompress}
# Where modules are looked for after --data-dir: SWORD's own search path, then Debian's location.
SYSTEM_SWORD_DIRS = ("/usr/share/sword",)


def chapter_verses(osis: str) -> list[int]:
    """The verse counts of the chapters of the book `osis` (e.g. "Gen") in the KJV versification."""
    return [int(count) for count in dict((book, counts) for book, _, counts in KJV_BOOKS)[osis].split()]


def verse_index_layout(testament: str) -> list[tuple[str, int, int] | None]:
    """What each entry of a testament's verse index holds: (book, chapter, verse), or None for a
    heading (module, testament, book, chapter)."""
    books = KJV_BOOKS[:OLD_TESTAMENT_BOOKS] if testament == "ot" else KJV_BOOKS[OLD_TESTAMENT_BOOKS:]
    layout: list[tuple[str, int, int] | None] = [None, None]
    for osis, _, _ in books:
        layout.append(None)
        for chapter, verses in enumerate(chapter_verses(osis), 1):
            layout.append(None)
            layout.extend((osis, chapter, verse) for verse in range(1, verses + 1))
    return layout


def read_conf(path: str | os.PathLike) -> dict[str, str]:
    """A module's .conf: its section name under "Name" and its key=value lines (the first of a
    repeated key; continuation lines ending in a backslash joined)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the module's configuration ({exc.strerror})") from None
    conf: dict[str, str] = {}
    key = None
    for line in lines:
        if key is not None:            # a continued value
            conf[key] += "\n" + line.rstrip("\\")
            key = key if line.endswith("\\") else None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]") and "Name" not in conf:
            conf["Name"] = stripped[1:-1]
        elif "=" in stripped:
            name, _, value = stripped.partition("=")
            name = name.strip()
            if name not in conf:
                conf[name] = value.strip().rstrip("\\")
                key = name if value.endswith("\\") else None
    if "Name" not in conf:
        raise DataError(f"{path}: no [ModuleName] section; not a SWORD module configuration")
    return conf


_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_TITLE = re.compile(r"<title\b([^>]*)>(.*?)</title>", re.S)
_TAG = re.compile(r"<[^>]*>")
_USFM_MARKER = re.compile(r"\\\+?[a-z]+[0-9]*\*?\s?")
_SPACES = re.compile(r"\s+")


def osis_to_text(osis: str) -> str:
    """The words of one verse's OSIS markup as plain text (see the module docstring)."""
    text = _NOTE.sub(" ", osis)
    text = _TITLE.sub(lambda m: f" {m.group(2)} " if 'canonical="true"' in m.group(1) else " ", text)
    text = _TAG.sub("", text)     # an element's text joins its neighbours' as printed, without a space
    text = _USFM_MARKER.sub("", html.unescape(text)).replace("¶", " ")
    return _SPACES.sub(" ", text).strip()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None


def _testament_entries(directory: Path, testament: str, decompress, name: str) -> Iterator[bytes]:
    """The raw bytes of every entry of one testament's verse index, blocks decompressed once each."""
    blocks_path, index_path, data_path = (directory / f"{testament}.{suffix}" for suffix in ("bzs", "bzv", "bzz"))
    blocks, index, data = _read(blocks_path), _read(index_path), _read(data_path)
    if len(blocks) % BLOCK_ENTRY.size:
        raise DataError(f"{blocks_path}: truncated ({len(blocks)} bytes is no whole number of "
                        f"{BLOCK_ENTRY.size}-byte block entries); reinstall the module")
    if len(index) % VERSE_ENTRY.size:
        raise DataError(f"{index_path}: truncated ({len(index)} bytes is no whole number of "
                        f"{VERSE_ENTRY.size}-byte verse entries); reinstall the module")
    table = [BLOCK_ENTRY.unpack_from(blocks, at) for at in range(0, len(blocks), BLOCK_ENTRY.size)]
    current, text = -1, b""
    for at in range(0, len(index), VERSE_ENTRY.size):
        block, offset, size = VERSE_ENTRY.unpack_from(index, at)
        if size == 0:
            yield b""
            continue
        if block >= len(table):
            raise DataError(f"{index_path}: entry {at // VERSE_ENTRY.size} names block {block} of "
                            f"{len(table)}; the module is corrupt, reinstall it")
        if block != current:
            start, length, expected = table[block]
            if start + length > len(data):
                raise DataError(f"{data_path}: truncated (block {block} ends at byte {start + length}, the file "
                                f"at {len(data)}); reinstall the module")
            try:
                text = decompress(data[start:start + length])
            except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
                raise DataError(f"{data_path}: block {block} at byte {start} does not decompress; the module "
                                f"is corrupt, reinstall it") from None
            if len(text) != expected:
                raise DataError(f"{data_path}: block {block} holds {len(text)} bytes, {blocks_path} says "
                                f"{expected}; the module is corrupt, reinstall it")
            current = block
        if offset + size > len(text):
            raise DataError(f"{index_path}: entry {at // VERSE_ENTRY.size} reaches byte {offset + size} of a "
                            f"{len(text)}-byte block; the module is corrupt, reinstall it")
        yield text[offset:offset + size]


def read_ztext(module_dir: str | os.PathLike, conf: dict[str, str]) -> Iterator[tuple[str, int, int, str]]:
    """Every non-empty verse of a zText module as (book, chapter, verse, plain text), in canonical
    order; `module_dir` holds its ot.* / nt.* files, `conf` is its `read_conf`."""
    directory, name = Path(module_dir), conf.get("Name", str(module_dir))
    if conf.get("ModDrv", "zText").lower() != "ztext":
        raise DataError(f"module {name}: driver {conf['ModDrv']}; this reader reads zText modules only")
    compression = conf.get("CompressType", "ZIP").upper()
    if compression not in DECOMPRESSORS:
        raise DataError(f"module {name}: CompressType={compression}; this reader knows "
                        f"{', '.join(DECOMPRESSORS)}")
    if conf.get("Versification", "KJV") != "KJV":
        raise DataError(f"module {name}: Versification={conf['Versification']}; this reader knows KJV's only")
    if conf.get("CipherKey"):
        raise DataError(f"module {name} is enciphered (CipherKey); unlock it with SWORD's tools first")
    encoding = "utf-8" if conf.get("Encoding", "").upper() == "UTF-8" else "latin-1"  # SWORD's default: Latin-1
    testaments = [t for t in ("ot", "nt") if (directory / f"{t}.bzv").exists()]
    if not testaments:
        raise DataError(f"{directory}: no ot.bzv or nt.bzv; not the data directory of a zText module")
    for testament in testaments:
        layout = verse_index_layout(testament)
        entries = list(_testament_entries(directory, testament, DECOMPRESSORS[compression], name))
        if len(entries) != len(layout):
            raise DataError(f"{directory / (testament + '.bzv')}: {len(entries)} entries, KJV versification "
                            f"needs {len(layout)}; the module is truncated or of another versification")
        for reference, raw in zip(layout, entries):
            if reference is None or not raw:
                continue
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                book, chapter, verse = reference
                raise DataError(f"{directory / (testament + '.bzz')}: {book} {chapter}:{verse} is not {encoding} "
                                f"(byte {exc.start} of the verse); the module is corrupt") from None
            text = osis_to_text(text)
            if text:
                yield (*reference, text)


def sword_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where modules are looked for: DATA_DIR/sword and DATA_DIR, $SWORD_PATH, ~/.sword, /usr/share/sword."""
    from .datasets import data_root
    root = data_root(data_dir)
    found = [root / "sword", root]
    found += [Path(p) for p in os.environ.get("SWORD_PATH", "").split(os.pathsep) if p]
    return found + [Path.home() / ".sword", *map(Path, SYSTEM_SWORD_DIRS)]


def find_module(module_name: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, dict[str, str]]:
    """(data directory, conf) of an installed module, by its name (case-insensitive)."""
    wanted = module_name.lower()
    searched = sword_dirs(data_dir)
    for base in searched:
        for conf_path in sorted((base / "mods.d").glob("*.conf")) if (base / "mods.d").is_dir() else ():
            if conf_path.stem.lower() != wanted:
                continue
            conf = read_conf(conf_path)
            data_path = conf.get("DataPath")
            if not data_path:
                raise DataError(f"{conf_path}: no DataPath; not a usable module configuration")
            return (base / data_path).resolve(), conf
    raise UsageError(f"SWORD module {module_name} is not installed (looked in "
                     f"{', '.join(str(b / 'mods.d') for b in searched)}); install it with 'sudo apt-get install "
                     f"{DEBIAN_PACKAGES.get(module_name, 'sword-text-…')}' or put it under --data-dir/sword")


# Debian's packages of the modules the data sets use.
DEBIAN_PACKAGES = {"engKJV2006eb": "sword-text-kjv", "spaRV1909eb": "sword-text-sparv"}


def bible_verses(module_name: str, data_dir: str | os.PathLike | None = None) -> dict[tuple[str, int, int], str]:
    """(book, chapter, verse) → plain text of every verse of an installed zText module, in canonical order."""
    directory, conf = find_module(module_name, data_dir)
    return {(book, chapter, verse): text for book, chapter, verse, text in read_ztext(directory, conf)}

"""plugin_stub/protocol.hpp mirrors bridge/protocol.py: same version, names, codes, dtypes, limits."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import protocol
from bridge.score import DEFAULT_QPM, DEFAULT_RESOLUTION, NOTE_DTYPE

HEADER = Path(__file__).resolve().parents[2] / "plugin_stub" / "protocol.hpp"


@pytest.fixture(scope="module")
def text() -> str:
    return HEADER.read_text()


def _namespace(text: str, name: str) -> str:
    match = re.search(rf"namespace {name} \{{\n(.*?)\n\}}  // namespace {name}", text, re.S)
    assert match, f"protocol.hpp has no `namespace {name} {{ ... }}  // namespace {name}` block"
    return match.group(1)


def _strings(block: str) -> list[str]:
    return re.findall(r'constexpr const char\* k\w+ = "([^"]*)";', block)


def _number(text: str, name: str) -> float:
    match = re.search(rf"constexpr [\w:]+ {name} = ([0-9.]+);", text)
    assert match, f"protocol.hpp does not define {name}"
    return float(match.group(1))


def test_version_and_endpoint(text: str) -> None:
    assert _number(text, "kProtocolVersion") == protocol.PROTOCOL_VERSION
    assert re.search(rf'kDefaultEndpoint = "{re.escape(protocol.DEFAULT_ENDPOINT)}";', text)


@pytest.mark.parametrize(("block", "names"), [
    ("request", protocol.REQUESTS), ("reply", protocol.REPLIES), ("error", protocol.ERROR_CODES),
    ("dtype", tuple(protocol.DTYPES)),
])
def test_name_tables_match_in_order(text: str, block: str, names: tuple[str, ...]) -> None:
    assert tuple(_strings(_namespace(text, block))) == names


def test_limits(text: str) -> None:
    block = _namespace(text, "limits")
    found = {m.group(1): float(m.group(2))
             for m in re.finditer(r"constexpr [\w:]+ k(\w+) = ([0-9.]+);", block)}
    wanted = {"".join(w.capitalize() for w in k.split("_")): float(v)
              for k, v in protocol.DEFAULT_LIMITS.to_dict().items()}
    assert found == wanted


def test_choices_and_defaults(text: str) -> None:
    assert _number(text, "kMaxNdim") == protocol.MAX_NDIM
    assert _number(text, "kDefaultResolution") == DEFAULT_RESOLUTION
    assert _number(text, "kDefaultQpm") == DEFAULT_QPM
    modes = tuple(re.findall(r'constexpr const char\* kMode\w+ = "([^"]*)";', text))
    assert modes == protocol.MODES


def test_note_record_layout(text: str) -> None:
    block = _namespace(text, "note")
    offsets = {m.group(1).lower(): int(m.group(2))
               for m in re.finditer(r"constexpr std::size_t k(\w+)Offset = (\d+);", block)}
    assert offsets == {name: NOTE_DTYPE.fields[name][1] for name in NOTE_DTYPE.names}
    assert _number(block, "kSizeBytes") == NOTE_DTYPE.itemsize

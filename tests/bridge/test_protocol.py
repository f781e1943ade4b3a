from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bridge import protocol as P
from bridge.protocol import FieldSpec, FrameSpec, Limits, Message, ProtocolError
from bridge.score import NOTE_DTYPE, make_notes

ROOT = Path(__file__).resolve().parents[2]
I64 = (-(2**63), 2**63 - 1)
# Round trips check the format, not the limits: nothing a strategy draws may trip one.
ROOMY = Limits(max_message_bytes=2**31, max_notes_per_request=10**9, max_audio_s_per_job=1e300)

# -- strategies derived from the schema table, so a new field or type is covered automatically --

INT_RANGES = {"": I64, ">0": (1, I64[1]), ">=0": (0, I64[1]), "0..127": (0, 127)}
FLOAT_RANGES = {"": (-1e9, 1e9), ">0": (1e-3, 1e6), ">=0": (0.0, 1e6), "0..1": (0.0, 1.0)}
scalars = st.one_of(st.none(), st.booleans(), st.integers(*I64), st.text(max_size=8),
                    st.floats(allow_nan=False))
maps = st.dictionaries(st.text(max_size=6), scalars, max_size=4)
ids = st.one_of(st.text(max_size=12), st.integers(*I64))


def value_for(spec: FieldSpec) -> st.SearchStrategy:
    if spec.choices:
        return st.sampled_from(spec.choices)
    ints = st.integers(*INT_RANGES[spec.rule]) if spec.rule in INT_RANGES else None
    return {
        "str": st.text(max_size=16),
        "int": ints,
        "float": st.floats(*FLOAT_RANGES.get(spec.rule, (-1e9, 1e9))),
        "bool": st.booleans(),
        "id": ids,
        "map": maps,
        "list[str]": st.lists(st.text(max_size=8), max_size=4),
        "list[int]": st.lists(ints, max_size=4) if ints is not None else None,
        "list[float]": st.lists(st.floats(-1e9, 1e9), max_size=4),
        "list[map]": st.lists(maps, max_size=3),
        "hints": st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({}, optional={
            "entry_beats": st.floats(0, 1e4), "pitch": st.integers(0, 127)}), max_size=3),
    }[spec.kind]


@st.composite
def note_arrays(draw, max_notes: int = 40) -> np.ndarray:
    n = draw(st.integers(0, max_notes))

    def column(dtype, low: int, high: int) -> np.ndarray:
        return draw(hnp.arrays(dtype, n, elements=st.integers(low, high)))

    return make_notes(column(np.int64, 0, 2**40), column(np.uint8, 0, 127),
                      column(np.int64, 0, 2**40), column(np.uint8, 1, 127))


def frame_for(spec: FrameSpec, earlier: list[np.ndarray]) -> st.SearchStrategy:
    if spec.dtype == "notes":
        return note_arrays()
    if spec.role == "parts":
        return hnp.arrays(np.uint8, len(earlier[0]))
    if spec.role == "releases":  # rows of (tick, pitch, part)
        rows = st.tuples(st.integers(0, 2**40), st.integers(0, 127), st.integers(0, 255))
        return st.lists(rows, max_size=8).map(lambda r: np.array(r, np.int64).reshape(-1, 3))
    if spec.role == "markings":  # rows of (dynamic level, hairpin + 1, mark bits), one per note
        limits = st.tuples(*(st.integers(0, hi) for _, _, hi in P.MARKING_LIMITS))
        return st.lists(limits, min_size=len(earlier[0]), max_size=len(earlier[0])).map(
            lambda r: np.array(r, np.uint8).reshape(-1, 3))
    assert spec.role == "audio", spec  # a new frame role needs a strategy here
    shape = st.tuples(st.integers(1, 2), st.integers(0, 64))
    # any float32 bit pattern, NaNs included: the bytes must come back unchanged
    return hnp.arrays(np.float32, shape, elements=st.floats(width=32))


@st.composite
def messages(draw, message_type: str) -> Message:
    schema = P.SCHEMAS[message_type]
    fields = {s.name: draw(value_for(s)) for s in schema.fields if s.required or draw(st.booleans())}
    frames: list[np.ndarray] = []
    for spec in schema.frames:
        if not spec.required and not draw(st.booleans()):
            break
        frames.append(draw(frame_for(spec, frames)))
    request_id = draw(st.one_of(ids, st.none()) if message_type == P.ERROR else ids)
    return Message(message_type, request_id, fields, frames)


@pytest.mark.parametrize("message_type", P.REQUESTS + P.REPLIES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(message_type: str, data: st.DataObject) -> None:
    sent = P.validate(data.draw(messages(message_type)))
    wire = [bytes(f) for f in P.encode(sent)]  # what a socket delivers
    got = P.decode(wire, ROOMY)
    assert (got.type, got.id, got.fields) == (sent.type, sent.id, sent.fields)
    assert len(got.frames) == len(sent.frames)
    for g, s in zip(got.frames, sent.frames):
        assert (g.dtype, g.shape, g.tobytes()) == (s.dtype, s.shape, s.tobytes())


def test_every_type_has_a_schema_and_names_are_unique() -> None:
    assert set(P.SCHEMAS) - set(P.EXTENSIONS) == set(P.REQUESTS) | set(P.REPLIES)
    assert len(set(P.REQUESTS + P.REPLIES)) == len(P.REQUESTS + P.REPLIES)
    assert len(set(P.ERROR_CODES)) == len(P.ERROR_CODES)


def test_encode_makes_big_endian_and_strided_arrays_little_endian_and_contiguous() -> None:
    audio = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    msg = P.make_reply(P.AUDIO, 1, [audio], job="j", seq=0, start_sample=0, sample_rate_hz=48_000)
    got = P.decode(P.encode(msg)).frame("audio")
    assert got.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(got, audio)


def test_decoded_frames_are_read_only_views() -> None:
    notes = make_notes([0, 24], [60, 64], 24, 90)
    wire = P.encode(P.make_request(P.ARRANGE, "r1", [notes], ensemble="satb", mode="online"))
    got = P.decode([bytes(f) for f in wire])
    assert got.frame("notes").dtype == NOTE_DTYPE and not got.frame("notes").flags.writeable


# -- every error code, from bytes a broken or hostile client could send --

def header(**fields) -> bytes:
    return P.pack_header({"v": P.PROTOCOL_VERSION, "type": P.PING, "id": 7, **fields})


def arrange_wire(notes: np.ndarray | None = None, **fields) -> list[bytes]:
    """A well-formed arrange request; a field given as None is left out."""
    notes = make_notes([0, 12, 24], [60, 64, 67], 12, 80) if notes is None else notes
    head = {"v": P.PROTOCOL_VERSION, "type": P.ARRANGE, "id": 7, "ensemble": "satb", "mode": "offline",
            "frames": [{"dtype": "notes", "shape": [len(notes)]}], **fields}
    return [P.pack_header({k: v for k, v in head.items() if v is not None}), notes.tobytes()]


def raises(code: str, frames: list[bytes], limits: Limits = P.DEFAULT_LIMITS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        P.decode(frames, limits)
    assert info.value.code == code, info.value
    assert info.value.code in P.ERROR_CODES
    # whatever went wrong, the engine can answer with a valid error reply
    reply = P.decode(P.encode(info.value.to_reply()))
    assert reply.fields == {"code": code, "message": info.value.message}
    return info.value


@pytest.mark.parametrize("first", [b"", b"\xc1", b"\x81\xa1v", header() + b"\x00", b"\xa3\xff\xfe\xfd"],
                         ids=["empty", "reserved-byte", "truncated", "trailing-bytes", "bad-utf8"])
def test_malformed_msgpack_is_bad_header(first: bytes) -> None:
    assert "msgpack" in raises(P.BAD_HEADER, [first]).message


def test_header_that_is_a_list_or_no_frames_at_all_is_bad_header() -> None:
    assert "expected a map" in raises(P.BAD_HEADER, [b"\x92\x01\x02"]).message  # [1, 2]
    raises(P.BAD_HEADER, [])


@pytest.mark.parametrize("version", [1, P.PROTOCOL_VERSION + 1, 0, str(P.PROTOCOL_VERSION),
                                     float(P.PROTOCOL_VERSION), True, None])
def test_wrong_version_names_both_versions(version) -> None:
    head = {"type": P.PING, "id": 7} | ({} if version is None else {"v": version})
    err = raises(P.BAD_VERSION, [P.pack_header(head)])
    assert f"version {P.PROTOCOL_VERSION}" in err.message and err.request_id == 7
    if version == 1 and type(version) is int:  # a version-1 client is told which it sent
        assert "v=1" in err.message


def test_unknown_type_lists_the_valid_ones() -> None:
    err = raises(P.UNKNOWN_TYPE, [header(type="arange")])
    assert "'arange'" in err.message and "arrange" in err.message.split(";")[1]
    raises(P.UNKNOWN_TYPE, [header(type=["ping"])])
    with pytest.raises(ProtocolError, match="unknown_type"):
        P.make_request(P.DONE, 1, job=1)


def test_missing_fields() -> None:
    err = raises(P.MISSING_FIELD, arrange_wire(ensemble=None))
    assert "ensemble" in err.message and err.request_id == 7
    raises(P.MISSING_FIELD, [P.pack_header({"v": P.PROTOCOL_VERSION, "id": 7})])
    raises(P.MISSING_FIELD, [P.pack_header({"v": P.PROTOCOL_VERSION, "type": P.PING})])
    raises(P.MISSING_FIELD, [header(type=P.CANCEL)])


@pytest.mark.parametrize("fields, words", [
    ({"mode": "sometimes"}, "online, offline"),
    ({"resolution": 0}, ">0"),
    ({"resolution": "24"}, "an integer"),
    ({"resolution": True}, "an integer"),
    ({"ensemble": 3}, "a string"),
    ({"hints": {"Soprano": {"pitch": 300}}}, "MIDI 0..127"),
    ({"resolutoin": 24}, "allowed: ensemble, mode, resolution"),
    ({"id": 1.5}, "string or an integer"),
])
def test_ill_typed_or_unknown_fields_are_bad_field(fields: dict, words: str) -> None:
    err = raises(P.BAD_FIELD, arrange_wire(**fields))
    assert words in err.message and "got" in err.message


def test_frame_count_mismatch() -> None:
    wire = arrange_wire()
    assert "per raw frame (0)" in raises(P.FRAME_MISMATCH, wire[:1]).message
    no_frames = arrange_wire(frames=[])[:1]
    assert "arrange takes frames notes, got 0" in raises(P.FRAME_MISMATCH, no_frames).message
    assert "ping takes frames none, got 1" in raises(
        P.FRAME_MISMATCH, [header(frames=[{"dtype": "<f4", "shape": [1]}]), b"\0" * 4]).message
    raises(P.FRAME_MISMATCH, [header(frames="notes")])


def test_frame_byte_size_mismatch() -> None:
    head, notes = arrange_wire()
    err = raises(P.FRAME_MISMATCH, [head, notes[:-1]])
    assert f"{len(notes) - 1} bytes" in err.message and f"needs {len(notes)} bytes" in err.message


@pytest.mark.parametrize("descr", [{"dtype": "<f8", "shape": [3]}, {"dtype": "|O", "shape": [3]},
                                   {"dtype": ["notes"], "shape": [3]}, {"dtype": "notes", "shape": [-3]},
                                   {"dtype": "notes", "shape": [2**62]}, {"dtype": "notes", "shape": 3},
                                   {"dtype": "notes", "shape": [1, 1, 1, 1, 3]}, {"dtype": "notes"}])
def test_disallowed_dtype_or_bad_shape(descr: dict) -> None:
    raises(P.FRAME_MISMATCH, [arrange_wire(frames=[descr])[0], b"\0" * 54])


def test_frame_that_does_not_fit_its_role() -> None:
    audio = np.zeros((2, 8), "<i4").tobytes()
    head = {"v": P.PROTOCOL_VERSION, "type": P.AUDIO, "id": 7, "job": 1, "seq": 0, "start_sample": 0,
            "sample_rate_hz": 48_000}
    err = raises(P.FRAME_MISMATCH, [P.pack_header({**head, "frames": [{"dtype": "<i4", "shape": [2, 8]}]}),
                                    audio])
    assert "must be 2-D <f4, got 2-D int32" in err.message
    raises(P.FRAME_MISMATCH, [P.pack_header({**head, "frames": [{"dtype": "<i4", "shape": [16]}]}), audio])
    notes = make_notes([0, 1], [60, 61], 1)
    with pytest.raises(ProtocolError, match="one index per note"):
        P.make_reply(P.NOTES, 7, [notes, np.zeros(3, np.uint8)], job=1, seq=0)


@pytest.mark.parametrize("column, value", [("pitch", 200), ("velocity", 0), ("time", -1),
                                           ("duration", -5)])
def test_notes_outside_midi_ranges(column: str, value: int) -> None:
    notes = make_notes([0, 12, 24], [60, 64, 67], 12, 80)
    notes[column][1] = value
    err = raises(P.BAD_NOTES, arrange_wire(notes))
    assert f"note 1 has {column} {value}" in err.message


def test_perform_markings_must_be_one_row_per_note_within_their_ranges() -> None:
    notes = make_notes([0, 12, 24], [60, 64, 67], 12, 80)
    parts = np.zeros(3, np.uint8)
    good = np.array([[2, 1, 0], [5, 2, 1], [7, 0, 127]], np.uint8)

    def wire(markings: np.ndarray) -> list[bytes]:
        head = {"v": P.PROTOCOL_VERSION, "type": P.PERFORM, "id": 3, "sample_rate_hz": 48_000,
                "frames": [{"dtype": "notes", "shape": [3]}, {"dtype": "|u1", "shape": [3]},
                           {"dtype": "|u1", "shape": list(markings.shape)}]}
        return [P.pack_header(head), notes.tobytes(), parts.tobytes(), markings.tobytes()]

    assert P.decode(wire(good)).frame("markings").tolist() == good.tolist()
    err = raises(P.FRAME_MISMATCH, wire(good[:2]))
    assert "one row of (dynamic, hairpin, marks) per note, shape [3, 3]; got [2, 3]" in err.message
    for col, name, value in ((0, "dynamic level", 8), (1, "hairpin", 3), (2, "mark bits", 128)):
        bad = good.copy()
        bad[1, col] = value
        err = raises(P.BAD_NOTES, wire(bad))
        assert f"note 1's markings have {name} {value}" in err.message, err.message


def test_oversize_message_and_header() -> None:
    limits = Limits(max_message_bytes=1000, max_header_bytes=200)
    err = raises(P.TOO_LARGE, arrange_wire(make_notes(np.arange(100), 60, 1)), limits)
    assert "1000 bytes" in err.message
    assert "header" in raises(P.TOO_LARGE, [header(client="x" * 300)], limits).message


def test_too_many_notes() -> None:
    err = raises(P.TOO_MANY_NOTES, arrange_wire(make_notes(np.arange(11), 60, 1)),
                 Limits(max_notes_per_request=10))
    assert "11 notes" in err.message and "10" in err.message


def test_too_much_audio_in_a_frame_and_in_a_perform_request() -> None:
    limits = Limits(max_audio_s_per_job=1.0)
    audio = P.make_reply(P.AUDIO, 7, [np.zeros((1, 48_001), np.float32)], job=1, seq=0,
                         start_sample=0, sample_rate_hz=48_000)
    raises(P.TOO_MUCH_AUDIO, [bytes(f) for f in P.encode(audio)], limits)
    # 2 quarters at 120 qpm end at 1 s: allowed; one tick later is over
    for end_ticks, ok in ((48, True), (49, False)):
        perform = P.make_request(P.PERFORM, 7, [make_notes([0], 60, end_ticks)], sample_rate_hz=44_100,
                                 resolution=24, qpm=120.0)
        wire = [bytes(f) for f in P.encode(perform)]
        if ok:
            P.decode(wire, limits)
        else:
            assert "1.0 s" in raises(P.TOO_MUCH_AUDIO, wire, limits).message


anything = st.recursive(scalars | st.binary(max_size=4), lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
descriptors = st.fixed_dictionaries({"dtype": st.sampled_from([*P.DTYPES, "<f8", 3]),
                                     "shape": st.lists(st.integers(-2, 40), max_size=3)})
headers = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1"]), "type": st.sampled_from([*P.SCHEMAS, "nope"]), "id": ids},
    optional={"frames": st.lists(descriptors, max_size=2), "job": anything,
              **{f.name: anything | value_for(f) for s in P.SCHEMAS.values() for f in s.fields}})


@settings(max_examples=300, deadline=None)
@given(first=st.one_of(st.binary(max_size=40), headers.map(P.pack_header)),
       rest=st.lists(st.binary(max_size=200), max_size=2))
def test_decode_never_fails_with_anything_but_a_protocol_error(first: bytes, rest: list[bytes]) -> None:
    try:
        P.decode([first, *rest])
    except ProtocolError as err:
        assert err.code in P.ERROR_CODES and err.message


@pytest.mark.parametrize("code", P.ERROR_CODES)
def test_every_code_travels_in_an_error_reply(code: str) -> None:
    got = P.decode(P.encode(P.error_reply("r9", code, "a sentence", job=3)))
    assert (got.type, got.id, got.fields["code"], got.job) == (P.ERROR, "r9", code, 3)


def test_error_reply_refuses_an_unknown_code() -> None:
    with pytest.raises(ProtocolError, match="bad_field"):
        P.error_reply(1, "oops", "a sentence")


@pytest.mark.parametrize("field, value", [("max_notes_per_request", 0), ("max_message_bytes", 1.5),
                                          ("max_audio_s_per_job", float("nan")),
                                          ("max_jobs_per_client", True), ("max_header_bytes", 2**30)])
def test_limits_validate_themselves(field: str, value) -> None:
    with pytest.raises(ValueError) as info:
        Limits(**{field: value})
    assert f"Limits.{field}" in str(info.value) and repr(value) in str(info.value)


def test_protocol_module_imports_neither_zmq_nor_torch() -> None:
    code = "import sys, bridge.protocol; print(sorted({'zmq', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_spec_names_every_type_field_and_code() -> None:
    spec = (ROOT / "docs" / "protocol.md").read_text()
    own = {k: v for k, v in P.SCHEMAS.items() if k not in P.EXTENSIONS}  # not a test's own tasks
    names = [*own, *P.ERROR_CODES, *P.DTYPES, *(f for s in own.values() for f in s.fields)]
    for name in names:
        name = name if isinstance(name, str) else name.name
        assert f"`{name}`" in spec, f"docs/protocol.md does not mention `{name}`"
    for field in ("max_message_bytes", "max_header_bytes", "max_notes_per_request",
                  "max_audio_s_per_job", "max_jobs_per_client"):
        assert field in spec

"""The wire format between the engine and its clients (the DAW plugin, the CLI, tests).

A message is a ZeroMQ multipart message: one msgpack header map, then zero or more raw frames whose
dtype and shape the header's ``frames`` list states. Nothing here touches a socket: the engine's poll
loop, the Python client and the C++ stub (which mirrors the tables below) all go through
``encode``/``decode``. Never pickle: frames are little-endian numpy bytes. docs/protocol.md is the
human-readable spec of this file; change both together.

Past the house's ~400 lines on purpose: STYLE.md asks for one wire-format module (names, schemas,
limits and the codec together, as zguide's MDP.py), and the C++ mirror is checked against this one
file.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any

import msgpack
import numpy as np

from bridge.score import DEFAULT_QPM, DEFAULT_RESOLUTION, NOTE_DTYPE

# 2: live perform has a message type of its own (live_perform), no longer live_notes with task perform
# 3: compose is served: bars, meter, key, chords, instruments, sampling, given notes, infill;
#    arrange takes a user's ensemble (ensemble_parts) and keep_extras
PROTOCOL_VERSION = 3
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"

RequestId = str | int
Buffer = bytes | bytearray | memoryview

# Message types. Requests go client -> engine; every reply echoes its request's `id`.
REQUESTS = (HELLO, ARRANGE, COMPOSE, PERFORM, LIVE_NOTES, LIVE_PERFORM, CANCEL, STATUS, PING) = (
    "hello", "arrange", "compose", "perform", "live_notes", "live_perform", "cancel", "status", "ping")
REPLIES = (WELCOME, ACCEPTED, NOTES, AUDIO, PROGRESS, DONE, ERROR, PONG, STATUS_REPLY) = (
    "welcome", "accepted", "notes", "audio", "progress", "done", "error", "pong", "status_reply")

# Error codes: stable strings a client may branch on (docs/protocol.md says when each is sent); the
# error's `message` is a sentence for people. The last six are sent by the engine, not by decode.
ERROR_CODES = (BAD_HEADER, BAD_VERSION, UNKNOWN_TYPE, MISSING_FIELD, BAD_FIELD, FRAME_MISMATCH,
               BAD_NOTES, TOO_LARGE, TOO_MANY_NOTES, TOO_MUCH_AUDIO,
               TOO_MANY_JOBS, UNKNOWN_JOB, NO_MODEL, BAD_INPUT, CANCELLED, INTERNAL) = (
    "bad_header", "bad_version", "unknown_type", "missing_field", "bad_field", "frame_mismatch",
    "bad_notes", "too_large", "too_many_notes", "too_much_audio",
    "too_many_jobs", "unknown_job", "no_model", "bad_input", "cancelled", "internal")

# Wire dtype names. Structured dtypes go by name, plain ones by numpy's little-endian dtype string.
# "notes" is NOTE_DTYPE packed, 18 bytes per note: time <i8, pitch u1, duration <i8, velocity u1.
DTYPES: dict[str, np.dtype] = {"notes": NOTE_DTYPE, **{s: np.dtype(s) for s in ("<f4", "<i8", "<i4", "|u1")}}
MAX_NDIM = 4
MODES = ("online", "offline")  # arrange: a causal model as the DAW plays, or one that sees the region
RENDERERS = ("soundfont", "neural")  # perform: FluidSynth and a General MIDI font, or the neural performer


@dataclass(frozen=True)
class Limits:
    """What one message or job may ask for; the engine reports its limits in `welcome`."""

    max_message_bytes: int = 64 * 2**20
    max_header_bytes: int = 2**20
    max_notes_per_request: int = 200_000
    max_audio_s_per_job: float = 600.0
    max_jobs_per_client: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = numbers.Integral if f.type == "int" else numbers.Real
            if isinstance(value, bool) or not isinstance(value, wanted) or not 0 < value < math.inf:
                raise ValueError(f"Limits.{f.name} must be a positive finite {f.type}, got {value!r}")
        if self.max_header_bytes > self.max_message_bytes:
            raise ValueError(f"Limits.max_header_bytes ({self.max_header_bytes}) must not exceed "
                             f"max_message_bytes ({self.max_message_bytes}); lower it or raise the other")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # str, int, float, bool, id (str or int), map, list[str|int|float|map], hints
    rule: str = ""  # "", ">0", ">=0", "0..1", "0..127" (applies to each element of a list)
    choices: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class FrameSpec:
    role: str  # the frame's name in docs and in Message.frame()
    dtype: str  # a key of DTYPES
    ndim: int
    required: bool = True  # optional frames come last


@dataclass(frozen=True)
class Schema:
    fields: tuple[FieldSpec, ...] = ()
    frames: tuple[FrameSpec, ...] = ()


_req = partial(FieldSpec, required=True)
_opt = partial(FieldSpec, required=False)


_JOB = _req("job", "id")
_RESOLUTION = _opt("resolution", "int", ">0")  # ticks per quarter note of the note frames
_SESSION = _req("session", "str")  # a live session's name, chosen by the client
_POSITION = _req("position_ticks", "int", ">=0")  # where the block starts on the host timeline
_RESET = _opt("reset", "bool")  # start the session afresh
_NOTES = FrameSpec("notes", "notes", 1)
_PARTS = FrameSpec("parts", "|u1", 1, required=False)  # part index per note, as long as `notes`
_AUDIO = FrameSpec("audio", "<f4", 2)  # (channels, samples), planar like DPF's buffers
_RELEASES = FrameSpec("releases", "<i8", 2, required=False)  # (n, 3) rows of note-offs: tick, pitch, part
# perform: a score's markings, one (n, 3) row per note: dynamic level 0..7 (ppp..fff), hairpin + 1
# (0 diminuendo, 1 none, 2 crescendo), mark bits (models/performer/expression.py's MARK_NAMES)
_MARKINGS = FrameSpec("markings", "|u1", 2, required=False)
MARKING_LIMITS = ((0, "dynamic level", 7), (1, "hairpin", 2), (2, "mark bits", 127))

SCHEMAS: dict[str, Schema] = {
    HELLO: Schema((_opt("client", "str"),)),
    ARRANGE: Schema((_req("ensemble", "str"), _req("mode", "str", choices=MODES),
                     _RESOLUTION, _opt("hints", "hints"), _opt("constrained", "bool"),
                     _opt("model", "str"),
                     # the user's own ensemble: its parts as an ensemble file's [[parts]] tables
                     _opt("ensemble_parts", "list[map]"),
                     _opt("keep_extras", "bool")),  # notes no part can play: an added Keyboard part
                    (_NOTES,)),
    COMPOSE: Schema((_req("bars", "int", ">0"), _opt("meter", "list[int]", ">0"), _opt("key", "str"),
                     _opt("qpm", "float", ">0"), _opt("chords", "str"), _opt("instruments", "list[str]"),
                     _opt("temperature", "float", ">0"), _opt("top_p", "float", "0..1"),
                     _opt("seed", "int", ">=0"), _opt("model", "str"), _RESOLUTION,
                     _opt("parts", "list[str]"), _opt("given_bars", "list[int]", ">=0"),
                     _opt("infill", "map"), _opt("ranges", "map"),
                     # per-track controls (instrument -> value) and the arrangement model's plan
                     _opt("density", "map"), _opt("polyphony", "map"), _opt("rhythm", "map"),
                     _opt("register", "map"), _opt("arrangement", "map"),
                     # pull toward the chord tones where bars carry chords (nats; 0 = the model alone)
                     _opt("harmony", "float", ">=0")),
                    (FrameSpec("notes", "notes", 1, required=False), _PARTS)),  # given notes, part per note
    PERFORM: Schema((_req("sample_rate_hz", "int", ">0"), _RESOLUTION, _opt("qpm", "float", ">0"),
                     _opt("programs", "list[int]", "0..127"), _opt("model", "str"),
                     _opt("loudness_lufs", "float"), _opt("raw_level", "bool"),
                     # the neural performer: a style (performer) it was trained on, and its style
                     # latent as numbers (the model's latent size) or a seed to draw it from
                     _opt("renderer", "str", choices=RENDERERS), _opt("style", "str"),
                     _opt("latent", "list[float]"), _opt("latent_seed", "int", ">=0"),
                     _opt("vocoder", "str")), (_NOTES, _PARTS, _MARKINGS)),
    LIVE_NOTES: Schema((_SESSION, _POSITION, _RESOLUTION, _opt("qpm", "float", ">0"), _opt("ensemble", "str"),
                        _RESET), (_NOTES, _PARTS, _RELEASES)),
    LIVE_PERFORM: Schema((_SESSION, _POSITION, _RESOLUTION, _req("qpm", "float", ">0"),
                          _req("sample_rate_hz", "int", ">0"), _req("block_samples", "int", ">0"),
                          _opt("programs", "list[int]", "0..127"), _RESET,
                          # the neural performer, as for perform (kept for the session)
                          _opt("renderer", "str", choices=RENDERERS), _opt("style", "str"),
                          _opt("latent", "list[float]"), _opt("latent_seed", "int", ">=0"),
                          _opt("vocoder", "str"), _opt("model", "str")),
                         (_NOTES, _PARTS, _RELEASES)),
    CANCEL: Schema((_JOB,)),
    STATUS: Schema((_opt("job", "id"),)),
    PING: Schema(),
    WELCOME: Schema((_req("engine_version", "str"), _req("capabilities", "list[str]"),
                     _req("models", "list[map]"), _req("limits", "map"))),
    ACCEPTED: Schema((_JOB, _opt("session", "str"))),
    NOTES: Schema((_JOB, _req("seq", "int", ">=0"), _opt("parts", "list[str]"), _opt("session", "str")),
                  (_NOTES, _PARTS)),
    AUDIO: Schema((_JOB, _req("seq", "int", ">=0"), _req("start_sample", "int", ">=0"),
                   _req("sample_rate_hz", "int", ">0")), (_AUDIO,)),
    PROGRESS: Schema((_JOB, _req("fraction", "float", "0..1"), _opt("message", "str"))),
    DONE: Schema((_JOB, _opt("stats", "map"))),
    ERROR: Schema((_req("code", "str", choices=ERROR_CODES), _req("message", "str"),
                   _opt("job", "id"))),
    PONG: Schema(),
    STATUS_REPLY: Schema((_req("jobs", "list[map]"), _opt("uptime_s", "float", ">=0"),
                          _opt("models", "list[map]"))),
}


def _lookups(schema: Schema) -> tuple[dict[str, FieldSpec], tuple[str, ...], int]:
    """{field name: spec}, required field names, required frame count: validate's lookups."""
    return ({f.name: f for f in schema.fields}, tuple(f.name for f in schema.fields if f.required),
            sum(f.required for f in schema.frames))


_SPECS = {kind: _lookups(schema) for kind, schema in SCHEMAS.items()}
EXTENSIONS: list[str] = []  # request types defined at run time by define_request


def define_request(message_type: str, schema: Schema) -> None:
    """Add a request type that is not part of the protocol itself: a task added to one engine (a
    plugin's, or a test's). Both sides must define it; a name the protocol owns is refused."""
    if message_type in SCHEMAS:
        if message_type in EXTENSIONS and SCHEMAS[message_type] == schema:
            return  # defined again the same way (a module imported twice): nothing changes
        raise ValueError(f"request type {message_type!r} is already defined; choose another name")
    SCHEMAS[message_type] = schema
    _SPECS[message_type] = _lookups(schema)
    EXTENSIONS.append(message_type)


class ProtocolError(Exception):
    """`code` is one of ERROR_CODES; `request_id` is the bad message's id if it could be read."""

    def __init__(self, code: str, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.request_id = code, message, request_id

    def to_reply(self) -> Message:
        return error_reply(self.request_id, self.code, self.message)


@dataclass(eq=False)
class Message:
    """One decoded (or to-be-encoded) message. Decoded frames are views of the received buffers, not
    copies (read-only when those are, as bytes and zmq frames are): copy one before changing it."""

    type: str
    id: RequestId | None  # None only in an error reply to a message whose id could not be read
    fields: dict[str, Any] = field(default_factory=dict)
    frames: list[np.ndarray] = field(default_factory=list)
    # set by validate(): encode() then skips a second validation (~40% of an audio chunk's cost)
    validated: bool = field(default=False, repr=False, compare=False)

    @property
    def job(self) -> RequestId | None:
        return self.fields.get("job")

    def frame(self, role: str) -> np.ndarray | None:
        """The frame with this role ("notes", "parts", "audio"), or None if absent."""
        for spec, array in zip(SCHEMAS[self.type].frames, self.frames):
            if spec.role == role:
                return array
        return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    if type(v) is int:  # the common case, without the slow numbers.Integral check
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_float(v: Any) -> bool:
    if _is_int(v):
        return abs(v) < 2**64  # msgpack's integer range; beyond it float() may overflow
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


_RULES = {"": lambda v: True, ">0": lambda v: v > 0, ">=0": lambda v: v >= 0,
          "0..1": lambda v: 0 <= v <= 1, "0..127": lambda v: 0 <= v <= 127}
_HINT_KEYS = {"entry_beats": (_is_float, ">=0"), "pitch": (_is_int, "0..127")}


def _is_hints(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(part, str) and isinstance(h, dict) and all(
            k in _HINT_KEYS and _HINT_KEYS[k][0](x) and _RULES[_HINT_KEYS[k][1]](x) for k, x in h.items())
        for part, h in v.items())


_KINDS = {  # kind -> (check, how to say it, normalise)
    "str": (lambda v: isinstance(v, str), "a string", str),
    "int": (_is_int, "an integer", int),
    "float": (_is_float, "a finite number", float),
    "bool": (lambda v: isinstance(v, bool), "true or false", bool),
    "id": (lambda v: isinstance(v, str) or _is_int(v), "a string or an integer",
           lambda v: v if isinstance(v, str) else int(v)),
    "map": (lambda v: isinstance(v, dict), "a map", dict),
    "list[str]": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                  "a list of strings", list),
    "list[int]": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of integers",
                  lambda v: [int(x) for x in v]),
    "list[float]": (lambda v: isinstance(v, list) and all(map(_is_float, v)), "a list of finite numbers",
                    lambda v: [float(x) for x in v]),
    "list[map]": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
                  "a list of maps", list),
    "hints": (_is_hints, "a map of part name to {entry_beats: beats >= 0, pitch: MIDI 0..127}", dict),
}


def _check_field(kind_name: str, spec: FieldSpec, value: Any, rid: RequestId | None) -> Any:
    if type(value) is int and spec.kind in ("int", "id") and not spec.choices:  # the common case, fast
        if not spec.rule or _RULES[spec.rule](value):
            return value
    check, wanted, normalise = _KINDS[spec.kind]
    where = f"{kind_name}.{spec.name}"
    if not check(value):
        raise ProtocolError(BAD_FIELD, f"{where} must be {wanted}, got {_show(value)}", rid)
    items = value if spec.kind.startswith("list") else [value]
    if spec.rule and not all(_RULES[spec.rule](x) for x in items):
        raise ProtocolError(BAD_FIELD, f"{where} must be {spec.rule}, got {_show(value)}", rid)
    if spec.choices and value not in spec.choices:
        raise ProtocolError(BAD_FIELD, f"{where} must be one of {', '.join(spec.choices)}, "
                                       f"got {_show(value)}", rid)
    return normalise(value)


def _check_notes(notes: np.ndarray, rid: RequestId | None) -> None:
    for name, bad, allowed in (("time", notes["time"] < 0, ">= 0 ticks"),
                               ("pitch", notes["pitch"] > 127, "a MIDI pitch 0..127"),
                               ("duration", notes["duration"] < 0, ">= 0 ticks"),
                               ("velocity", (notes["velocity"] < 1) | (notes["velocity"] > 127),
                                "a MIDI velocity 1..127")):
        if bad.any():
            i = int(np.argmax(bad))
            raise ProtocolError(BAD_NOTES, f"note {i} has {name} {int(notes[name][i])}; each {name} "
                                           f"must be {allowed}", rid)


def _wire_dtype(array: np.ndarray) -> str | None:
    if array.dtype == NOTE_DTYPE:
        return "notes"
    return array.dtype.str if array.dtype.str in DTYPES else None


_WIRE_PLAIN = frozenset(DTYPES) - {"notes"}


def _wire_array(array: Any) -> np.ndarray:
    """C-ordered and little-endian, so its bytes are what the wire carries (a no-op when decoded)."""
    if type(array) is np.ndarray and array.dtype.str in _WIRE_PLAIN and array.flags.c_contiguous:
        return array  # already what the wire carries (every decoded audio frame)
    array = np.asarray(array)
    if array.dtype.names is not None and array.dtype.names == NOTE_DTYPE.names:
        array = array.astype(NOTE_DTYPE, copy=False)
    elif array.dtype.names is None and array.dtype.str.startswith(">"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def validate(message: Message, limits: Limits | None = None) -> Message:
    """Check a message against its schema (and `limits`, if given). Returns a copy with fields
    normalised (int as int, numbers as float) and frames as wire arrays. Raises ProtocolError."""
    rid, kind = message.id, message.type
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {_show(kind)}; expected one of "
                                          f"{', '.join(SCHEMAS)}", rid)
    schema = SCHEMAS[kind]
    if not (type(rid) is str or _KINDS["id"][0](rid) or (kind == ERROR and rid is None)):
        raise ProtocolError(BAD_FIELD, f"id must be a string or an integer, got {_show(rid)}", None)
    specs, required, min_frames = _SPECS[kind]
    out = {}
    for name, value in message.fields.items():
        spec = specs.get(name)
        if spec is None:
            raise ProtocolError(BAD_FIELD, f"{kind} got unknown field {_show(name)}; allowed: "
                                           f"{', '.join(specs) or 'none'}; check the spelling", rid)
        out[name] = _check_field(kind, spec, value, rid)
    if len(out) < len(specs):
        for name in required:
            if name not in out:
                raise ProtocolError(MISSING_FIELD, f"{kind} requires field {name!r} "
                                                   f"({_KINDS[specs[name].kind][1]})", rid)
    frames = [_wire_array(a) for a in message.frames]
    if not min_frames <= len(frames) <= len(schema.frames):
        wanted = " + ".join(f.role + ("" if f.required else "?") for f in schema.frames) or "none"
        raise ProtocolError(FRAME_MISMATCH, f"{kind} takes frames {wanted}, got {len(frames)} frames",
                            rid)
    roles = {}
    for spec, array in zip(schema.frames, frames):
        if _wire_dtype(array) != spec.dtype or array.ndim != spec.ndim:
            raise ProtocolError(FRAME_MISMATCH, f"{kind} frame {spec.role!r} must be {spec.ndim}-D "
                                f"{spec.dtype}, got {array.ndim}-D {array.dtype}", rid)
        roles[spec.role] = array
    checked = Message(kind, rid, out, frames, validated=True)
    if not roles:
        return checked
    parts, notes, releases = roles.get("parts"), roles.get("notes"), roles.get("releases")
    if parts is not None and len(parts) != len(notes):
        raise ProtocolError(FRAME_MISMATCH, f"the parts frame must hold one index per note "
                                            f"({len(notes)}), got {len(parts)}", rid)
    if releases is not None:
        _check_releases(releases, rid)
    if roles.get("markings") is not None:
        _check_markings(roles["markings"], len(notes), rid)
    if limits is not None:  # before the note scan: refuse an oversize request without reading it
        _check_limits(checked, limits)
    if notes is not None:
        _check_notes(notes, rid)
    return checked


def _check_releases(releases: np.ndarray, rid: RequestId | None) -> None:
    if releases.shape[1:] != (3,):
        raise ProtocolError(FRAME_MISMATCH, f"the releases frame must be n rows of (tick, pitch, part), "
                                            f"shape [n, 3]; got {list(releases.shape)}", rid)
    for col, name, lo, hi in ((0, "tick", 0, 2**62), (1, "pitch", 0, 127), (2, "part", 0, 255)):
        bad = (releases[:, col] < lo) | (releases[:, col] > hi)
        if bad.any():
            i = int(np.argmax(bad))
            raise ProtocolError(BAD_NOTES, f"release {i} has {name} {int(releases[i, col])}; each "
                                           f"{name} must be {lo}..{hi}", rid)


def _check_markings(markings: np.ndarray, n_notes: int, rid: RequestId | None) -> None:
    if markings.shape != (n_notes, 3):
        raise ProtocolError(FRAME_MISMATCH, f"the markings frame must be one row of (dynamic, hairpin, "
                                            f"marks) per note, shape [{n_notes}, 3]; got "
                                            f"{list(markings.shape)}", rid)
    for col, name, hi in MARKING_LIMITS:
        bad = markings[:, col] > hi
        if bad.any():
            i = int(np.argmax(bad))
            raise ProtocolError(BAD_NOTES, f"note {i}'s markings have {name} {int(markings[i, col])}; "
                                           f"each {name} must be 0..{hi}", rid)


def _check_limits(message: Message, limits: Limits) -> None:
    rid, notes, audio = message.id, message.frame("notes"), message.frame("audio")
    if notes is not None and len(notes) > limits.max_notes_per_request:
        raise ProtocolError(TOO_MANY_NOTES, f"the message holds {len(notes)} notes; the limit is "
                            f"{limits.max_notes_per_request} per request; send the region in parts", rid)
    seconds = 0.0
    if audio is not None:
        seconds = audio.shape[1] / message.fields["sample_rate_hz"]
    elif message.type == LIVE_PERFORM:
        seconds = message.fields["block_samples"] / message.fields["sample_rate_hz"]
    elif message.type == PERFORM and len(notes):
        end_ticks = int((notes["time"] + notes["duration"]).max())
        resolution = message.fields.get("resolution", DEFAULT_RESOLUTION)
        seconds = end_ticks / resolution * 60.0 / message.fields.get("qpm", DEFAULT_QPM)
    if seconds > limits.max_audio_s_per_job:
        raise ProtocolError(TOO_MUCH_AUDIO, f"the {message.type} means {seconds:.1f} s of audio; the "
                            f"limit is {limits.max_audio_s_per_job:g} s per job; split it in time", rid)


def pack_header(header: Mapping[str, Any]) -> bytes:
    """msgpack a header map as encode does; tools and tests use it to craft headers by hand."""
    try:
        return msgpack.packb(dict(header), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(BAD_FIELD, f"the header cannot be packed as msgpack ({exc}); use only "
                            "strings, numbers, booleans, lists and maps", header.get("id")) from None


def encode(message: Message) -> list[Buffer]:
    """[header, *frames] for a ZeroMQ multipart send. Frames are zero-copy views of the arrays (or of
    little-endian copies): do not change an array until the send is done. A message from
    validate() or make_*() is not checked again: change its fields or frames and validate it anew."""
    if not message.validated:
        message = validate(message)
    descr = [{"dtype": _wire_dtype(a), "shape": list(a.shape)} for a in message.frames]
    header = {"v": PROTOCOL_VERSION, "type": message.type, "id": message.id, **message.fields,
              "frames": descr}
    return [pack_header(header), *(a.reshape(-1).view(np.uint8).data for a in message.frames)]


def decode(frames: Sequence[Buffer], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and validate one received multipart message; raises ProtocolError, never anything else
    for bad wire input."""
    views = [memoryview(f) for f in frames]
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise ProtocolError(TOO_LARGE, f"the message is {total} bytes; the limit is "
                                       f"{limits.max_message_bytes} bytes; send the material in parts")
    if not views:
        raise ProtocolError(BAD_HEADER, "the message has no frames; expected a msgpack header map first")
    if views[0].nbytes > limits.max_header_bytes:
        raise ProtocolError(TOO_LARGE, f"the header is {views[0].nbytes} bytes; the limit is "
                                       f"{limits.max_header_bytes} bytes; move bulk data into frames")
    try:
        header = msgpack.unpackb(views[0], raw=False)
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, UnicodeError, ...)
        raise ProtocolError(BAD_HEADER, f"the first frame is not valid msgpack ({type(exc).__name__}); "
                                        "expected a map such as {v: 1, type: ping, id: 1}") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_HEADER, f"the header is a msgpack {type(header).__name__}; expected a "
                                        "map with keys v, type, id")
    rid = header.get("id")
    rid = rid if isinstance(rid, str) or _is_int(rid) else None
    version = header.get("v")
    if not _is_int(version) or version != PROTOCOL_VERSION:
        said = f"v={_show(version)}" if "v" in header else "no v"
        raise ProtocolError(BAD_VERSION, f"this side speaks protocol version {PROTOCOL_VERSION}, the "
                                         f"message has {said}; upgrade the older side", rid)
    for key in ("type", "id"):
        if key not in header:
            raise ProtocolError(MISSING_FIELD, f"the header has no {key!r}; every message needs v, "
                                               "type and id", rid)
    fields = {k: v for k, v in header.items() if k not in ("v", "type", "id", "frames")}
    arrays = _arrays(header.get("frames", []), views[1:], rid)
    return validate(Message(header["type"], header["id"], fields, arrays), limits)


def _arrays(descr: Any, views: list[memoryview], rid: RequestId | None) -> list[np.ndarray]:
    if not isinstance(descr, list) or len(descr) != len(views):
        raise ProtocolError(FRAME_MISMATCH, f"the header's frames must list one {{dtype, shape}} per raw "
                            f"frame ({len(views)}), got {_show(descr)}", rid)
    arrays = []
    for i, (d, view) in enumerate(zip(descr, views)):
        if not isinstance(d, dict) or set(d) != {"dtype", "shape"}:
            raise ProtocolError(FRAME_MISMATCH, f"frames[{i}] must be a map {{dtype, shape}}, got "
                                                f"{_show(d)}", rid)
        dtype, shape = d["dtype"], d["shape"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ProtocolError(FRAME_MISMATCH, f"frames[{i}] has dtype {_show(dtype)}; allowed: "
                                                f"{', '.join(DTYPES)}", rid)
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(_is_int(n) and n >= 0 for n in shape)):
            raise ProtocolError(FRAME_MISMATCH, f"frames[{i}] has shape {_show(shape)}; expected a list "
                                f"of at most {MAX_NDIM} sizes >= 0", rid)
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if nbytes != view.nbytes:
            raise ProtocolError(FRAME_MISMATCH, f"frame {i + 1} is {view.nbytes} bytes but {dtype} "
                                                f"{shape} needs {nbytes} bytes", rid)
        arrays.append(np.frombuffer(view, DTYPES[dtype]).reshape(shape))
    return arrays


def _make(allowed: tuple[str, ...], what: str, message_type: str, request_id: RequestId | None,
          frames: Sequence[np.ndarray], fields: dict[str, Any]) -> Message:
    if message_type not in allowed:
        raise ProtocolError(UNKNOWN_TYPE, f"{_show(message_type)} is no {what}; expected one of "
                                          f"{', '.join(allowed)}", request_id)
    return validate(Message(message_type, request_id, fields, list(frames)))


def make_request(message_type: str, request_id: RequestId, /, frames: Sequence[np.ndarray] = (),
                 **fields: Any) -> Message:
    """A validated request, e.g. make_request("arrange", 7, [notes], ensemble="satb", mode="offline")."""
    return _make(REQUESTS + tuple(EXTENSIONS), "request", message_type, request_id, frames, fields)


def make_reply(message_type: str, request_id: RequestId | None, /, frames: Sequence[np.ndarray] = (),
               **fields: Any) -> Message:
    """A validated reply; `request_id` echoes the request's id."""
    return _make(REPLIES, "reply", message_type, request_id, frames, fields)


def error_reply(request_id: RequestId | None, code: str, message: str,
                job: RequestId | None = None) -> Message:
    fields: dict[str, Any] = {"code": code, "message": message}
    if job is not None:
        fields["job"] = job
    return make_reply(ERROR, request_id, **fields)

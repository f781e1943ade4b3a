"""What an arrange request gives besides its notes: part hints (where parts enter, their typical
pitch), parsed from the CLI or the wire in one type, and the error every bad input raises.
``engine.tasks.arrange`` and ``engine.tasks.live_arrange`` use both."""
from __future__ import annotations

from dataclasses import dataclass, field


class ArrangeInputError(ValueError):
    """The input cannot be arranged; the message says why and what to do."""


@dataclass(frozen=True)
class Hints:
    """Where parts enter and their typical pitch, by part name: the one type that parses the CLI's
    ``PART:entry=BEAT,pitch=MIDI`` items, checks part names and crosses the wire (a map
    ``{part: {entry_beats, pitch}}``, bridge/protocol.py's ``hints`` field)."""

    entries_beats: dict[str, float] = field(default_factory=dict)  # part name -> entry beat
    pitches: dict[str, int] = field(default_factory=dict)  # part name -> typical MIDI pitch

    def __bool__(self) -> bool:
        return bool(self.entries_beats or self.pitches)

    @classmethod
    def parse(cls, items: list[str], part_names: list[str]) -> Hints:
        """From ``PART:entry=BEAT,pitch=MIDI`` items (part names case-insensitive)."""
        lookup = {p.lower(): p for p in part_names}
        entries, pitches = {}, {}
        for item in items:
            part, _, body = item.partition(":")
            name = lookup.get(part.strip().lower())
            if name is None or not body:
                raise ArrangeInputError(
                    f"hint {item!r} must look like PART:entry=BEAT or PART:pitch=MIDI with PART one of "
                    f"{', '.join(part_names)}")
            for kv in body.split(","):
                key, _, value = kv.partition("=")
                try:
                    if key.strip() == "entry":
                        entries[name] = float(value)
                    elif key.strip() == "pitch":
                        pitches[name] = int(value)
                    else:
                        raise ValueError
                except ValueError:
                    raise ArrangeInputError(f"hint {item!r}: {kv!r} is not entry=BEAT (a number) or "
                                            "pitch=MIDI (0..127)") from None
        return cls(entries, pitches)

    @classmethod
    def from_wire(cls, wire: dict[str, dict], part_names: list[str], model_name: str) -> Hints:
        """From a request's ``hints`` map (bridge.protocol has checked its values)."""
        lookup = {n.lower(): n for n in part_names}
        entries, pitches = {}, {}
        for part, hint in wire.items():
            if part.lower() not in lookup:
                raise ArrangeInputError(f"hints name part {part!r}, which {model_name} does not have; "
                                        f"its parts are {', '.join(part_names)}")
            if "entry_beats" in hint:
                entries[lookup[part.lower()]] = float(hint["entry_beats"])
            if "pitch" in hint:
                pitches[lookup[part.lower()]] = int(hint["pitch"])
        return cls(entries, pitches)

    def renamed(self, old: list[str], new: list[str]) -> Hints:
        """The same hints under other part names (an ensemble's parts -> the model's, by position)."""
        rename = dict(zip(old, new))
        return Hints({rename[k]: v for k, v in self.entries_beats.items()},
                     {rename[k]: v for k, v in self.pitches.items()})

    def to_wire(self) -> dict[str, dict]:
        wire: dict[str, dict] = {name: {"entry_beats": beat} for name, beat in self.entries_beats.items()}
        for name, pitch in self.pitches.items():
            wire.setdefault(name, {})["pitch"] = pitch
        return wire

    def ignored_by(self, metadata: dict) -> bool:
        """True if a model was trained without the kinds of hint given (it ignores them)."""
        features = metadata["features"]
        return bool((self.entries_beats and not features["use_entry_hints"])
                    or (self.pitches and not features["use_pitch_hints"]))

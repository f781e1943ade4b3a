"""``deep-musician compose``: write new multi-instrument music, from scratch or over chords (embedded)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from engine.cli.common import CliError, add_verb, check_outputs, write_all

DEFAULT_BARS = 8
SCORE_SUFFIXES = (".mid", ".midi", ".xml", ".musicxml")


def meter_arg(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"meter {text!r} is not NUMERATOR/DENOMINATOR, such as 4/4 or 6/8")
    return int(m.group(1)), int(m.group(2))


def cmd_compose(args: argparse.Namespace) -> int:
    """Compose new music for the model's instruments (or the ones named), bar by bar, optionally over
    a chord progression; the same seed and options give the same notes."""
    out = Path(args.output)
    plot = Path(args.plot) if args.plot else None
    if out.suffix.lower() not in SCORE_SUFFIXES:
        raise CliError(f"output {out} must end in .mid, .midi, .xml or .musicxml")
    check_outputs([out, plot], args.force)
    import torch
    from tqdm import tqdm

    from models.composer.inference import ComposeRequest

    torch.set_num_threads(max(1, args.threads))
    composer = _composer(args)
    instruments = None
    if args.instruments:
        names = [n.strip().lower() for part in args.instruments for n in part.split(",")]
        instruments = tuple(n for n in names if n)
    request = ComposeRequest(bars=args.bars, meter=args.meter, key=args.key, qpm=args.tempo,
                             chords=args.chords, instruments=instruments, temperature=args.temperature,
                             top_p=args.top_p, seed=args.seed)
    try:
        composer.plan(request)  # every check before any work: nothing is written on bad input
    except ValueError as exc:
        raise CliError(_as_flags(str(exc))) from None
    bars = list(tqdm(composer.compose(request), total=args.bars, desc="compose", unit="bar",
                     disable=not args.progress))
    score = composer.score_from_bars(bars, request)
    writes = [(out, _score_writer(score, out))]
    if plot:
        from bridge.plot import plot_piano_roll

        writes.append((plot, lambda p: plot_piano_roll(score, p, title=f"composed, seed {args.seed}")))
    write_all(writes)
    counts = ", ".join(f"{t.name} {len(t.notes)}" for t in score.tracks)
    print(f"composed {args.bars} bars, {score.n_notes} notes with {composer.metadata['name']} -> {out}: "
          f"{counts}")
    if plot:
        print(f"piano roll -> {plot}")
    return 0


def _as_flags(message: str) -> str:
    """The request's field names as the flags that set them."""
    for field, flag in (("bars", "--bars"), ("top_p", "--top-p"), ("temperature", "--temperature"),
                        ("qpm", "--tempo")):
        message = re.sub(rf"^{field} ", f"{flag} ", message)
    return message.replace("pass key='C' (or 'a' for A minor)", "pass --key C (or --key Am)")


def _composer(args: argparse.Namespace):
    from models.composer.inference import Composer

    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise CliError(f"no model file at {path}; give a .pt or .pt2 file written by "
                           "models.composer.export")
        try:
            return Composer.load(path)
        except (ValueError, RuntimeError) as exc:
            raise CliError(f"{path} cannot be used: {exc}") from None
    from engine.registry import Registry

    found = Registry(args.models).usable("compose")
    if not found:
        raise CliError("no compose model found; pass --model FILE or add a model folder with --models DIR")
    return Composer(found[0].module, found[0].metadata)


def _score_writer(score, out: Path):
    if out.suffix.lower() in (".mid", ".midi"):
        from bridge.midi import write_midi

        return lambda p: write_midi(score, p)
    from bridge.notation import write_musicxml

    return lambda p: write_musicxml(score, p)


def _arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("-o", "--output", required=True, help="output .mid or .musicxml")
    a.add_argument("--bars", type=int, default=DEFAULT_BARS, help="how many bars to write (1..256)")
    a.add_argument("--chords", help='chord symbols, one bar each, repeated to fill the bars: "C G Am F"; '
                   '"|" separates bars holding several: "C G | Am F"; roman numerals with --key: "I V vi IV"')
    a.add_argument("--instruments", nargs="+", metavar="NAME",
                   help="instruments to write, e.g. soprano,bass; without it every one the model knows")
    a.add_argument("--key", help="key condition, such as C, Am or F#m; without it no key is given")
    a.add_argument("--meter", type=meter_arg, default=(4, 4), help="time signature, such as 3/4")
    a.add_argument("--tempo", type=float, default=100.0, help="quarter notes per minute")
    a.add_argument("--seed", type=int, default=0, help="the same seed and options give the same notes")
    a.add_argument("--temperature", type=float, default=1.0, help="above 1: bolder; below 1: safer")
    a.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (0, 1]")
    a.add_argument("--plot", metavar="PNG", help="also draw the piano roll coloured by instrument")
    a.add_argument("--model", metavar="FILE", help="a compose model file (default: the first one found)")
    a.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    a.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest for small models)")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar over the bars")
    a.add_argument("--force", action="store_true", help="overwrite existing output files")


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "compose", cmd_compose, "write new music, from scratch or over chords", _arguments)

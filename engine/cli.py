"""``deep-musician``: the one command line.

    deep-musician arrange examples/piano.mid -o arranged.mid
    deep-musician perform arranged.mid -o arranged.wav
    deep-musician models
    deep-musician doctor
    deep-musician data build bach | deep-musician data stats bach
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_ENSEMBLE = "satb"
DEFAULT_MODE = "offline"


class CliError(Exception):
    """A user error: printed as one sentence, exit status 2, nothing written."""


def _check_outputs(paths: list[Path | None], force: bool) -> None:
    for p in paths:
        if p is None:
            continue
        if p.exists() and not force:
            raise CliError(f"{p} already exists; pass --force to overwrite it or choose another path")
        if not p.parent.exists():
            raise CliError(f"the folder {p.parent} does not exist; create it or choose another path")


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder so a failure leaves no partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix, prefix=f".{path.stem}.")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a normal file follows the umask
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_input(src: Path):
    from bridge.scorefile import ScoreReadError, read_score

    try:
        return read_score(src)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    except ScoreReadError as exc:
        raise CliError(f"{exc}. Give a standard MIDI file (.mid) or MusicXML (.xml, .mxl)") from None


def cmd_arrange(args: argparse.Namespace) -> int:
    """Orchestrate a piano (or any solo) part for an ensemble; every note is kept, only assigned."""
    from bridge.midi import write_midi
    from engine.registry import Registry
    from engine.tasks.arrange import ArrangeOptions, Hints, arrange
    from models.ensembles import get_ensemble

    src, out = Path(args.input), Path(args.output)
    plot = Path(args.plot) if args.plot else None
    render = Path(args.render) if args.render else None
    if out.suffix.lower() not in (".mid", ".midi", ".xml", ".musicxml"):
        raise CliError(f"output {out} must end in .mid, .midi, .xml or .musicxml")
    if out.resolve() == src.resolve():
        raise CliError("the output path is the input file; choose another output path")
    _check_outputs([out, plot, render], args.force)
    try:
        get_ensemble(args.ensemble)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    score = _read_input(src)
    if args.engine:
        arrangement = _arrange_via_engine(args, score)
    else:
        registry = Registry(args.models)
        model = registry.find_arranger(args.ensemble, args.mode)
        hints = Hints.parse(args.hints or [], [p["name"] for p in model.metadata["parts"]])
        if hints.ignored_by(model.metadata):
            print(f"note: model {model.name} was trained without these hints and ignores them",
                  file=sys.stderr)
        arrangement = arrange(score, model, ArrangeOptions(not args.unconstrained, hints))
    result, model_name = arrangement.to_score(), arrangement.model
    if out.suffix.lower() in (".mid", ".midi"):
        _atomic_write(out, lambda p: write_midi(result, p))
    else:
        from bridge.notation import write_musicxml

        _atomic_write(out, lambda p: write_musicxml(result, p))
    counts = ", ".join(f"{t.name} {len(t.notes)}" for t in result.tracks)
    print(f"arranged {result.n_notes} notes with {model_name} ({args.mode}) -> {out}: {counts}")
    if plot:
        from bridge.plot import plot_piano_roll

        _atomic_write(plot, lambda p: plot_piano_roll(result, p, title=f"{src.name} → {args.ensemble}"))
        print(f"piano roll -> {plot}")
    if render:
        from bridge.render import render_audio

        _atomic_write(render, lambda p: render_audio(result, p))
        print(f"audio -> {render}")
    return 0


def _engine_client(args: argparse.Namespace):
    from bridge.client import Client

    return Client(args.engine, timeout_s=args.timeout, keys_dir=args.engine_keys)


def _arrange_via_engine(args: argparse.Namespace, score):
    """Arrange through a running engine (``--engine``): it sends a part per note, and the same
    Arrangement the embedded path makes is built from those labels."""
    from bridge.client import EngineError, EngineUnreachable
    from engine.tasks.arrange import Arrangement, Hints, input_notes
    from models.ensembles import get_ensemble

    ensemble = get_ensemble(args.ensemble)
    hints = Hints.parse(args.hints or [], ensemble.part_names)
    notes = input_notes(score)
    options = {"hints": hints.to_wire()} if hints else {}
    try:
        with _engine_client(args) as client:
            labels, parts, stats = client.arrange(notes, args.ensemble, args.mode, score.resolution,
                                                  constrained=not args.unconstrained, **options)
    except EngineUnreachable as exc:
        raise CliError(str(exc)) from None
    except EngineError as exc:
        raise CliError(f"the engine refused the request: {exc.message}") from None
    programs = {p.name: p.program for p in ensemble.parts}
    return Arrangement(notes, labels, list(parts), [int(programs.get(name, 0)) for name in parts], score,
                       stats.get("model", args.engine))


def performance_input(score) -> tuple:
    """(notes, parts, programs) for a perform request: the pitched tracks as parts, notes on a
    millisecond timeline (1000 ticks per quarter at 60 qpm) so the score's tempo map is followed."""
    import numpy as np

    from bridge.score import tick_to_seconds
    from engine.tasks.perform import MAX_PARTS

    tracks = [t for t in score.pitched_tracks() if len(t.notes)]
    if not tracks:
        raise CliError("the score has no pitched notes to perform (drum tracks are not performed)")
    if len(tracks) > MAX_PARTS:
        raise CliError(f"the score has {len(tracks)} pitched tracks; the SoundFont performer plays at "
                       f"most {MAX_PARTS}; merge some tracks first")
    notes = np.concatenate([t.notes for t in tracks])
    parts = np.concatenate([np.full(len(t.notes), k, np.uint8) for k, t in enumerate(tracks)])
    on = np.rint(tick_to_seconds(score, notes["time"]) * 1000).astype(np.int64)
    off = np.rint(tick_to_seconds(score, notes["time"] + notes["duration"]) * 1000).astype(np.int64)
    notes = notes.copy()
    notes["time"], notes["duration"] = on, np.maximum(off - on, 1)
    return notes, parts, [int(t.program) for t in tracks]


def cmd_perform(args: argparse.Namespace) -> int:
    """Render a MIDI or MusicXML file to audio (WAV) with the engine's performer: every pitched track
    with its own General MIDI instrument (a SoundFont through FluidSynth until a neural performer is
    installed)."""
    import numpy as np
    from scipy.io import wavfile


    src, out = Path(args.input), Path(args.output)
    plot = Path(args.plot) if args.plot else None
    if out.suffix.lower() != ".wav":
        raise CliError(f"output {out} must end in .wav")
    _check_outputs([out, plot], args.force)
    score = _read_input(src)
    notes, parts, programs = performance_input(score)
    from tqdm import tqdm

    with tqdm(total=100, unit="%", desc="performing", disable=not sys.stderr.isatty()) as bar:
        def progress(fraction: float, _: str = "") -> None:
            bar.update(round(100 * fraction) - bar.n)

        if args.engine:
            from bridge.client import EngineError, EngineUnreachable

            try:
                with _engine_client(args) as client:
                    audio = client.perform(notes, args.sample_rate, parts, resolution=1000, qpm=60.0,
                                           programs=programs, on_progress=progress).audio
            except EngineUnreachable as exc:
                raise CliError(str(exc)) from None
            except EngineError as exc:
                raise CliError(f"the engine refused the request: {exc.message}") from None
        else:
            from bridge.synth import Synth, SynthUnavailable
            from engine.tasks.perform import render_chunks

            try:
                with Synth(args.sample_rate) as synth:
                    end = int((notes["time"] + notes["duration"]).max())
                    chunks = []
                    for chunk in render_chunks(synth, notes, parts.astype(np.int64), programs, 1000, 60.0):
                        chunks.append(chunk)
                        progress(min(1.0, sum(c.shape[1] for c in chunks) / args.sample_rate * 1000 / end))
            except SynthUnavailable as exc:
                raise CliError(str(exc)) from None
            audio = np.concatenate(chunks, axis=1)
    _atomic_write(out, lambda p: wavfile.write(p, args.sample_rate, np.ascontiguousarray(audio.T)))
    seconds = audio.shape[1] / args.sample_rate
    print(f"performed {len(notes)} notes in {len(programs)} parts ({seconds:.1f} s, {args.sample_rate} Hz) "
          f"-> {out}")
    if plot:
        from bridge.plot import plot_spectrogram

        _atomic_write(plot, lambda p: plot_spectrogram(audio, args.sample_rate, p, title=src.name))
        print(f"spectrogram -> {plot}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the engine as a service for the plugin and other clients until SIGINT/SIGTERM."""
    import logging

    from bridge.protocol import Limits
    from engine import devices
    from engine.registry import Registry
    from engine.server import EngineServer, check_bind, limit_malloc_arenas

    limit_malloc_arenas()  # before torch and zmq start their threads
    check_bind(args.endpoint, args.keys)  # before loading models: refuse fast
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        device = devices.resolve(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    registry = Registry(args.models)  # on the CPU; each task moves what it runs to its device
    for e in registry.entries:
        if not e.ok:
            logging.getLogger("engine.server").warning("event=model_skipped %s", e.describe())
    live_device = devices.live_device(registry, device)
    server = EngineServer(args.endpoint, registry, workers=args.workers, keys_dir=args.keys,
                          limits=Limits(max_jobs_per_client=args.max_jobs_per_client), device=device,
                          live_device=live_device)
    print(f"engine ready on {args.endpoint} (batch work on {device}, live work on {live_device}, "
          f"{len(registry.usable())} models); Ctrl-C stops it", flush=True)
    server.serve_forever()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Ask a running engine what it serves and how long it has been up."""
    from bridge.client import EngineUnreachable

    try:
        with _engine_client(args) as client:
            welcome = client.hello("deep-musician status")
            status = client.status()
    except EngineUnreachable as exc:
        raise CliError(str(exc)) from None
    print(f"engine {welcome['engine_version']} at {args.engine}, up {status.get('uptime_s', 0):.1f} s; "
          f"serves {', '.join(welcome['capabilities'])}")
    for m in welcome["models"]:
        extra = f" ensemble={m['ensemble']} mode={m['mode']}" if m.get("task") == "arrange" else ""
        print(f"  {m['name']} v{m.get('version', '?')} task={m.get('task')}{extra}")
    print("limits: " + ", ".join(f"{k}={v}" for k, v in welcome["limits"].items()))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Make a CurveZMQ key pair (NAME.key public, NAME.key_secret secret) in a folder."""
    import zmq.auth

    folder = Path(args.folder)
    public, secret = folder / f"{args.name}.key", folder / f"{args.name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise CliError(f"{p} already exists; keys are never overwritten: choose another --name "
                           "or folder, or delete the old pair yourself")
    folder.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(folder, args.name)
    os.chmod(secret, 0o600)
    print(f"public key -> {public}\nsecret key -> {secret} (keep it private)")
    if args.name == "server":
        print(f"authorise a client by copying its public key into {folder / 'clients'}/")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the models found (shipped, $DEEP_MUSICIAN_MODELS, --models) and any broken ones."""
    from engine.registry import Registry, model_dirs

    registry = Registry(args.models)
    print("model folders: " + ", ".join(str(d) for d in model_dirs(args.models)))
    if not registry.entries:
        print("no models found")
        return 1
    for e in registry.entries:
        print(("  " if e.ok else "! ") + e.describe())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Say what is installed and what is missing, with the command that fixes each."""
    from engine.doctor import run_checks

    return run_checks(args.models)


def cmd_data_build(args: argparse.Namespace) -> int:
    """Convert a music21 corpus set (bach, quartets, renaissance) or --source DIR for training."""
    from models.data import corpus as ds

    path = ds.build(args.set, source=args.source, ensemble=args.ensemble, jobs=args.jobs,
                    limit=args.limit)
    print(f"wrote {path}")
    return cmd_data_stats(argparse.Namespace(sets=[args.set]))


def cmd_data_stats(args: argparse.Namespace) -> int:
    """Print the paper's Table 1 for built sets: hours, files, notes, parts, most common label."""
    from models.data import corpus as ds

    print(f"{'set':<12} {'hours':>6} {'files':>6} {'notes':>8} {'parts':>5}  most common label  "
          "train/valid/test")
    for name in args.sets:
        try:
            s = ds.stats(name)
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
        sp = s["split"]
        print(f"{name:<12} {s['hours']:6.2f} {s['files']:6d} {s['notes']:8d} {s['parts']:5d}  "
              f"{s['most_common_label']} ({100 * s['most_common_share']:.1f}%)"
              f"{'':8} {sp['train']}/{sp['valid']}/{sp['test']}")
    return 0


def _engine_options(p: argparse.ArgumentParser, default_endpoint: bool) -> None:
    from bridge.protocol import DEFAULT_ENDPOINT

    p.add_argument("--engine", metavar="ENDPOINT", default=DEFAULT_ENDPOINT if default_endpoint else None,
                   help="a running engine (deep-musician serve) to use instead of the embedded one")
    p.add_argument("--engine-keys", metavar="DIR", help="CurveZMQ keys for --engine: "
                   "DIR/client.key_secret and the engine's DIR/server.key")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply")


def build_parser() -> argparse.ArgumentParser:
    from bridge import protocol
    from models.data.corpus import CORPUS_SETS
    from models.ensembles import ENSEMBLES

    p = argparse.ArgumentParser(prog="deep-musician", description="Deep Musician: arrange, compose "
                                "and perform with deep learning, in and beside your DAW.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=fn.__doc__,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.set_defaults(func=fn)
        return sp

    a = add("arrange", cmd_arrange, "orchestrate a piano/solo MIDI or MusicXML file")
    a.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl), Humdrum or ABC file")
    a.add_argument("-o", "--output", required=True, help="output .mid or .musicxml")
    a.add_argument("--ensemble", default=DEFAULT_ENSEMBLE, help=f"one of {', '.join(ENSEMBLES)}")
    a.add_argument("--mode", default=DEFAULT_MODE, choices=["online", "offline"],
                   help="online: causal model (as while the DAW plays); offline: sees the whole region")
    a.add_argument("--hints", nargs="+", metavar="HINT",
                   help="PART:entry=BEAT or PART:pitch=MIDI, for models trained with hints")
    a.add_argument("--unconstrained", action="store_true",
                   help="plain argmax; by default a monophonic part sounds one note at a time")
    a.add_argument("--plot", metavar="PNG", help="also draw the piano roll coloured by part")
    a.add_argument("--render", metavar="WAV", help="also render audio with FluidSynth")
    a.add_argument("--force", action="store_true", help="overwrite existing output files")
    a.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    _engine_options(a, default_endpoint=False)

    pf = add("perform", cmd_perform, "render a MIDI or MusicXML file to audio (WAV)")
    pf.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl), Humdrum or ABC file")
    pf.add_argument("-o", "--output", required=True, help="output .wav (32-bit float, stereo)")
    pf.add_argument("--sample-rate", type=int, default=48_000, help="samples per second")
    pf.add_argument("--plot", metavar="PNG", help="also draw the waveform and spectrogram")
    pf.add_argument("--force", action="store_true", help="overwrite existing output files")
    _engine_options(pf, default_endpoint=False)

    sv = add("serve", cmd_serve, "run the engine as a service for the plugin and clients")
    sv.add_argument("--endpoint", default=protocol.DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    sv.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    sv.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where models run")
    sv.add_argument("--workers", type=int, default=2, help="worker threads running jobs")
    sv.add_argument("--keys", metavar="DIR", help="CurveZMQ keys: DIR/server.key_secret and "
                    "DIR/clients/*.key (needed to bind a non-loopback address)")
    sv.add_argument("--max-jobs-per-client", type=int, default=8, help="queued or running jobs")
    sv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    st = add("status", cmd_status, "ask a running engine what it serves")
    _engine_options(st, default_endpoint=True)
    k = add("keys", cmd_keys, "make a CurveZMQ key pair for the engine or a client")
    k.add_argument("folder", help="folder to write NAME.key and NAME.key_secret into")
    k.add_argument("--name", default="server", help="server for the engine, client for a client")

    m = add("models", cmd_models, "list the models found")
    m.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    d = add("doctor", cmd_doctor, "check what is installed and what is missing")
    d.add_argument("--models", action="append", metavar="DIR", help="extra model folder")

    data = sub.add_parser("data", help="build and inspect training data")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True
    b = dsub.add_parser("build", help=cmd_data_build.__doc__, description=cmd_data_build.__doc__,
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.set_defaults(func=cmd_data_build)
    b.add_argument("set", help=f"corpus set ({', '.join(CORPUS_SETS)}) or a name for --source")
    b.add_argument("--source", help="a folder of your own MIDI/MusicXML files instead of the corpus")
    b.add_argument("--ensemble", choices=sorted(ENSEMBLES), help="label --source parts by name")
    b.add_argument("--jobs", type=int, default=2, help="parallel parser processes")
    b.add_argument("--limit", type=int, help="only the first N files (quick tries)")
    s = dsub.add_parser("stats", help=cmd_data_stats.__doc__, description=cmd_data_stats.__doc__)
    s.set_defaults(func=cmd_data_stats)
    s.add_argument("sets", nargs="+", help="built set names")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError) as exc:
        print(f"deep-musician: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deep-musician: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

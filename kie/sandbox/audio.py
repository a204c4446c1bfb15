"""Short pieces of synthesized music, derived deterministically from a text seed.

Every choice (tempo, key, scale, chord progression, arpeggio pattern, timbre) comes
from a SHA-256 of the seed text, nudged by a few style words ("piano", "dark",
"dance", ...), so the same prompt/style/title always sounds the same and two variants
of one task sound different. The result is a 16-bit mono WAV at 22050 Hz lasting
8 to 12 seconds: four bars over a four-chord progression, with a pad, a plucked
arpeggio, a bass line and a soft kick, faded in and out.
"""

from __future__ import annotations

import hashlib
import io
import random
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 22050
BARS = 4
BEATS_PER_BAR = 4

Signal = npt.NDArray[np.float64]

# Scale degrees in semitones above the root.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
# Progressions as 0-based scale degrees (I-V-vi-IV, vi-IV-I-V, ...).
PROGRESSIONS: tuple[tuple[int, int, int, int], ...] = (
    (0, 4, 5, 3),
    (5, 3, 0, 4),
    (0, 5, 3, 4),
    (0, 3, 4, 3),
    (1, 4, 0, 0),
    (0, 6, 5, 4),
)
# Arpeggio patterns: indexes into the chord's notes (3 = the root an octave up).
PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3),
    (0, 2, 1, 3),
    (3, 2, 1, 0),
    (0, 1, 2, 1),
    (0, 2, 3, 2),
    (1, 0, 2, 3),
)

_DARK_WORDS = ("dark", "sad", "minor", "melanchol", "night", "rain", "moody", "noir")
_BRIGHT_WORDS = ("happy", "bright", "sunny", "sunrise", "joy", "uplift", "major")
_FAST_WORDS = ("dance", "edm", "rock", "punk", "upbeat", "energetic", "house", "disco")
_SLOW_WORDS = ("ambient", "chill", "lofi", "lo-fi", "calm", "slow", "ballad", "relax")
_SOFT_WORDS = ("piano", "classical", "acoustic", "gentle", "soft", "peaceful")


@dataclass(frozen=True)
class Recipe:
    """Every musical choice of one piece."""

    tempo_bpm: float
    root_midi: int
    scale: str
    progression: tuple[int, int, int, int]
    pattern: tuple[int, ...]
    steps_per_beat: int
    brightness: float
    """0 (pure sine) to 1 (bright, many harmonics)."""
    drums: bool

    @property
    def duration_s(self) -> float:
        return BARS * BEATS_PER_BAR * 60.0 / self.tempo_bpm


def recipe_for(seed_text: str) -> Recipe:
    """The musical choices for this seed text (deterministic)."""
    digest = hashlib.sha256(seed_text.encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - not crypto
    words = seed_text.lower()

    def has(options: tuple[str, ...]) -> bool:
        return any(word in words for word in options)

    if has(_DARK_WORDS):
        scale = rng.choice(("minor", "dorian"))
    elif has(_BRIGHT_WORDS):
        scale = rng.choice(("major", "mixolydian"))
    else:
        scale = rng.choice(tuple(SCALES))
    # Tempo 80..120 bpm keeps four bars between 8 and 12 seconds.
    if has(_FAST_WORDS):
        tempo = rng.uniform(108, 120)
    elif has(_SLOW_WORDS):
        tempo = rng.uniform(80, 92)
    else:
        tempo = rng.uniform(84, 116)
    soft = has(_SOFT_WORDS)
    return Recipe(
        tempo_bpm=round(tempo, 1),
        root_midi=rng.randint(45, 56),
        scale=scale,
        progression=rng.choice(PROGRESSIONS),
        pattern=rng.choice(PATTERNS),
        steps_per_beat=2 if soft or rng.random() < 0.3 else 4,
        brightness=rng.uniform(0.1, 0.35) if soft else rng.uniform(0.3, 0.8),
        drums=has(_FAST_WORDS) or (not soft and rng.random() < 0.6),
    )


def _freq(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69) / 12))


def _chord(recipe: Recipe, degree: int) -> list[int]:
    """MIDI notes of the triad on `degree`, plus its root an octave up."""
    scale = SCALES[recipe.scale]

    def note(step: int) -> int:
        octave, index = divmod(step, len(scale))
        return recipe.root_midi + 12 * octave + scale[index]

    root = note(degree)
    return [root, note(degree + 2), note(degree + 4), root + 12]


def _tone(freq: float, n: int, brightness: float) -> Signal:
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * freq * t
    out = np.sin(phase)
    out += brightness * 0.5 * np.sin(2 * phase)
    out += brightness * brightness * 0.3 * np.sin(3 * phase)
    result: Signal = out / (1 + 0.5 * brightness + 0.3 * brightness**2)
    return result


def _add(buffer: Signal, start: int, sound: Signal) -> None:
    end = min(len(buffer), start + len(sound))
    if end > start:
        buffer[start:end] += sound[: end - start]


def render(seed_text: str) -> Signal:
    """The piece for this seed as float samples in -1..1."""
    recipe = recipe_for(seed_text)
    beat = int(SAMPLE_RATE * 60.0 / recipe.tempo_bpm)
    bar = beat * BEATS_PER_BAR
    total = bar * BARS
    out: Signal = np.zeros(total + SAMPLE_RATE // 2)

    tones: dict[tuple[float, int, float], Signal] = {}

    def tone(freq: float, n: int, brightness: float) -> Signal:
        # Notes repeat a lot (arpeggios, bass): synthesize each one once.
        key = (freq, n, brightness)
        if key not in tones:
            tones[key] = _tone(freq, n, brightness)
        return tones[key]

    step = beat // recipe.steps_per_beat
    pluck_len = min(int(step * 3), int(SAMPLE_RATE * 0.4))
    pluck_env = np.exp(-np.arange(pluck_len) / (SAMPLE_RATE * 0.12))
    pluck_env[: min(64, pluck_len)] *= np.linspace(0, 1, min(64, pluck_len))
    bass_env = np.exp(-np.arange(beat * 2) / (SAMPLE_RATE * 0.35))
    bass_env[:128] *= np.linspace(0, 1, 128)
    pad_env = np.ones(bar)
    fade = int(SAMPLE_RATE * 0.25)
    pad_env[:fade] = np.linspace(0, 1, fade)
    pad_env[-fade:] = np.linspace(1, 0, fade)

    for index, degree in enumerate(recipe.progression):
        chord = _chord(recipe, degree)
        start = index * bar
        # Pad: the triad, soft and sustained.
        pad = sum(_tone(_freq(midi + 12), bar, 0.1) for midi in chord[:3])
        _add(out, start, 0.10 * pad * pad_env)
        # Bass: the root on beats 1 and 3.
        for beat_index in (0, 2):
            bass = tone(_freq(chord[0] - 12), len(bass_env), 0.4) * bass_env
            _add(out, start + beat_index * beat, 0.30 * bass)
        # Arpeggio: the pattern over the bar, an octave up.
        steps = BEATS_PER_BAR * recipe.steps_per_beat
        for step_index in range(steps):
            midi = chord[recipe.pattern[step_index % len(recipe.pattern)]] + 12
            accent = 1.0 if step_index % recipe.steps_per_beat == 0 else 0.7
            pluck = tone(_freq(midi), pluck_len, recipe.brightness) * pluck_env
            _add(out, start + step_index * step, 0.22 * accent * pluck)
        if recipe.drums:
            kick_len = int(SAMPLE_RATE * 0.18)
            t = np.arange(kick_len) / SAMPLE_RATE
            sweep = 2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)) / 30)
            kick = np.sin(sweep) * np.exp(-t * 22)
            for beat_index in range(BEATS_PER_BAR):
                _add(out, start + beat_index * beat, 0.45 * kick)

    # Fade in and out, then normalise to about -3 dBFS.
    edge = int(SAMPLE_RATE * 0.05)
    out[:edge] *= np.linspace(0, 1, edge)
    tail = int(SAMPLE_RATE * 0.6)
    out[-tail:] *= np.linspace(1, 0, tail)
    peak = float(np.max(np.abs(out))) or 1.0
    normalised: Signal = out * (0.7 / peak)
    return normalised


def wav_bytes(seed_text: str) -> bytes:
    """The piece for this seed as a 16-bit mono 22050 Hz WAV file."""
    samples = np.clip(render(seed_text), -1.0, 1.0)
    pcm = (samples * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm)
    return buffer.getvalue()

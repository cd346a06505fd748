"""Training configuration: one frozen dataclass, its named recipes and a strict JSON round-trip.

Defaults live here only: the CLI generates its flags from the fields below, and the resolved
config is written into every run folder and model file so a model can be rebuilt from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .families import FAMILIES, build_network, family_fields
from .network import ACTIVATIONS, POOLS, Network

MODELS = tuple(FAMILIES)  # network families: see digitnet.families
VALIDATE_ON = ("last", "split", "test")
LR_SCHEDULES = ("constant", "onecycle")
ADAM_FORMS = ("keras", "paper")  # where Adam's epsilon goes: see optim.py
MONITORS = ("val_loss", "val_accuracy")  # what early stopping and --keep best watch
KEEP = ("last", "best")
MAX_PEN_DIGITS = 5000  # of each digit: as many as MNIST has
MAX_NOT_DIGITS = 60000  # as many as MNIST's training digits


def _opt(help: str, *, choices: tuple[str, ...] | None = None,
         bounds: tuple[float, float] | None = None, open_bounds: str = "") -> Any:
    """A field's metadata: its help text, and what values it takes: one of `choices`, or a
    number within `bounds` (inclusive, except the ends named in `open_bounds`: 'low',
    'high' or 'both'). The CLI's flags and the config's checks both read it."""
    extra: dict[str, Any] = {"choices": choices} if choices else {}
    if bounds is not None:
        extra["bounds"] = (*bounds, open_bounds)
    return {"help": help, **extra}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what `train` does. The default is the reference tutorial."""

    model: str = field(
        default="mlp",
        metadata=_opt("network family: 'mlp' (fully connected), 'cnn' (convolutional) or "
                      "'layers' (any sequence, written out in --layers)", choices=MODELS),
    )
    hidden: tuple[int, ...] = field(
        default=(128, 64),
        metadata=_opt("mlp: hidden layer widths, comma separated (e.g. 128,64)"),
    )
    activation: str = field(
        default="relu",
        metadata=_opt("activation of every hidden layer (the outputs are softmax)",
                      choices=ACTIVATIONS),
    )
    conv: tuple[int, ...] = field(
        default=(32, 64),
        metadata=_opt("cnn: channels of each block of 3x3 convolutions, each block ending in "
                      "2x2 max-pooling, comma separated"),
    )
    convs_per_block: int = field(default=1, metadata=_opt("cnn: convolutions in each block",
                                                          bounds=(1, math.inf)))
    pool: str = field(default="max", metadata=_opt("cnn: 2x2 pooling at the end of each block",
                                                   choices=POOLS))
    dense: tuple[int, ...] = field(
        default=(128,),
        metadata=_opt("cnn: widths of the dense layers after the convolutions, comma separated"),
    )
    layers: str = field(
        default="",
        metadata=_opt("the network as a layer sequence, e.g. conv32k3v-relu,maxpool2,flatten,"
                      "dropout,dense10 (docs/formats.md); giving it chooses --model layers"),
    )
    epochs: int = field(default=10, metadata=_opt("passes over the training split",
                                                  bounds=(1, math.inf)))
    batch_size: int = field(default=32, metadata=_opt("images per optimizer step",
                                                      bounds=(1, math.inf)))
    lr: float = field(default=1e-3, metadata=_opt("Adam learning rate (peak rate for onecycle)",
                                                  bounds=(0, math.inf), open_bounds="both"))
    lr_schedule: str = field(
        default="constant", metadata=_opt("learning-rate schedule", choices=LR_SCHEDULES)
    )
    adam_form: str = field(
        default="keras",
        metadata=_opt("where Adam's epsilon goes: 'keras' adds 1e-7 to sqrt(v), as the tutorial "
                      "does; 'paper' adds 1e-8 to the bias-corrected sqrt(v), as Optax does",
                      choices=ADAM_FORMS),
    )
    label_smoothing: float = field(
        default=0.0, metadata=_opt("probability mass spread over the wrong classes (0 = off)",
                                   bounds=(0, 1), open_bounds="high")
    )
    weight_decay: float = field(
        default=0.0, metadata=_opt("decoupled weight decay of the kernels (AdamW): each step "
                                   "takes lr x this share of every kernel weight off (0 = off)",
                                   bounds=(0, 1))
    )
    augment: bool = field(
        default=False,
        metadata=_opt("randomly shift, rotate, scale, squeeze or widen, warp and thicken "
                      "training digits inside the compiled step (for real-world handwriting)"),
    )
    augment_strength: float = field(
        default=1.0,
        metadata=_opt("with --augment: scales the range of every distortion (1 = the strength "
                      "chosen for real handwriting; less stays closer to MNIST); unused "
                      "without it", bounds=(0, 2), open_bounds="low"),
    )
    writing_variants: bool = field(
        default=False,
        metadata=_opt("with --augment: also draw ways of writing MNIST seldom shows into the "
                      "training digits (a flag on 1s, a 6 whose loop takes most of its "
                      "height)"),
    )
    printed_digits: int = field(
        default=0,
        metadata=_opt("copies of the ten digits printed in 17 typefaces (340 images a copy) "
                      "added to the training split: a 6 curving over a large loop, a 1 with a "
                      "flag and a base (0 = none)", bounds=(0, 100)),
    )
    pen_digits: int = field(
        default=0,
        metadata=_opt("synthetic digits drawn as pen strokes added to the training split, this "
                      "many of each digit: large and small loops, flags, open and closed 4s, in "
                      "random proportions, slants and pen widths (0 = none)",
                      bounds=(0, MAX_PEN_DIGITS)),
    )
    not_digits: int = field(
        default=0,
        metadata=_opt("generated non-digits (letters, scribbles, shapes, several digits side by "
                      "side, specks, noise) added to the training split with a uniform "
                      "target: the network learns to be unsure of them, and the refusal "
                      "threshold then refuses them (0 = none)", bounds=(0, MAX_NOT_DIGITS)),
    )
    seed: int = field(
        default=0,
        metadata=_opt("seeds initialisation, shuffling, the 'split' hold-out, the pen digits "
                      "and the non-digits"),
    )
    val_fraction: float = field(
        default=0.1, metadata=_opt("fraction of the training set held out for validation",
                                   bounds=(0, 1), open_bounds="both")
    )
    validate_on: str = field(
        default="last",
        metadata=_opt(
            "'last': the end of the training set, as Keras' validation_split takes it; "
            "'split': a seeded random hold-out of the training set; 'test': the test set, as "
            "the tutorial does (then no model selection is honest)",
            choices=VALIDATE_ON,
        ),
    )
    early_stopping: int = field(
        default=0,
        metadata=_opt("stop after this many epochs in a row without improvement of --monitor "
                      "(0 = train every epoch)", bounds=(0, math.inf)),
    )
    monitor: str = field(
        default="val_loss",
        metadata=_opt("the validation number early stopping and --keep best watch",
                      choices=MONITORS),
    )
    keep: str = field(
        default="last",
        metadata=_opt("which epoch's weights become the model: the 'last' trained, or the "
                      "'best' by --monitor", choices=KEEP),
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_family_fields(self)
        if self.writing_variants and not self.augment:
            raise ConfigError("writing_variants are drawn by the augmentation: turn on augment "
                              "too")
        if self.chooses_epoch and self.validate_on == "test":
            raise ConfigError("early stopping and keep='best' choose an epoch by its validation "
                              "result, and validate_on='test' would make the test set choose "
                              "what it then reports on: validate on 'last' or 'split'")

    @functools.cached_property
    def network(self) -> Network:
        """The layer sequence this config describes (see digitnet.network)."""
        return build_network(self)

    @property
    def chooses_epoch(self) -> bool:
        """Whether validation decides which epochs train or which one becomes the model."""
        return self.early_stopping > 0 or self.keep == "best"

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def changed(self, given: dict[str, Any]) -> TrainConfig:
        """This config (a recipe, say) with the fields `given` as a user gives them, flag by
        flag: `layers` chooses the 'layers' family; a field of another family than the one
        chosen is refused even at its default value; choosing another family than this
        config's drops this config's network fields; augment_strength needs augment."""
        given = dict(given)
        if "layers" in given:  # a network written out is the 'layers' family's
            given.setdefault("model", "layers")
        model = given.get("model", self.model)
        own = family_fields(model) if model in FAMILIES else set()
        foreign = sorted((set(given) & family_fields()) - own)
        if foreign and model in FAMILIES:
            raise ConfigError(f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} "
                              f"not apply to model {model!r} (its own: {', '.join(sorted(own))})")
        reset = ({name: _DEFAULTS[name] for name in family_fields() - own}
                 if model != self.model else {})
        cfg = self.replace(**{**reset, **given})
        if "augment_strength" in given and not cfg.augment:
            raise ConfigError("augment_strength applies only with augment")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Every field that applies to this config's family (the other families' are left
        out: they keep their defaults, which from_dict restores)."""
        skip = family_fields() - family_fields(self.model)
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name not in skip}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Strict inverse of to_dict: unknown keys and wrong types raise ConfigError."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError("config is nested too deeply to be a digitnet config") from None
        return cls.from_dict(values)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_family_fields(cfg: TrainConfig) -> None:
    """No other family's field changed from its default, and the family makes a network."""
    own = family_fields(cfg.model)
    for name in sorted(family_fields() - own):
        if getattr(cfg, name) != _DEFAULTS[name]:
            raise ConfigError(f"{name} does not apply to model {cfg.model!r} (it has "
                              f"{', '.join(sorted(own))})")
    _ = cfg.network  # builds and checks the layer sequence


def _check_fields(cfg: TrainConfig) -> None:
    """Each field's type, and the values its metadata allows (choices or bounds)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _check_type(f, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
        if "bounds" in f.metadata and not _within(value, *f.metadata["bounds"]):
            raise ConfigError(f"{f.name} must be {_bounds_text(*f.metadata['bounds'])}, got "
                              f"{value}")


def _within(value: float, low: float, high: float, open_bounds: str) -> bool:
    above = value > low if open_bounds in ("low", "both") else value >= low
    below = value < high if open_bounds in ("high", "both") else value <= high
    return bool(above and below)  # False for NaN


def _bounds_text(low: float, high: float, open_bounds: str) -> str:
    def number(x: float) -> str:
        return "inf" if math.isinf(x) else f"{x:,}"

    if math.isinf(high):
        return f"more than {number(low)}" if open_bounds == "both" else f"at least {number(low)}"
    left = "(" if open_bounds in ("low", "both") else "["
    right = ")" if open_bounds in ("high", "both") else "]"
    return f"in {left}{number(low)}, {number(high)}{right}"


def _check_type(f: dataclasses.Field, value: Any) -> None:
    kind = str(f.type)
    if kind.startswith("tuple"):
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, {"str": str, "bool": bool}[kind])
    if not ok:
        raise ConfigError(f"{f.name} has the wrong type: {value!r}")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

# Named starting points; flags given on the command line override them field by field.
RECIPES: dict[str, TrainConfig] = {
    # The reference program: Adam 1e-3, batch 32, 10 epochs, constant rate, and Keras'
    # validation_split=0.1 (the last 6,000 training images held out).
    "tutorial": TrainConfig(),
    # Same network, least time to >= 98% test accuracy on 2 CPU cores: big batches run near
    # the matmul kernels' speed, a one-cycle schedule allows a 10x higher peak rate, and label
    # smoothing keeps the short, hot schedule from over-confident fits. Chosen on the
    # validation split, never on the test set (test: 98.1-98.3% over seeds 0-2).
    "fast": TrainConfig(epochs=5, batch_size=256, lr=1e-2, lr_schedule="onecycle",
                        label_smoothing=0.1, adam_form="paper", validate_on="split"),
    # For real-world handwriting: distorted training digits (--augment) need more capacity
    # and more passes than the tutorial network gets. Chosen on the first half of Semeion's
    # writers (bench/handwriting.py), never on MNIST's test set; about 1 minute on 2 cores.
    "robust": TrainConfig(hidden=(1024, 512), epochs=20, batch_size=128, lr=3e-3,
                          lr_schedule="onecycle", label_smoothing=0.1, augment=True,
                          adam_form="paper", validate_on="split"),
    # The least time to >= 99 % test accuracy on 2 CPU cores (whole command, start-up
    # included): a smaller CNN than the `cnn` recipe's, 3 epochs of batch 256 under a
    # one-cycle rate peaking at 3e-2, label smoothing, no augmentation. Chosen on the
    # validation split over seeds 0-2 (docs/experiments.md gives the runs), never on the
    # test set.
    "quick": TrainConfig(model="cnn", conv=(16, 32), dense=(64,), epochs=3, batch_size=256,
                         lr=3e-2, lr_schedule="onecycle", label_smoothing=0.1,
                         adam_form="paper", validate_on="split"),
    # The most accurate model that trains in 5 minutes on 2 CPU cores (whole command): a
    # small CNN, batch 32 (the convolutions run fastest per image at small batches here),
    # augmented at half strength, AdamW's decay of the kernels at 0.05. Chosen on the
    # validation split (docs/training.md and docs/experiments.md give the runs), never on
    # the test set.
    "cnn": TrainConfig(model="cnn", conv=(24, 48), dense=(128,), epochs=20, batch_size=32,
                       lr=2e-3, lr_schedule="onecycle", augment=True, augment_strength=0.5,
                       adam_form="paper", validate_on="split", weight_decay=0.05),
}
# For real handwriting and the drawing page: the CNN recipe, plus the ways of writing MNIST
# seldom shows (flagged 1s and large-looped 6s drawn into the training digits, digits printed
# in 17 typefaces and synthetic pen-stroke digits: 6,800 and 5,000 beside MNIST's 54,000).
# Chosen on bench/drawing.py's seed-0 drawings, the first half of Semeion's writers and the
# validation split, before the `cnn` recipe took weight decay and 20 epochs: it has 15, no decay.
# And 18,000 generated non-digits, taught to be unsure of (--not-digits), so that it refuses
# what is not a digit: chosen on the seed-0 drawings (digits and non-digits) and on
# generated non-digits of a seed no training uses (docs/experiments.md).
RECIPES["handwriting"] = RECIPES["cnn"].replace(writing_variants=True, printed_digits=20,
                                                pen_digits=500, weight_decay=0.0, epochs=15,
                                                not_digits=18000)


def recipe(name: str) -> TrainConfig:
    """The TrainConfig of a named recipe ('tutorial', ...)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)}") from None

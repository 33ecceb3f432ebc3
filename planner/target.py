"""The device: L1 budget, optional LLB size, weight placement and offset alignment.

Board presets carry the on-chip SRAM a planner may use as one arena. Figures come from
the vendors' datasheets / reference manuals (cited per preset) so users can trust them.

The two-level memory assumption (a bounded L1 that ops work in, an LLB behind it) sits
here: solvers ask `Target.occupies_l1` whether a tensor ever takes L1 bytes instead of
testing tensor kinds and weight placement themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, get_args

from planner.suggest import did_you_mean

if TYPE_CHECKING:
    from planner.graph import Tensor

WeightPlacement = Literal["in_place", "load"]
Lifetimes = Literal["tflm", "minimal"]
WEIGHT_PLACEMENTS: tuple[str, ...] = get_args(WeightPlacement)
LIFETIMES: tuple[str, ...] = get_args(Lifetimes)
# which shared-byte relations (planner/sharing.py) the runtime allows: none, read-only
# aliases (views, slices), or everything (also concat slots and in-place writes)
ShareLevel = Literal["none", "views", "all"]
SHARE_LEVELS: tuple[str, ...] = get_args(ShareLevel)


class TargetError(ValueError):
    """Bad target description (unknown preset, unparsable size, zero budget...)."""


@dataclass(frozen=True)
class Target:
    """What a plan must respect: the L1 `budget` in bytes (None: unbounded, find the
    minimum arena), the LLB size (`llb_bytes`: None unbounded; 0 the device has no LLB, so
    nothing can be spilled: only graph outputs are handed over at the end), where weights live (``in_place``: read
    from flash, never in L1; ``load``: loaded into L1 while used), the offset alignment and
    the no-spill lifetimes of graph inputs and outputs (``tflm``: inputs from the start,
    outputs to the end, what TFLite Micro's arena assumes; ``minimal``: loaded late, stored
    and freed early, see solvers/lifetimes.py) and which tensors may share bytes (`share`,
    see planner/sharing.py). In the plan file the budget is ``l1_bytes``.
    """

    name: str
    budget: int | None
    llb_bytes: int | None = None
    weights: WeightPlacement = "in_place"
    alignment: int = 16
    source: str = ""  # where the figures come from
    lifetimes: Lifetimes = "tflm"
    share: ShareLevel = "none"

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_PLACEMENTS:
            raise TargetError(f"weights must be one of {WEIGHT_PLACEMENTS}, got {self.weights!r}")
        if self.lifetimes not in LIFETIMES:
            raise TargetError(f"lifetimes must be one of {LIFETIMES}, got {self.lifetimes!r}")
        if self.share not in SHARE_LEVELS:
            raise TargetError(f"share must be one of {SHARE_LEVELS}, got {self.share!r}")
        if self.alignment < 1:
            raise TargetError(f"alignment must be >= 1, got {self.alignment}")
        if self.budget is not None and self.budget <= 0:
            raise TargetError(f"L1 budget must be positive, got {self.budget} bytes")
        if self.llb_bytes is not None and self.llb_bytes < 0:
            raise TargetError(f"LLB size must be >= 0 (0: no LLB, nothing can be spilled), got {self.llb_bytes} bytes")

    @property
    def can_spill(self) -> bool:
        """Whether activations can be stored to an LLB and loaded back: not on a device
        without one (``llb_bytes == 0``, e.g. an MCU whose only other memory is its flash)."""
        return self.llb_bytes != 0

    def llb_text(self) -> str:
        """The LLB for people: its size, "unbounded", or that there is none."""
        if self.llb_bytes is None:
            return "unbounded"
        return format_bytes(self.llb_bytes) if self.llb_bytes else "none (nothing can be spilled)"

    def align(self, nbytes: int) -> int:
        """Round up to the offset alignment (the space a tensor occupies when packing)."""
        a = self.alignment
        return -(-nbytes // a) * a

    def occupies_l1(self, tensor: Tensor) -> bool:
        """Whether `tensor` ever takes L1 bytes: everything but weights read in place."""
        return not (self.weights == "in_place" and tensor.kind == "weight")

    def with_budget(self, budget: int | None) -> Target:
        """The same device with another L1 budget (None: unbounded)."""
        return replace(self, budget=budget)

    def to_dict(self) -> dict:
        """The plan file's ``target`` object (DESIGN §4)."""
        return {
            "name": self.name,
            "l1_bytes": self.budget,
            "llb_bytes": self.llb_bytes,
            "weights": self.weights,
            "alignment": self.alignment,
            "lifetimes": self.lifetimes,
            **({"share": self.share} if self.share != "none" else {}),
        }

    @staticmethod
    def from_dict(d: dict) -> Target:
        """Read the plan file's ``target`` object (TargetError when a value is invalid or of the
        wrong JSON type: nothing is coerced, a string "16" is not an alignment)."""
        return Target(
            name=_field(d, "name", str),
            budget=_field(d, "l1_bytes", int, None, nullable=True),
            llb_bytes=_field(d, "llb_bytes", int, None, nullable=True),
            weights=_field(d, "weights", str, "in_place"),
            alignment=_field(d, "alignment", int, 16),
            lifetimes=_field(d, "lifetimes", str, "tflm"),
            share=_field(d, "share", str, "none"),
        )


_MISSING = object()


def _field(d: dict, key: str, typ: type, default=_MISSING, nullable: bool = False):
    """`d[key]` of JSON type `typ` (bools are not ints), `default` when absent, None when
    `nullable` and null; TargetError otherwise."""
    if key not in d:
        if default is _MISSING:
            raise TargetError(f"target: missing key {key!r}")
        return default
    v = d[key]
    if v is None and nullable:
        return None
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        what = "an integer" if typ is int else "a string"
        raise TargetError(f"target: {key!r} must be {what}{' or null' if nullable else ''}, got {v!r}")
    if typ is int and not 0 <= v < 1 << 63:
        raise TargetError(f"target: {key!r} is {v}, outside [0, 2**63)")
    return v


KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB

NO_LLB = 0  # a board without external RAM: its flash holds weights, but nothing can be spilled to it

PRESETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "stm32f746",
            320 * KiB,
            NO_LLB,
            "in_place",
            16,
            "STM32F746xx datasheet DS10916 §3.5: 320 KB SRAM (incl. 64 KB DTCM); 1 MB flash, weights read in "
            "place; no external RAM on the chip (the FMC can drive SDRAM on a board that has it)",
        ),
        Target(
            "stm32h743",
            512 * KiB,
            NO_LLB,
            "in_place",
            16,
            "STM32H743 reference manual RM0433 §2.3: 512 KB AXI-SRAM (D1 domain); 2 MB flash; no external RAM on the chip",
        ),
        Target(
            "nrf52840",
            256 * KiB,
            NO_LLB,
            "in_place",
            16,
            "nRF52840 Product Specification v1.7 §1: 256 KB RAM, 1 MB flash; no external RAM interface",
        ),
        Target(
            "rp2040",
            264 * KiB,
            NO_LLB,
            "in_place",
            16,
            "RP2040 datasheet §2.6: 264 KB on-chip SRAM in six banks; external QSPI flash (XIP, read-only "
            "at run time): no external RAM",
        ),
        Target(
            "esp32s3",
            512 * KiB,
            8 * MiB,
            "load",
            16,
            "ESP32-S3 datasheet v1.8 §4.1.2: 512 KB internal SRAM; 8 MB octal PSRAM (ESP32-S3-WROOM-1-N8R8) as LLB",
        ),
        Target(
            "arduino-nano33-ble",
            256 * KiB,
            NO_LLB,
            "in_place",
            16,
            "Arduino Nano 33 BLE (nRF52840): 256 KB SRAM, the TFLite Micro reference board; no external RAM",
        ),
        Target("unbounded", None, None, "in_place", 16, "no budget, unbounded LLB: find the minimum arena"),
    ]
}
DEFAULT_TARGET = "stm32f746"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


MAX_SIZE = 1 << 53  # 8 PiB: past any device (and the most bytes a graph may hold, planner.graph)


def parse_size(text: str | int) -> int:
    """Parse '256KiB', '1.5MB', '262144' (decimal k/M/G, binary KiB/MiB/GiB) into bytes,
    exactly (no float rounding); a size of 0, a fraction of a byte or past 2**53 is refused."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS or len(m.group(1)) > 30:
            raise TargetError(f"cannot read size {text!r}: use e.g. 262144, 256KiB, 1.5MB")
        exact = Fraction(m.group(1)) * _UNITS[m.group(2).lower()]
        if exact.denominator != 1:
            raise TargetError(f"size {text!r} is not a whole number of bytes")
        value = int(exact)
    if value <= 0:
        raise TargetError(f"size must be positive, got {text!r}")
    if value > MAX_SIZE:
        raise TargetError(f"size {text!r} is {value} bytes, more than 2**53: no device has that much")
    return value


def get_target(
    name: str | None = None, budget: str | int | None = None, weights: str | None = None, alignment: int | None = None
) -> Target:
    """A preset (default: unbounded) with optional overrides from the command line."""
    if name is not None and not name.strip():
        raise TargetError(f"the target name is empty; presets: {', '.join(PRESETS)}")
    key = (name or "unbounded").lower()
    if key not in PRESETS:
        raise TargetError(f"unknown target {name!r}{did_you_mean(key, PRESETS)}; presets: {', '.join(PRESETS)}")
    t = PRESETS[key]
    if budget is not None:
        t = replace(t, budget=parse_size(budget))
    if weights is not None:
        t = replace(t, weights=weights)
    if alignment is not None:
        t = replace(t, alignment=alignment)
    return t


def format_bytes(n: int | None) -> str:
    """A size for people: '474.0 KiB', '6.12 MiB', '2.00 GiB', '96 B' ('-' for None)."""
    if n is None:
        return "-"
    if n >= 1024 * GiB:
        return f"{n / (1024 * GiB):.2f} TiB"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:.2f} MiB"
    if n >= KiB:
        return f"{n / KiB:.1f} KiB"
    return f"{n} B"

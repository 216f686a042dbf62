"""The project: everything that defines a run, saved as ``project.toml``.

The project file is the contract between the window and the command line: every run the
window starts can be repeated with ``tlstudio train <run>/project.toml``.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ProjectError
from .io import atomic_write_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Strict):
    mode: Literal["auto", "given", "stratified"] = Field(
        "auto",
        title="Split",
        description="auto: use the split the data carries (NPZ keys, a CSV split column) or else a stratified "
        "random split; given: require the data's own split; stratified: always make a new stratified split.",
    )
    val_fraction: float = Field(0.15, ge=0.0, le=0.5, title="Validation share", description="Share of the images kept for validation (choosing the best epoch).")
    test_fraction: float = Field(0.15, ge=0.0, le=0.5, title="Test share", description="Share of the images kept aside for the final, untouched test.")
    seed: int = Field(0, ge=0, title="Split seed", description="The same seed always gives the same split.")
    file: str = Field("", description="Stored split (written on first use, relative to the project file); re-runs use the same split.")


class DataConfig(_Strict):
    source: str = Field("", title="Data", description="A folder of class folders, a CSV, an NPZ, DICOM files, ... (relative to the project file or absolute).")
    format: str = Field("auto", title="Format", description="auto, or a reader id: folder, csv, npz, dicom, ...")
    options: dict[str, Any] = Field(default_factory=dict, description="Reader options (CSV columns, DICOM window, ...).")
    split: SplitConfig = Field(default_factory=SplitConfig)
    target_source: str = Field("", title="Target domain data", description="Optional second data set, the target domain (domain adaptation).")


class ModelConfig(_Strict):
    architecture: str = Field("mobilenet_v2", title="Model", description="An architecture from the model catalog (see `tlstudio models`).")
    weights: str = Field("imagenet", title="Weights", description="imagenet: pretrained weights found offline; none: random initialisation (a from-scratch baseline); or the path of a weights file.")
    image_size: int = Field(128, ge=16, le=1024, title="Image size",
                            description="Images are resized to this many pixels a side: larger shows more detail and "
                                        "trains more slowly.")
    from_run: str = Field("", title="Start from run", description="Start from the trained model of an earlier run (sequential transfer).")


class TechniqueChoice(_Strict):
    # the best recipe measured on BreastMNIST (docs/results.md) is progressive unfreezing with its defaults
    id: str = Field("progressive-unfreezing", title="Technique")
    settings: dict[str, Any] = Field(default_factory=dict, description="The technique's own settings (validated by its Config).")


class AugmentationConfig(_Strict):
    preset: Literal["none", "light", "standard", "medical"] = Field(
        "light", title="Augmentation", description="none; light: small crops and flips; standard: the classic ImageNet recipe; medical: small rotations and crops, no colour changes."
    )
    horizontal_flip: bool = Field(
        True, title="Horizontal flips",
        description="Left-right flips in training, used only where mirror images show the same thing (see "
                    "mirror_safe; the Technique page asks this once per project). Untick to never flip.")
    vertical_flip: bool = Field(False, title="Vertical flips",
                                description="Also train on upside-down images: only for images without a top and a "
                                            "bottom (cells under a microscope).")
    mirror_safe: bool | None = Field(
        None, title="Mirror images show the same thing",
        description="Does a left-right mirror image of one of your images show the same finding (a skin lesion, "
                    "a cell) or not (a chest film, where the heart lies on the left)? Not answered yet: None. Only "
                    "a yes lets training and the test-time flip use mirror images.")
    rotation: float = Field(10.0, ge=0.0, le=180.0, title="Rotation (degrees)",
                            description="Turn each training image by a random angle of up to this many degrees.")
    scale_min: float = Field(0.8, gt=0.05, le=1.0, title="Smallest crop", description="Smallest share of the image a random crop keeps.")
    color_jitter: float = Field(0.0, ge=0.0, le=1.0, title="Colour jitter", description="Brightness/contrast jitter strength (0 = off).")
    test_time_flip: bool = Field(
        True, title="Test-time flip",
        description="Where training flips images (mirror images show the same thing), each prediction averages "
                    "the image and its mirror image (steadier on small data sets; measured in docs/results.md). "
                    "Costs a second forward pass.",
        json_schema_extra={"shown_when": {"horizontal_flip": [True], "preset": ["light", "standard", "medical"]}})

    @property
    def flips_in_training(self) -> bool:
        """Horizontal flips are part of the training augmentation: the preset augments, flips are
        ticked, and the project said that mirror images show the same thing (``mirror_safe`` is
        True; not answered means no)."""
        return self.preset != "none" and self.horizontal_flip and self.mirror_safe is True

    @property
    def flips_at_test(self) -> bool:
        """Test-time flip applies: the training augmentation flips horizontally too."""
        return self.flips_in_training and self.test_time_flip

    def flips_summary(self) -> str:
        """One sentence for reports: were mirror images used, and why (not)."""
        if self.flips_in_training:
            return ("Horizontal flips: used in training (mirror images show the same thing); test-time flip: "
                    + ("on (each prediction averages the image and its mirror image)." if self.test_time_flip
                       else "off."))
        if self.mirror_safe is None:
            why = "whether a mirror image shows the same thing was not answered (augmentation.mirror_safe)"
        elif self.mirror_safe is False:
            why = "mirror images do not show the same thing"
        else:
            why = "the augmentation does not flip" + (" (preset none)" if self.preset == "none" else "")
        return f"Horizontal flips: not used, in training or at test time ({why})."


class TrainingConfig(_Strict):
    # titles and descriptions are what the window shows (tooltips): plain words first, terms after;
    # json_schema_extra "shown_when" hides a setting that does not apply (momentum without SGD)
    epochs: int = Field(10, ge=1, le=10000, title="Epochs",
                        description="How many times training goes through all the training images. More epochs "
                                    "learn more and take longer (the Technique page's quick / standard / thorough "
                                    "set this).")
    batch_size: int = Field(32, ge=1, le=8192, title="Batch size",
                            description="How many images are looked at before each small correction of the network. "
                                        "32 suits most computers; lower it when the computer runs out of memory.")
    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        "adamw", title="Optimizer",
        description="How the network is corrected after each batch: AdamW (recommended) and Adam adapt the size of "
                    "each step by themselves; SGD needs a well-chosen learning rate and momentum.",
        json_schema_extra={"labels": {"adamw": "AdamW (recommended)", "adam": "Adam", "sgd": "SGD"}})
    lr: float = Field(1e-3, gt=0.0, le=10.0, title="Learning rate",
                      description="How big each correction is: too high and training jumps about, too low and it "
                                  "learns slowly. This is the new head's rate; techniques scale it for the pretrained "
                                  "layers.")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, title="Weight decay",
                                description="A gentle pull of every weight towards zero that discourages memorising "
                                            "the training images (AdamW/SGD weight decay).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, title="Momentum (SGD)",
                            description="SGD only: how much of the previous correction carries into the next (0.9 is "
                                        "usual).", json_schema_extra={"shown_when": {"optimizer": ["sgd"]}})
    schedule: Literal["none", "cosine", "cosine_warm_restarts", "onecycle", "step", "linear"] = Field(
        "cosine", title="Learning-rate schedule",
        description="How the learning rate changes during training: cosine lowers it smoothly to nothing "
                    "(recommended); warm restarts lower it and jump back up every few epochs; one-cycle raises then "
                    "lowers it; step divides it every few epochs; linear lowers it in a straight line; none keeps it.",
        json_schema_extra={"labels": {"none": "none (constant)", "cosine": "cosine (recommended)",
                                      "cosine_warm_restarts": "cosine with warm restarts", "onecycle": "one-cycle",
                                      "step": "step", "linear": "linear"}})
    warmup_epochs: float = Field(0.0, ge=0.0, le=100.0, title="Warm-up epochs",
                                 description="Start with a small learning rate and raise it over this many epochs, so "
                                             "that the new head's first large errors do not disturb the pretrained "
                                             "layers (linear warm-up).")
    restart_epochs: int = Field(5, ge=1, le=1000, title="Restart period T_0 (epochs)",
                                description="Warm restarts: epochs until the learning rate first jumps back up.",
                                json_schema_extra={"shown_when": {"schedule": ["cosine_warm_restarts"]}})
    restart_mult: int = Field(1, ge=1, le=10, title="Period multiplier T_mult",
                              description="Warm restarts: each period is this many times longer than the one before.",
                              json_schema_extra={"shown_when": {"schedule": ["cosine_warm_restarts"]}})
    step_epochs: int = Field(5, ge=1, le=1000, title="Step every (epochs)",
                             description="Step schedule: the learning rate is multiplied by the step factor every "
                                         "this many epochs.", json_schema_extra={"shown_when": {"schedule": ["step"]}})
    step_gamma: float = Field(0.1, gt=0.0, le=1.0, title="Step factor",
                              description="Step schedule: what the learning rate is multiplied by at each step.",
                              json_schema_extra={"shown_when": {"schedule": ["step"]}})
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, title="Label smoothing",
                                   description="Train towards slightly less certain answers (0.1: 90 % sure instead of "
                                               "100 %); can make the probabilities more honest. 0 = off.")
    class_balance: Literal["none", "weighted_loss", "balanced_sampler"] = Field(
        "none", title="Class balance",
        description="When one class has far fewer images than another: count the errors on the rare class more "
                    "(weighted loss) or show the classes equally often (balanced sampler), so that it is not ignored.",
        json_schema_extra={"labels": {"none": "none", "weighted_loss": "weighted loss",
                                      "balanced_sampler": "balanced sampler"}})
    grad_clip: float = Field(0.0, ge=0.0, title="Gradient clipping (norm, 0 = off)",
                             description="Limit how big a single correction can be, against sudden jumps of the loss. "
                                         "0 = off.")
    seed: int = Field(0, ge=0, title="Seed",
                      description="The starting point of every random choice (the new head's weights, the order of "
                                  "the images, the augmentation): the same seed gives the same run.")
    deterministic: bool = Field(False, title="Deterministic", description="Bit-for-bit repeatable on the same machine (slower on GPU).")
    device: str = Field("auto", title="Device",
                        description="Where training runs: auto (a graphics card when there is one, else the "
                                    "processor), cpu, cuda (an NVIDIA graphics card), cuda:N, or mps (Apple).")
    amp: bool = Field(True, title="Mixed precision (GPU)",
                      description="On a graphics card, compute in half precision where it is safe: faster, less "
                                  "memory, the same accuracy (bf16/fp16 autocast). Ignored on the processor.")
    monitor: str = Field("auto", title="Best-model metric",
                         description="Which model is kept: auto lets the technique choose; last keeps the final "
                                     "epoch; val_auc, val_accuracy, val_balanced_accuracy, val_loss ... keep the epoch "
                                     "with the best validation result.")
    early_stopping: int = Field(0, ge=0, title="Early stopping patience",
                                description="Stop when the validation result has not improved for this many epochs "
                                            "(0 = off: every epoch runs).", json_schema_extra={"labels": {0: "off"}})
    num_workers: int = Field(-1, ge=-1, le=64, title="Loader workers",
                             description="Processes that prepare batches beside the training (auto: none on "
                             "the CPU, several on a GPU so that it never waits for data).",
                             json_schema_extra={"labels": {-1: "auto"}})

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?", (v or "").strip().lower()):
            raise ValueError(f"unknown device {v!r}: choose auto, cpu, cuda, cuda:N or mps")
        return v.strip().lower()

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_auto(cls, v):
        return -1 if isinstance(v, str) and v.strip().lower() == "auto" else v
    threads: int = Field(0, ge=0, le=512, title="CPU threads",
                         description="How many processor cores training may use (all: as many as other programs "
                                     "leave free, checked every epoch).",
                         json_schema_extra={"labels": {0: "all"}})
    augment_on: Literal["auto", "device", "loader"] = Field(
        "auto", title="Augmentation runs",
        description="auto: on the GPU when training on one (whole batches straight from the image cache, random "
                    "per image), else in the loader; device: always on whole batches; loader: image by image.")


class DecisionConfig(_Strict):
    """How a classifier's outputs become decisions (applied after training, on validation)."""

    positive_class: str = Field(
        "", title="Positive class",
        description="Two classes: the class that sensitivity is about (the finding: malignant, abnormal ...). "
                    "Empty: guessed from the class names, else the second class.")
    threshold_method: Literal["fixed", "youden", "sensitivity", "specificity"] = Field(
        "fixed", title="Operating point",
        description="How the threshold of a two-class run is chosen, always on the validation split: fixed; "
                    "Youden's J (best sensitivity + specificity); sensitivity at least the target; specificity at "
                    "least the target.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, title="Fixed threshold",
                             description="Call the positive class from this probability on (method fixed).")
    target: float = Field(0.9, gt=0.0, le=1.0, title="Target sensitivity / specificity",
                          description="The least sensitivity (or specificity) the threshold must reach on validation.")
    calibrate: bool = Field(True, title="Calibrate probabilities",
                            description="Temperature scaling fitted on the validation split after training: a "
                                        "probability of 0.8 then means right about 8 times in 10.")
    conformal_level: float = Field(
        0.9, ge=0.0, lt=1.0, title="Prediction-set level",
        description="Split conformal prediction sets that hold the true class this often (0.9 = 90%); 0 = off.")
    conformal_method: Literal["lac", "aps"] = Field(
        "lac", title="Prediction-set method",
        description="LAC: the smallest sets; APS: sets that grow with how hard the case is.")
    report_by: str = Field("", title="Report by",
                           description="A column of the data (site, scanner, sex, age band ...): results per subgroup.")
    leak_check: bool = Field(True, title="Leakage check",
                             description="Look for the same or a near-identical image on both sides of the split.")


class Project(_Strict):
    """A Transfer Learning Studio project."""

    name: str = Field("Untitled", title="Project name")
    task: str = Field("image-classification", title="Task",
                      description="The kind of problem: the id of a task plugin (image-classification, detection, "
                                  "captioning, text-classification, or one a plugin adds).")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    technique: TechniqueChoice = Field(default_factory=TechniqueChoice)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)

    _path: Path | None = PrivateAttr(default=None)

    # --- paths ------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def resolve(self, p: str | Path) -> Path:
        """A path of the project (data source, split file ...) made absolute."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def with_absolute_paths(self) -> "Project":
        """A copy whose paths no longer depend on where the file lies (for the run store)."""
        c = self.model_copy(deep=True)
        if c.data.source:
            c.data.source = str(self.resolve(c.data.source))
        if c.data.target_source:
            c.data.target_source = str(self.resolve(c.data.target_source))
        if c.data.split.file:
            c.data.split.file = str(self.resolve(c.data.split.file))
        w = c.model.weights
        if w not in ("imagenet", "none", "") and not w.startswith("run:"):
            c.model.weights = str(self.resolve(w))
        c._path = self._path
        return c

    # --- file -------------------------------------------------------------------------
    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))  # TOML has no null: None = not set

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self._path
        if path is None:
            raise ValueError("No file name given for the project.")
        atomic_write_text(path, self.to_toml())
        self._path = Path(path).resolve()
        return self._path


def format_validation_error(err: ValidationError, where: str, prefix: str = "") -> str:
    """One line per problem: ``where: field.path: what was expected (got ...)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in (prefix.split(".") if prefix else []) + list(e.get("loc", ())))
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        got = e.get("input", None)
        if e.get("type") == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        lines.append(f"{where}: {loc or '(top level)'}: {msg}{shown}")
    return "\n".join(lines)


def project_from_dict(data: dict, where: str = "project", path: Path | None = None) -> Project:
    try:
        p = Project.model_validate(data)
    except ValidationError as e:
        raise ProjectError(format_validation_error(e, where)) from None
    p._path = Path(path).resolve() if path else None
    return p


def load_project(path: str | Path) -> Project:
    """Read a project.toml; a bad file raises :class:`ProjectError` naming the file, the
    field and what was expected."""
    path = Path(path)
    if path.is_dir():
        path = path / "project.toml"
    if not path.exists():
        raise ProjectError(f"{path}: no such project file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProjectError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not a text file (expected TOML)") from None
    return project_from_dict(data, where=str(path), path=path)

"""One generic form builder: a pydantic model class in, a Qt form out.

Every field becomes a control: ``int`` and ``float`` -> spin boxes bounded by the field's
``ge``/``gt``/``le``/``lt`` (arrows and wheel stay inside; a typed value outside is kept,
marked and explained, never silently clamped), ``Literal``/``Enum`` -> combo boxes,
``bool`` -> check boxes, ``str`` -> line edits (or an editable combo when choices are
given), nested models -> a titled group, anything else -> a line edit holding JSON.  Titles
come from ``Field(title=...)``, tooltips from ``description`` and the bounds.  The form
validates with the model itself after every edit: problems are shown under the field and
reported through ``problems()`` / ``validityChanged`` (the window disables Train with them).

Technique panels, training, augmentation and split settings all use this one class.
"""
from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QSizePolicy,
                               QVBoxLayout, QWidget)

from .spinboxes import FloatBox, IntBox

INVALID_STYLE = "border: 1px solid #c0392b; background: #fdecea;"
ERROR_LABEL_STYLE = "color: #b03a2e;"


# --- reading a field -------------------------------------------------------------------------
def _unwrap_optional(ann: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(ann)):
            return args[0], True
    return ann, False


def _bounds(info) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in info.metadata:
        for k in ("ge", "gt", "le", "lt"):
            v = getattr(m, k, None)
            if v is not None:
                out[k] = v
    return out


def _num(v: float) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:g}"


def bounds_text(b: dict[str, float]) -> str:
    lo = f"more than {_num(b['gt'])}" if "gt" in b else (f"at least {_num(b['ge'])}" if "ge" in b else "")
    hi = f"less than {_num(b['lt'])}" if "lt" in b else (f"at most {_num(b['le'])}" if "le" in b else "")
    if lo and hi:
        return f"Allowed: {lo} and {hi}."
    return f"Allowed: {lo or hi}." if (lo or hi) else ""


def friendly_error(err: dict) -> str:
    """A pydantic error in words a domain expert reads."""
    t, ctx = err.get("type", ""), err.get("ctx") or {}
    n = lambda k: _num(ctx[k]) if k in ctx else "?"  # noqa: E731
    table = {
        "less_than_equal": lambda: f"must be at most {n('le')}",
        "less_than": lambda: f"must be less than {n('lt')}",
        "greater_than_equal": lambda: f"must be at least {n('ge')}",
        "greater_than": lambda: f"must be more than {n('gt')}",
        "int_parsing": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "bool_parsing": lambda: "must be on or off",
        "literal_error": lambda: f"choose one of {ctx.get('expected', '')}",
        "extra_forbidden": lambda: "unknown setting",
        "missing": lambda: "required",
    }
    if t in table:
        return table[t]()
    msg = err.get("msg", "invalid")
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def humanize(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


# --- one field --------------------------------------------------------------------------------
class FieldEditor:
    """A control for one field: ``get()`` (raises ValueError on unparseable text),
    ``set(value)``, and the widget shown."""

    def __init__(self, name: str, info, widget: QWidget, kind: str, choices: list | None = None):
        self.name, self.info, self.widget, self.kind, self.choices = name, info, widget, kind, choices

    def get(self) -> Any:
        w, k = self.widget, self.kind
        if k == "bool":
            return w.isChecked()
        if k == "int":
            try:
                return w.current()
            except ValueError:
                words = " or ".join(f"'{x}'" for x in w.specials.values())
                raise ValueError("must be a whole number" + (f" (or {words})" if words else "")) from None
        if k == "float":
            try:
                return w.current()
            except ValueError:
                raise ValueError("must be a number") from None
        if k == "choice":
            return self.choices[w.currentIndex()] if w.currentIndex() >= 0 else None
        if k == "str":
            return w.currentText() if isinstance(w, QComboBox) else w.text()
        if k == "optional":
            t = w.text().strip()
            if not t:
                return None
            try:
                return json.loads(t)
            except json.JSONDecodeError:
                return t
        if k == "json":
            t = w.text().strip()
            try:
                return json.loads(t) if t else None
            except json.JSONDecodeError:
                if self.info.annotation in (list[str],) or typing.get_origin(self.info.annotation) is list:
                    return [s.strip() for s in t.split(",") if s.strip()]
                raise ValueError("must be JSON (for example [1, 2] or {\"a\": 1})") from None
        raise ValueError(f"unsupported field kind {k}")

    def set(self, value: Any) -> None:
        w, k = self.widget, self.kind
        w.blockSignals(True)
        try:
            if k == "bool":
                w.setChecked(bool(value))
            elif k in ("int", "float"):
                if value is not None:
                    w.setValue(value)
            elif k == "choice":
                i = self.choices.index(value) if value in self.choices else -1
                w.setCurrentIndex(i)
            elif k == "str":
                if isinstance(w, QComboBox):
                    w.setEditText("" if value is None else str(value))
                else:
                    w.setText("" if value is None else str(value))
            elif k == "optional":
                w.setText("" if value is None else (value if isinstance(value, str) else json.dumps(value)))
            elif k == "json":
                if isinstance(value, list) and all(isinstance(x, str) for x in value):
                    w.setText(", ".join(value))
                else:
                    w.setText("" if value is None else json.dumps(value))
        finally:
            w.blockSignals(False)


def _choices_of(ann: Any) -> list | None:
    if typing.get_origin(ann) is Literal:
        return list(typing.get_args(ann))
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return [m.value for m in ann]
    return None


# --- the form ---------------------------------------------------------------------------------
class PydanticForm(QWidget):
    """A form for a pydantic model class (see the module docstring).

    ``values``: initial values (a dict or a model instance; missing fields take defaults).
    ``exclude``/``only``: fields to leave out / keep.  ``choices``: field -> suggestions for
    ``str`` fields (an editable combo).  ``steps``: field -> fixed step of a float.
    Signals: ``changed()`` after any edit, ``validityChanged(bool)``."""

    changed = Signal()
    validityChanged = Signal(bool)

    def __init__(self, model_cls: type[BaseModel], values: dict | BaseModel | None = None, *,
                 exclude: typing.Iterable[str] = (), only: typing.Iterable[str] | None = None,
                 choices: dict[str, list[str]] | None = None, steps: dict[str, float] | None = None,
                 title: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.model_cls = model_cls
        self.title = title or getattr(model_cls, "__name__", "")
        self._choices = dict(choices or {})
        self._steps = dict(steps or {})
        self.exclude = set(exclude)
        self.editors: dict[str, FieldEditor] = {}
        self.subforms: dict[str, PydanticForm] = {}
        self._error_labels: dict[str, QLabel] = {}
        self._errors: dict[str, str] = {}
        self._form_error = QLabel()
        self._form_error.setStyleSheet(ERROR_LABEL_STYLE)
        self._form_error.setWordWrap(True)
        self._form_error.hide()
        self._valid = True
        self._hidden_values: dict[str, Any] = {}
        self._cells: dict[str, QWidget] = {}
        self._conditions: dict[str, dict[str, list]] = {}  # field -> {other field: values that show it}
        names = [n for n in model_cls.model_fields if n not in self.exclude]
        if only is not None:
            keep = list(only)
            names = [n for n in keep if n in model_cls.model_fields]
        self.field_names = names

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.layout_ = QFormLayout()
        self.layout_.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.layout_.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.layout_.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        outer.addLayout(self.layout_)
        outer.addWidget(self._form_error)
        for name in names:
            self._add_field(name, model_cls.model_fields[name])
        self.set_values(values)

    # --- building ---------------------------------------------------------------------
    def _add_field(self, name: str, info) -> None:
        ann, optional = _unwrap_optional(info.annotation)
        title = info.title or humanize(name)
        b = _bounds(info)
        tip = " ".join(x for x in ((info.description or ""), bounds_text(b)) if x)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            box = QGroupBox(title)
            sub = PydanticForm(ann, choices={k.split(".", 1)[1]: v for k, v in self._choices.items()
                                             if k.startswith(name + ".")}, parent=box, title=title)
            QVBoxLayout(box).addWidget(sub)
            sub.changed.connect(self._on_edit)
            self.subforms[name] = sub
            box.setToolTip(tip)
            self.layout_.addRow(box)
            return
        choices = _choices_of(ann)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if optional and ann in (int, float, str):
            w = QLineEdit()
            w.setPlaceholderText("(none)")
            w.textChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "optional")
        elif ann is bool and optional:  # yes / no / not answered yet
            w = QComboBox()
            choices = [None, True, False]
            labels = extra.get("labels") if isinstance(extra.get("labels"), dict) else {}
            for c, default in zip(choices, ("(not answered yet)", "Yes", "No")):
                w.addItem(str(labels.get(str(c).lower(), default)))
            w.currentIndexChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "choice", choices)
        elif ann is bool:
            w = QCheckBox()
            w.toggled.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "bool")
        elif choices is not None:
            w = QComboBox()
            labels = extra.get("labels", {}) if isinstance(extra.get("labels"), dict) else {}
            for c in choices:
                w.addItem(str(labels.get(c, c)))
            w.currentIndexChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "choice", choices)
        elif ann is int:
            labels = extra.get("labels") if isinstance(extra.get("labels"), dict) else None
            w = IntBox(b, specials=labels)
            w.textChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "int")
        elif ann is float:
            default = info.default if isinstance(info.default, (int, float)) else 0.0
            hi = b.get("le", b.get("lt"))
            decade = bool(extra.get("log")) or (default not in (0, None) and hi is not None and abs(default) < hi / 100)
            w = FloatBox(b, step=self._steps.get(name) or extra.get("step"), decade=decade)
            w.textChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "float")
        elif ann is str and name in self._choices:
            w = QComboBox()
            w.setEditable(True)
            w.addItems([str(c) for c in self._choices[name]])
            w.editTextChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "str")
        elif ann is str:
            w = QLineEdit()
            w.textChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "str")
        else:
            w = QLineEdit()
            w.setPlaceholderText("JSON")
            w.textChanged.connect(self._on_edit)
            ed = FieldEditor(name, info, w, "json")
        w.setObjectName(f"field_{name}")
        w.setToolTip(tip)
        w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        label = QLabel(title)
        label.setToolTip(tip)
        label.setBuddy(w)
        err = QLabel()
        err.setObjectName(f"error_{name}")
        err.setStyleSheet(ERROR_LABEL_STYLE)
        err.setWordWrap(True)
        err.hide()
        cell = QWidget()
        v = QVBoxLayout(cell)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(1)
        v.addWidget(w)
        v.addWidget(err)
        self.layout_.addRow(label, cell)
        self.editors[name] = ed
        self._error_labels[name] = err
        self._cells[name] = cell
        when = extra.get("shown_when")
        if isinstance(when, dict):
            self._conditions[name] = {k: list(v) for k, v in when.items()}

    # --- values -----------------------------------------------------------------------
    def set_values(self, values: dict | BaseModel | None) -> None:
        """Show these values (missing fields: the model's defaults)."""
        if isinstance(values, BaseModel):
            values = values.model_dump(mode="python")
        values = dict(values or {})
        for name, info in self.model_cls.model_fields.items():
            if name not in self.editors and name not in self.subforms:
                if name in values:
                    self._hidden_values[name] = values[name]
                continue
            v = values.get(name, None if info.is_required() else info.get_default(call_default_factory=True))
            if name in self.subforms:
                self.subforms[name].set_values(v)
            else:
                self.editors[name].set(v)
        self._validate(emit=False)
        self._apply_conditions()

    def raw_values(self) -> dict:
        """Values as entered ({field: value}); unparseable entries are left out."""
        out = dict(self._hidden_values)
        for name, ed in self.editors.items():
            try:
                out[name] = ed.get()
            except ValueError:
                pass
        for name, sub in self.subforms.items():
            out[name] = sub.raw_values()
        return out

    def model(self) -> BaseModel | None:
        """The validated model, or None while a value is invalid."""
        try:
            return self.model_cls.model_validate(self.raw_values()) if self._valid else None
        except ValidationError:
            return None

    def values(self) -> dict | None:
        """The validated values as plain JSON-able data, or None while invalid."""
        m = self.model()
        return None if m is None else m.model_dump(mode="json")

    # --- validation ---------------------------------------------------------------------
    def _on_edit(self, *_a) -> None:
        self._validate(emit=True)
        self._apply_conditions()
        self.changed.emit()

    def _apply_conditions(self) -> None:
        """Hide the fields that do not apply (``json_schema_extra={"shown_when": {"optimizer": ["sgd"]}}``:
        momentum only for SGD); a hidden field keeps its value."""
        if not self._conditions:
            return
        vals = self.raw_values()
        for name, when in self._conditions.items():
            on = all(vals.get(k) in allowed for k, allowed in when.items())
            self.layout_.setRowVisible(self._cells[name], on)

    def shown(self, name: str) -> bool:
        """Whether a field applies to the current values (is not hidden by its condition)."""
        if name not in self._conditions:
            return name in self.editors
        vals = self.raw_values()
        return all(vals.get(k) in allowed for k, allowed in self._conditions[name].items())

    def errors(self) -> dict[str, str]:
        """field -> message (nested: "split.val_fraction")."""
        return dict(self._errors)

    def problems(self) -> list[str]:
        """One line per problem, naming the field by its title."""
        out = []
        for key, msg in self._errors.items():
            name = key.split(".")[0]
            info = self.model_cls.model_fields.get(name)
            title = (info.title or humanize(name)) if info else ("Settings" if not key else humanize(key))
            if "." in key and name in self.subforms:
                sub_name = key.split(".", 1)[1]
                sinfo = self.subforms[name].model_cls.model_fields.get(sub_name)
                title += " › " + ((sinfo.title or humanize(sub_name)) if sinfo else sub_name)
            out.append(f"{title}: {msg}")
        return out

    def is_valid(self) -> bool:
        return self._valid

    def _validate(self, emit: bool = True) -> None:
        errors: dict[str, str] = {}
        for name, ed in self.editors.items():
            try:
                ed.get()
            except ValueError as e:
                errors[name] = str(e)
        try:
            self.model_cls.model_validate(self.raw_values())
        except ValidationError as e:
            for err in e.errors():
                loc = [str(x) for x in err.get("loc", ())]
                key = ".".join(loc)
                if loc and loc[0] in errors:
                    continue
                errors.setdefault(key, friendly_error(err))
        self._errors = errors
        self._show_errors()
        valid = not errors
        changed = valid != self._valid
        self._valid = valid
        if emit and changed:
            self.validityChanged.emit(valid)

    def _show_errors(self) -> None:
        for name, ed in self.editors.items():
            msg = self._errors.get(name)
            lab = self._error_labels[name]
            lab.setText(msg or "")
            lab.setVisible(bool(msg))
            ed.widget.setStyleSheet(INVALID_STYLE if msg else "")
            ed.widget.setProperty("invalid", bool(msg))
        for name, sub in self.subforms.items():
            sub._errors = {k.split(".", 1)[1]: v for k, v in self._errors.items() if k.startswith(name + ".")}
            sub._show_errors()
        top = [m for k, m in self._errors.items() if not k or (k.split(".")[0] not in self.editors
                                                               and k.split(".")[0] not in self.subforms)]
        self._form_error.setText("\n".join(top))
        self._form_error.setVisible(bool(top))

    def editor(self, name: str) -> QWidget:
        """The control of a field ("split.seed" for a nested one)."""
        if "." in name:
            head, rest = name.split(".", 1)
            return self.subforms[head].editor(rest)
        return self.editors[name].widget

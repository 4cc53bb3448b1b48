"""Console filters for the cost pages (GET forms: a bad value shows an error, never a 500)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django import forms
from django.core.validators import RegexValidator

from billing.calendar import add_months, month_end, month_start
from billing.schemas import TAG_KEY_PATTERN
from billing.selectors import GroupBy

MAX_PAGE_DAYS = 731


def _is_iso(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


class DateInput(forms.DateInput):
    input_type = "date"


@dataclass(frozen=True, slots=True)
class Preset:
    label: str
    start: date
    end: date


def range_presets(today: date) -> list[Preset]:
    last_month = add_months(month_start(today), -1)
    return [
        Preset("Last 7 days", today - timedelta(days=6), today),
        Preset("Last 30 days", today - timedelta(days=29), today),
        Preset("This month", month_start(today), today),
        Preset("Last month", last_month, month_end(last_month)),
        Preset("Last 90 days", today - timedelta(days=89), today),
    ]


class RangeForm(forms.Form):
    """A date range in the tenant's calendar; defaults to the last 30 days."""

    start = forms.DateField(required=False, widget=DateInput)
    end = forms.DateField(required=False, widget=DateInput)

    max_days: int | None = MAX_PAGE_DAYS

    def __init__(self, data=None, *, today: date, **kwargs) -> None:
        if data is not None and not (data.get("start") and data.get("end")):
            # show the range in force in the inputs, not empty fields
            data = data.copy()
            data["end"] = data.get("end") or today.isoformat()
            if not data.get("start"):
                end = date.fromisoformat(data["end"]) if _is_iso(data["end"]) else today
                data["start"] = (end - timedelta(days=29)).isoformat()
        super().__init__(data, **kwargs)
        self.today = today

    def clean(self) -> dict:
        cleaned = super().clean()
        end = cleaned.get("end") or self.today
        start = cleaned.get("start") or end - timedelta(days=29)
        if start > end:
            raise forms.ValidationError("The start date must be on or before the end date.")
        if self.max_days is not None and (end - start).days >= self.max_days:
            raise forms.ValidationError(f"Pick a range of at most {self.max_days} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def range(self) -> tuple[date, date]:
        """The valid range, or the default one when the input is invalid (errors stay on the form)."""
        if self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"]
        return self.today - timedelta(days=29), self.today


class ExportForm(RangeForm):
    """Exports take any range (they stream)."""

    max_days = None
    key = forms.IntegerField(required=False, min_value=1)


class CostTableForm(RangeForm):
    compare = forms.TypedChoiceField(
        required=False, choices=[("1", "Compare"), ("0", "No comparison")], coerce=lambda v: v == "1", empty_value=True
    )
    group = forms.TypedChoiceField(
        required=False, choices=[(g.value, g.value) for g in GroupBy], coerce=GroupBy, empty_value=GroupBy.MODEL
    )
    tag = forms.CharField(required=False, validators=[RegexValidator(TAG_KEY_PATTERN, "Not a tag name.")])
    cursor = forms.CharField(required=False, max_length=200)

    def option(self, name: str, default):
        """A cleaned option, or ``default`` when that field is invalid."""
        self.is_valid()
        return self.cleaned_data.get(name, default)


class DrillDownForm(forms.Form):
    key = forms.IntegerField(required=False, min_value=1)
    model = forms.CharField(required=False, max_length=128)
    cursor = forms.CharField(required=False, max_length=200)

    def option(self, name: str):
        self.is_valid()
        return self.cleaned_data.get(name) or None


class CursorForm(forms.Form):
    cursor = forms.CharField(required=False, max_length=200)

    def option(self, name: str):
        self.is_valid()
        return self.cleaned_data.get(name) or None

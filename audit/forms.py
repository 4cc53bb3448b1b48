"""Search and export forms of the audit console. They only parse: dates are days in the tenant's
timezone, turned into an aware [since, until) range for the selectors."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time, timedelta

from django import forms

from audit.models import KNOWN_ACTIONS
from audit.selectors import MIN_CONTAINS, REQUEST_STATUSES, AuditFilters, RequestLogFilters

EXPORT_FORMATS = (("csv", "CSV"), ("jsonl", "JSON Lines"))


def _day_start(day: date, tz_name: str) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zoneinfo.ZoneInfo(tz_name))


class _DateRangeForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, tz_name: str = "UTC", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tz_name = tz_name

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def _range(self) -> tuple[datetime | None, datetime | None]:
        start, end = self.cleaned_data.get("date_from"), self.cleaned_data.get("date_to")
        since = _day_start(start, self.tz_name) if start else None
        until = _day_start(end + timedelta(days=1), self.tz_name) if end else None
        return since, until


class AuditSearchForm(_DateRangeForm):
    actor = forms.CharField(
        required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "email, key or id"})
    )
    action = forms.CharField(
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"list": "audit-actions", "autocomplete": "off", "placeholder": "e.g. api_key"}),
    )
    target = forms.CharField(
        required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "type:id, id or name"})
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search metadata",
        widget=forms.SearchInput(attrs={"placeholder": "e.g. invalid_api_key"}),
    )
    field_order = ["q", "action", "actor", "target", "date_from", "date_to"]
    known_actions = KNOWN_ACTIONS

    def clean_q(self) -> str:
        q = self.cleaned_data["q"].strip()
        if q and len(q) < MIN_CONTAINS:
            raise forms.ValidationError(f"Type at least {MIN_CONTAINS} characters to search.")
        return q

    def filters(self) -> AuditFilters:
        since, until = self._range()
        data = self.cleaned_data
        return AuditFilters(
            actor=data["actor"].strip(),
            action=data["action"].strip(),
            target=data["target"].strip(),
            since=since,
            until=until,
            q=data["q"],
        )


class RequestLogSearchForm(_DateRangeForm):
    request_id = forms.CharField(required=False, max_length=64, label="Request id")
    key = forms.CharField(
        required=False, max_length=64, label="Key", widget=forms.TextInput(attrs={"placeholder": "key id or sk-sntl-…"})
    )
    model = forms.CharField(required=False, max_length=128)
    status = forms.ChoiceField(required=False, choices=[("", "Any")] + [(s, s) for s in REQUEST_STATUSES])
    field_order = ["request_id", "key", "model", "status", "date_from", "date_to"]

    def filters(self) -> RequestLogFilters:
        since, until = self._range()
        data = self.cleaned_data
        return RequestLogFilters(
            request_id=data["request_id"].strip(),
            key=data["key"].strip(),
            model=data["model"].strip(),
            status=data["status"],
            since=since,
            until=until,
        )


class AuditExportForm(AuditSearchForm):
    format = forms.ChoiceField(choices=EXPORT_FORMATS)


class RequestLogExportForm(RequestLogSearchForm):
    format = forms.ChoiceField(choices=EXPORT_FORMATS)

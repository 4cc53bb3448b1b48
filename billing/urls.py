from datetime import date

from django.urls import path, register_converter

from billing import views

app_name = "billing"


class IsoDateConverter:
    regex = r"\d{4}-\d{2}-\d{2}"

    def to_python(self, value: str) -> date:
        return date.fromisoformat(value)  # ValueError (e.g. 2026-02-30) -> no match -> 404

    def to_url(self, value: date | str) -> str:
        return value.isoformat() if isinstance(value, date) else str(value)


register_converter(IsoDateConverter, "isodate")

urlpatterns = [
    path("", views.costs, name="costs"),
    path("day/<isodate:day>/", views.costs_day, name="costs_day"),
    path("keys/<int:key_id>/", views.costs_key, name="costs_key"),
    path("export/requests.csv", views.export_usage_csv, name="export_usage_csv"),
    path("export/daily-usage.csv", views.export_rollup_csv, name="export_rollup_csv"),
    path("statements/", views.statements, name="statements"),
    path("statements/<int:year>-<int:month>/", views.statement, name="statement"),
    path("alerts/", views.alerts, name="alerts"),
]

"""Forms for the contacts screens: they parse input; every rule is checked by contacts.services."""

from __future__ import annotations

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from contacts.models import ContactPoint

# Rows for addresses on the "new contact" form; more can be added on the contact page later.
NEW_CONTACT_POINT_ROWS = 3


def address_check_attrs(*, prefix: str, exclude=None) -> dict[str, str]:
    """htmx attributes that ask, while the agent types, whether the address belongs to another contact."""
    query = f"?prefix={prefix}" + (f"&exclude={exclude}" if exclude else "")
    slot = prefix.rstrip("-") or "point"
    return {
        "hx-get": reverse("contacts:address-check") + query,
        "hx-trigger": "input changed delay:400ms, change",
        "hx-include": f"[name='{prefix}kind'], [name='{prefix}value']",
        "hx-target": f"#address-check-{slot}",
        "hx-swap": "outerHTML",
        "aria-describedby": f"address-check-{slot}",
    }


def split_tags(text: str) -> list[str]:
    return [tag for tag in (part.strip() for part in (text or "").split(",")) if tag]


class ContactForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), required=False)
    last_name = forms.CharField(label=_("Last name"), required=False)
    company = forms.CharField(label=_("Company"), required=False)
    notes = forms.CharField(label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = forms.CharField(label=_("Tags"), required=False, help_text=_("Separate tags with commas."))

    def contact_fields(self) -> dict:
        data = {name: self.cleaned_data.get(name, "") for name in ("first_name", "last_name", "company", "notes")}
        data["tags"] = split_tags(self.cleaned_data.get("tags", ""))
        return data

    def add_service_errors(self, error: ValidationError) -> list[dict]:
        """Put the service's errors (keyed like this form) on the fields; returns the addresses owned by others."""
        taken = []
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return taken
        for key, errors in error.error_dict.items():
            key = self.field_key(key)
            for item in errors:
                if item.code == "point_taken" and item.params:
                    taken.append({"id": item.params["id"], "name": item.params["contact"]})
            field = None if key == NON_FIELD_ERRORS or key not in self.fields else key
            self.add_error(field, ValidationError(errors))
        return taken

    def field_key(self, key: str) -> str:
        return key


class NewContactForm(ContactForm):
    """The contact's fields plus a few address rows named like the service's error keys (``points-0-value``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for index in range(NEW_CONTACT_POINT_ROWS):
            self.fields[f"points-{index}-kind"] = forms.ChoiceField(
                label=_("Kind"), choices=ContactPoint.Kind.choices, required=False
            )
            self.fields[f"points-{index}-value"] = forms.CharField(
                label=_("Address"),
                required=False,
                widget=forms.TextInput(attrs=address_check_attrs(prefix=f"points-{index}-")),
            )
            self.fields[f"points-{index}-label"] = forms.CharField(label=_("Label"), required=False)

    def point_rows(self) -> list[tuple]:
        return [
            (self[f"points-{index}-kind"], self[f"points-{index}-value"], self[f"points-{index}-label"])
            for index in range(NEW_CONTACT_POINT_ROWS)
        ]

    def points(self) -> list[tuple[str, str, str]]:
        """The filled rows; empty rows are skipped, so the service's ``points-<i>`` count filled rows only."""
        points = []
        self._rows = []
        for index in range(NEW_CONTACT_POINT_ROWS):
            value = self.cleaned_data.get(f"points-{index}-value", "")
            if value.strip():
                kind = self.cleaned_data.get(f"points-{index}-kind", "")
                points.append((kind, value, self.cleaned_data.get(f"points-{index}-label", "")))
                self._rows.append(index)
        return points

    def field_key(self, key: str) -> str:
        prefix, _sep, rest = key.partition("-")
        position, _sep, name = rest.partition("-")
        rows = getattr(self, "_rows", [])
        if prefix == "points" and position.isdigit() and int(position) < len(rows):
            return f"points-{rows[int(position)]}-{name}"
        return key


class PointForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=ContactPoint.Kind.choices)
    value = forms.CharField(label=_("Address"))
    label = forms.CharField(label=_("Label"), required=False)

    def __init__(self, *args, contact=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if contact is not None:
            self.fields["value"].widget.attrs.update(address_check_attrs(prefix="", exclude=contact.pk))

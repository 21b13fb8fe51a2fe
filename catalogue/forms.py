from __future__ import annotations

import json

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from catalogue.models import Species
from reid.schema import SchemaError, parse_bbox_list


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that accepts several files; validation of the images is the service's job."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": "image/*", "multiple": True})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):  # noqa: ANN001, ANN201 - Django's signature
        files = data if isinstance(data, (list, tuple)) else [data]
        files = [file for file in files if file]
        if not files and self.required:
            raise forms.ValidationError("Please add at least one photo.")
        return files


class SightingForm(forms.Form):
    """The upload form; boxes, dates and places are checked by ``sighting_create`` against
    the ingestion schema (:mod:`reid.schema`), for the API alike."""

    species = forms.ModelChoiceField(queryset=Species.objects.all())
    photos = MultipleFileField(help_text="One or more photos of the same animal.")
    observed_at = forms.DateTimeField(
        required=False,
        label="Seen at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty to use the date stored in the first photo.",
    )
    latitude = forms.FloatField(required=False, min_value=-90, max_value=90)
    longitude = forms.FloatField(required=False, min_value=-180, max_value=180)
    viewpoint = forms.CharField(
        required=False,
        max_length=30,
        help_text="Optional: which side of the animal the photos show (e.g. left, right).",
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    bboxes = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_bboxes(self) -> list:
        raw = self.cleaned_data.get("bboxes") or "[]"
        try:
            return parse_bbox_list(json.loads(raw))
        except json.JSONDecodeError:
            message = "The drawn boxes could not be read; please draw them again."
        except SchemaError as error:
            message = f"The drawn boxes are not valid ({error}); please draw them again."
        # The field is hidden, so its error is shown at the top of the form.
        self.add_error(None, message)
        return []


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=False)

    class Meta:
        model = User
        fields = ("username", "email")

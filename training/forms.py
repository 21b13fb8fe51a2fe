from __future__ import annotations

from django import forms

from catalogue.services.imports import FORMATS
from training.models import TrainingRun


class SpeciesForm(forms.Form):
    name = forms.CharField(max_length=100)
    sensitive = forms.BooleanField(
        required=False,
        label="Sensitive locations",
        help_text="Coarsen coordinates on public pages.",
    )
    viewpoints = forms.CharField(required=False, help_text="Comma-separated, e.g. left, right.")

    def clean_viewpoints(self) -> list[str]:
        return [v.strip() for v in self.cleaned_data["viewpoints"].split(",") if v.strip()]


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        help_text="A ZIP holding metadata.csv and its photos (the shared "
        "dataset layout), a ZIP holding a COCO, CCT or MegaDetector "
        ".json and its photos, a ZIP with one folder per "
        "individual, or a metadata.csv / .json file with a ZIP of "
        "its photos below."
    )
    photos = forms.FileField(
        required=False,
        label="ZIP of photos",
        help_text="Only with a metadata.csv or .json file: the photos it "
        "names, at the same relative paths.",
    )
    file_format = forms.ChoiceField(
        choices=[("", "Guess from the file")] + [(f, f) for f in FORMATS],
        required=False,
        label="Format",
    )
    max_individuals = forms.IntegerField(required=False, min_value=1)
    images_per_individual = forms.IntegerField(required=False, min_value=1)


class TrainingRunForm(forms.Form):
    mode = forms.ChoiceField(
        choices=TrainingRun.Mode.choices,
        initial=TrainingRun.Mode.WITH_ORIGINAL_DATA,
        help_text="New species only: the model may forget other species (the report flags "
        "them); promotion switches only this species, the others keep their model.",
    )
    engine_mode = forms.ChoiceField(choices=TrainingRun.EngineMode.choices, required=False)
    epochs = forms.IntegerField(required=False, min_value=1, max_value=200)
    image_size = forms.IntegerField(required=False, min_value=32, max_value=640)
    time_budget_minutes = forms.FloatField(
        required=False,
        min_value=1,
        max_value=1440,
        label="Time budget (minutes)",
        help_text="Training steps grow with the data up to this much training time.",
    )

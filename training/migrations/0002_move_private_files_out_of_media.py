"""Run folders and import uploads move from MEDIA_ROOT (served at /media/) to PRIVATE_ROOT."""

from django.conf import settings
from django.db import migrations


def move_private_files(apps, schema_editor):  # noqa: ANN001, ANN201
    from training.services.storage import private_files_move_from_media

    private_files_move_from_media(
        media_root=settings.MEDIA_ROOT,
        private_root=settings.PRIVATE_ROOT,
        model_version_model=apps.get_model("identification", "ModelVersion"),
        training_run_model=apps.get_model("training", "TrainingRun"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
    ]

    operations = [migrations.RunPython(move_private_files, migrations.RunPython.noop)]

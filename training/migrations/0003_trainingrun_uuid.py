"""Name each run's folder by a uuid: existing runs get one each, then it becomes unique."""

import uuid

from django.db import migrations, models


def _fill(apps, schema_editor) -> None:  # noqa: ANN001
    TrainingRun = apps.get_model("training", "TrainingRun")
    for run in TrainingRun.objects.filter(uuid__isnull=True).only("pk"):
        TrainingRun.objects.filter(pk=run.pk).update(uuid=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0002_move_private_files_out_of_media"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="trainingrun",
            name="uuid",
            field=models.UUIDField(
                default=uuid.uuid4, editable=False, unique=True,
                help_text="Names the run's folder (checkpoints, exported data).",
            ),
        ),
    ]
